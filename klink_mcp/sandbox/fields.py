"""Form-field definitions of the sandbox tenant and the checks it applies to field values.

A definition has exactly the contract's shape (snake_case)::

    {"id", "system_name", "display_name", "type", "is_default", "is_archived", "is_required",
     "is_unique", "options": [{"value", "label", "is_default"}]}

`is_default: true` marks a built-in field (its `system_name` is a top-level body key); any other
field is custom, its `system_name` starts with `cf_` and its value lives under `customFields`.

The default contact form has 43 definitions (7 built-ins, 36 custom fields covering every type
of the contract vocabulary, exactly one archived field `cf_legacy_code` and exactly one field of
a type clients do not know, `cf_satisfaction` of type `rating`). The default ticket form has 21.

This module must not touch tenant state; value checks return messages, the caller decides.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from klink_mcp.sandbox._common import parse_iso, uuid_from

KNOWN_TYPES = frozenset(
    {
        "text",
        "textarea",
        "number",
        "date",
        "datetime",
        "select",
        "multiselect",
        "checkbox",
        "email",
        "phone",
        "url",
    }
)
CHANNEL_TYPES = ("whatsapp", "messenger", "line", "email", "phone", "webchat", "instagram", "telegram")
TICKET_STATUSES = ("open", "in progress", "pending", "resolved", "closed")
TICKET_PRIORITIES = ("low", "medium", "high", "urgent")
TICKET_TYPES = ("question", "incident", "problem", "task")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-]{5,19}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


def is_phone(value: str) -> bool:
    return bool(_PHONE.match(value))


def _options(*values: str, labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    return [
        {"value": v, "label": (labels or {}).get(v, v.replace("_", " ").title()), "is_default": i == 0}
        for i, v in enumerate(values)
    ]


# (system_name, display_name, type, is_default, is_required, is_unique, is_archived, options)
_Spec = tuple[str, str, str, bool, bool, bool, bool, list[dict[str, Any]]]

_CONTACT_SPECS: list[_Spec] = [
    ("name", "Name", "text", True, True, False, False, []),
    ("address", "Address", "textarea", True, False, False, False, []),
    ("channel", "Channel", "select", True, False, False, False, _options(*CHANNEL_TYPES)),
    ("notes", "Notes", "textarea", True, False, False, False, []),
    ("email", "Email", "email", True, False, False, False, []),
    ("phone", "Phone", "phone", True, False, False, False, []),
    ("company", "Company", "text", True, False, False, False, []),
    ("cf_customer_code", "Customer Code", "text", False, False, True, False, []),
    ("cf_nickname", "Nickname", "text", False, False, False, False, []),
    ("cf_preferred_language", "Preferred Language", "select", False, False, False, False,
     _options("en", "th", "my", "ms", "zh", "id", "vi",
              labels={"en": "English", "th": "Thai", "my": "Burmese", "ms": "Malay", "zh": "Chinese",
                      "id": "Indonesian", "vi": "Vietnamese"})),
    ("cf_date_of_birth", "Date of Birth", "date", False, False, False, False, []),
    ("cf_gender", "Gender", "select", False, False, False, False,
     _options("female", "male", "other", "undisclosed")),
    ("cf_loyalty_tier", "Loyalty Tier", "select", False, False, False, False,
     _options("bronze", "silver", "gold", "platinum")),
    ("cf_loyalty_points", "Loyalty Points", "number", False, False, False, False, []),
    ("cf_lifetime_value", "Lifetime Value (USD)", "number", False, False, False, False, []),
    ("cf_interests", "Interests", "multiselect", False, False, False, False,
     _options("sports", "music", "travel", "food", "tech", "fashion", "gaming", "wellness")),
    ("cf_marketing_opt_in", "Marketing Opt-in", "checkbox", False, False, False, False, []),
    ("cf_sms_opt_in", "SMS Opt-in", "checkbox", False, False, False, False, []),
    ("cf_secondary_email", "Secondary Email", "email", False, False, False, False, []),
    ("cf_alternate_phone", "Alternate Phone", "phone", False, False, False, False, []),
    ("cf_website", "Website", "url", False, False, False, False, []),
    ("cf_linkedin", "LinkedIn Profile", "url", False, False, False, False, []),
    ("cf_last_purchase_at", "Last Purchase At", "datetime", False, False, False, False, []),
    ("cf_first_contacted_at", "First Contacted At", "datetime", False, False, False, False, []),
    ("cf_bio", "Bio", "textarea", False, False, False, False, []),
    ("cf_delivery_instructions", "Delivery Instructions", "textarea", False, False, False, False, []),
    ("cf_city", "City", "text", False, False, False, False, []),
    ("cf_country", "Country", "select", False, False, False, False,
     _options("SG", "TH", "MM", "MY", "ID", "VN", "PH",
              labels={"SG": "Singapore", "TH": "Thailand", "MM": "Myanmar", "MY": "Malaysia",
                      "ID": "Indonesia", "VN": "Vietnam", "PH": "Philippines"})),
    ("cf_postal_code", "Postal Code", "text", False, False, False, False, []),
    ("cf_account_manager", "Account Manager", "text", False, False, False, False, []),
    ("cf_satisfaction", "Satisfaction Rating", "rating", False, False, False, False, []),
    ("cf_legacy_code", "Legacy CRM Code", "text", False, False, False, True, []),
    ("cf_membership_expiry", "Membership Expiry", "date", False, False, False, False, []),
    ("cf_preferred_contact_time", "Preferred Contact Time", "select", False, False, False, False,
     _options("morning", "afternoon", "evening")),
    ("cf_household_size", "Household Size", "number", False, False, False, False, []),
    ("cf_vip", "VIP", "checkbox", False, False, False, False, []),
    ("cf_segment", "Segment", "multiselect", False, False, False, False,
     _options("b2b", "b2c", "partner", "reseller", labels={"b2b": "B2B", "b2c": "B2C"})),
    ("cf_industry", "Industry", "select", False, False, False, False,
     _options("retail", "hospitality", "healthcare", "education", "finance", "logistics",
              "manufacturing", "telecom", "government", "real_estate", "media", "other")),
    ("cf_referral_source", "Referral Source", "select", False, False, False, False,
     _options("facebook_ad", "google_search", "friend", "walk_in", "event", "partner")),
    ("cf_twitter", "X / Twitter", "url", False, False, False, False, []),
    ("cf_emergency_contact", "Emergency Contact Phone", "phone", False, False, False, False, []),
    ("cf_billing_email", "Billing Email", "email", False, False, False, False, []),
    ("cf_signup_at", "Signed Up At", "datetime", False, False, False, False, []),
]  # fmt: skip

_TICKET_SPECS: list[_Spec] = [
    ("title", "Title", "text", True, True, False, False, []),
    ("description", "Description", "textarea", True, False, False, False, []),
    ("status", "Status", "select", True, False, False, False, _options(*TICKET_STATUSES)),
    ("priority", "Priority", "select", True, False, False, False, _options(*TICKET_PRIORITIES)),
    ("channel", "Channel", "select", True, False, False, False, _options(*CHANNEL_TYPES)),
    ("type", "Type", "select", True, False, False, False, _options(*TICKET_TYPES)),
    ("cf_trackingid", "Tracking ID", "text", False, False, False, False, []),
    ("cf_date", "Incident Date", "date", False, False, False, False, []),
    ("cf_order_value", "Order Value", "number", False, False, False, False, []),
    ("cf_product", "Product", "select", False, False, False, False,
     _options("starter_plan", "pro_plan", "enterprise_plan", "smart_speaker", "phone_case", "gift_card")),
    ("cf_refund", "Refund Requested", "checkbox", False, False, False, False, []),
    ("cf_order_number", "Order Number", "text", False, False, False, False, []),
    ("cf_due_at", "Due At", "datetime", False, False, False, False, []),
    ("cf_affected_services", "Affected Services", "multiselect", False, False, False, False,
     _options("billing", "delivery", "app", "website", "store")),
    ("cf_callback_phone", "Callback Phone", "phone", False, False, False, False, []),
    ("cf_reference_url", "Reference URL", "url", False, False, False, False, []),
    ("cf_customer_email", "Customer Email", "email", False, False, False, False, []),
    ("cf_resolution_notes", "Resolution Notes", "textarea", False, False, False, False, []),
    ("cf_severity_score", "Severity Score", "number", False, False, False, False, []),
    ("cf_region", "Region", "select", False, False, False, False,
     _options("sg", "th", "mm", "my", labels={"sg": "Singapore", "th": "Thailand", "mm": "Myanmar",
                                               "my": "Malaysia"})),
    ("cf_warranty", "Under Warranty", "checkbox", False, False, False, False, []),
]  # fmt: skip


def _from_specs(specs: Sequence[_Spec], rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid_from(rng),
            "system_name": name,
            "display_name": display,
            "type": type_,
            "is_default": default,
            "is_archived": archived,
            "is_required": required,
            "is_unique": unique,
            "options": [dict(o) for o in options],
        }
        for name, display, type_, default, required, unique, archived, options in specs
    ]


def default_contact_fields(rng: random.Random) -> list[dict[str, Any]]:
    return _from_specs(_CONTACT_SPECS, rng)


def default_ticket_fields(rng: random.Random) -> list[dict[str, Any]]:
    return _from_specs(_TICKET_SPECS, rng)


def normalize_field(raw: Any, rng: random.Random, where: str) -> dict[str, Any]:
    """Complete one definition from a fixture or `set_form_fields` (missing flags default to false).

    Raises:
        ValueError: `raw` is not an object, has no `system_name`/`type`, or a custom field's
            name does not start with `cf_`.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a field definition must be an object")
    name = raw.get("system_name")
    type_ = raw.get("type")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: system_name must be a non-empty string")
    if not isinstance(type_, str) or not type_:
        raise ValueError(f"{where}: type must be a non-empty string")
    is_default = bool(raw.get("is_default", False))
    if not is_default and not name.startswith("cf_"):
        raise ValueError(f"{where}: custom field {name!r} must start with 'cf_' (or set is_default true)")
    options = raw.get("options") or []
    if not isinstance(options, list):
        raise ValueError(f"{where}: options must be a list")
    norm_options = []
    for index, option in enumerate(options):
        if isinstance(option, str):
            option = {"value": option}
        if not isinstance(option, dict) or not isinstance(option.get("value"), str):
            raise ValueError(f"{where}.options[{index}]: an option needs a string value")
        norm_options.append(
            {
                "value": option["value"],
                "label": str(option.get("label", option["value"])),
                "is_default": bool(option.get("is_default", False)),
            }
        )
    return {
        "id": str(raw.get("id") or uuid_from(rng)),
        "system_name": name,
        "display_name": str(raw.get("display_name") or name.removeprefix("cf_").replace("_", " ").title()),
        "type": type_,
        "is_default": is_default,
        "is_archived": bool(raw.get("is_archived", False)),
        "is_required": bool(raw.get("is_required", False)),
        "is_unique": bool(raw.get("is_unique", False)),
        "options": norm_options,
    }


def normalize_fields(raw: Any, rng: random.Random, where: str) -> list[dict[str, Any]]:
    """Raises:
    ValueError: not a list, a bad definition, or a duplicate system_name.
    """
    if not isinstance(raw, list):
        raise ValueError(f"{where}: must be a list of field definitions")
    fields = [normalize_field(item, rng, f"{where}[{i}]") for i, item in enumerate(raw)]
    seen: set[str] = set()
    for field in fields:
        if field["system_name"] in seen:
            raise ValueError(f"{where}: duplicate system_name {field['system_name']!r}")
        seen.add(field["system_name"])
    return fields


def _is_valid_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_valid_datetime(value: str) -> bool:
    try:
        parse_iso(value)
    except ValueError:
        return False
    return "T" in value or " " in value


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed IPv6 bracket: a bad URL, not a server error
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in value


def _choices_text(field: Mapping[str, Any]) -> str:
    values = [o["value"] for o in field["options"]]
    shown = ", ".join(values[:10])
    return shown + (f", ... ({len(values)} values)" if len(values) > 10 else "")


def check_value(field: Mapping[str, Any], value: Any, label: str) -> str | None:
    """A class-validator-style message if `value` does not fit `field`, else None. None values are fine."""
    if value is None:
        return None
    type_ = field["type"]
    if type_ in ("text", "textarea"):
        if not isinstance(value, str):
            return f"{label} must be a string"
        if len(value) > (255 if type_ == "text" else 10_000):
            return f"{label} is too long"
        return None
    if type_ == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{label} must be a number"
        return None
    if type_ == "checkbox":
        return None if isinstance(value, bool) else f"{label} must be a boolean value"
    if not isinstance(value, list) and type_ == "multiselect":
        return f"{label} must be an array"
    if type_ == "multiselect":
        allowed = {o["value"] for o in field["options"]}
        if not all(isinstance(v, str) and v in allowed for v in value):
            return f"each value in {label} must be one of the following values: {_choices_text(field)}"
        if len(set(value)) != len(value):
            return f"all {label}'s elements must be unique"
        return None
    if type_ == "select":
        allowed = {o["value"] for o in field["options"]}
        if not isinstance(value, str) or value not in allowed:
            return f"{label} must be one of the following values: {_choices_text(field)}"
        return None
    if type_ not in KNOWN_TYPES:
        # A type we do not know (e.g. "rating"): take any scalar, as a lenient server would.
        return (
            None
            if isinstance(value, str | int | float) and not isinstance(value, bool)
            else (f"{label} must be a string or a number")
        )
    if not isinstance(value, str):
        return f"{label} must be a string"
    checks = {
        "date": (_is_valid_date, "a valid date (YYYY-MM-DD)"),
        "datetime": (_is_valid_datetime, "a valid ISO 8601 date string"),
        "email": (is_email, "an email"),
        "phone": (is_phone, "a valid phone number"),
        "url": (_is_url, "a URL address"),
    }
    check, what = checks[type_]
    return None if check(value) else f"{label} must be {what}"


def validate_custom_fields(
    fields: Sequence[Mapping[str, Any]], values: Any, *, creating: bool, errors: list[str]
) -> dict[str, Any]:
    """Check a `customFields` object against the custom definitions; append messages to `errors`.

    Unknown keys, archived fields, wrong types and values outside a select's options are errors;
    on create, a missing required custom field is one too. Returns the accepted values.
    """
    custom = {f["system_name"]: f for f in fields if not f["is_default"]}
    accepted: dict[str, Any] = {}
    if values is None:
        values = {}
    if not isinstance(values, dict):
        errors.append("customFields must be an object")
        return accepted
    for key, value in values.items():
        label = f"customFields.{key}"
        field = custom.get(key)
        if field is None:
            errors.append(f"{label} is not a known field")
            continue
        if field["is_archived"]:
            errors.append(f"{label} is archived and cannot be written")
            continue
        if value is None and field["is_required"]:
            errors.append(f"{label} should not be empty")
            continue
        problem = check_value(field, value, label)
        if problem:
            errors.append(problem)
            continue
        accepted[key] = value
    if creating:
        for key, field in custom.items():
            if field["is_required"] and not field["is_archived"] and values.get(key) in (None, "", []):
                errors.append(f"customFields.{key} should not be empty")
    return accepted
