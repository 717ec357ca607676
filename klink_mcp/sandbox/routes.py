"""The 21 endpoints of the K-LINK contract, as plain functions over the sandbox tenant's state.

Each handler takes the tenant and an `ApiRequest` and returns `(status, body)`, or raises
`ApiError` for a 4xx answer. Envelopes follow the contract's table exactly (they differ per
endpoint on purpose). This module must not do I/O, sleep or know about HTTP frameworks.

Decisions the contract leaves open (all [inferred]):
- creates answer 201 (contact, channel, ticket); the send-message call answers 200 with
  `"status": 200` in its body; everything else 200.
- unknown top-level body keys are rejected (400 "property x should not exist"). Contact bodies
  take the contract keys plus the `system_name` of any non-archived built-in contact field
  (so `email`, `phone`, `company` work as singular aliases).
- `PATCH /tickets/{id}` does not take `status` (that is `PUT /tickets/{id}/status`).
- the social-platform lookup answers a list (possibly empty) in the contact envelope.
- ticket create/update `tags` are tag ids; contact create/update and the tag update use names.
- a contact update with `tags` replaces the contact's tags (names; unknown names are created).
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from klink_mcp.sandbox._common import (
    ApiError,
    BodyReader,
    bad_request,
    iso,
    not_found,
    page_params,
    paged,
    parse_iso,
)
from klink_mcp.sandbox.fields import (
    TICKET_PRIORITIES,
    TICKET_STATUSES,
    check_value,
    is_email,
    is_phone,
    validate_custom_fields,
)
from klink_mcp.sandbox.seed import contact_summary, make_email, make_phone

if TYPE_CHECKING:
    from klink_mcp.sandbox.tenant import SandboxTenant

CHANNEL_CREATE_TYPES = (
    "whatsapp",
    "messenger",
    "line",
    "email",
    "phone",
    "webchat",
    "instagram",
    "telegram",
    "viber",
    "custom",
)
MESSAGE_TYPES = ("text",)
TAG_ACTIONS = ("MERGE", "REPLACE", "REMOVE")
_SELECTED_DATE = re.compile(
    r"^\s*(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})\s*-\s*(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})\s*$"
)


@dataclass(slots=True)
class ApiRequest:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


Result = tuple[int, Any]
Handler = Callable[["SandboxTenant", ApiRequest], Result]


def _success(message: str, data: Any) -> dict[str, Any]:
    return {"status": "success", "message": message, "data": data}


def _live_contact(tenant: SandboxTenant, contact_id: str) -> dict[str, Any]:
    contact = tenant.contacts.get(contact_id)
    if contact is None or contact.get("deletedAt"):
        raise not_found("Contact")
    return contact


def _ticket(tenant: SandboxTenant, ticket_id: str) -> dict[str, Any]:
    ticket = tenant.tickets.get(ticket_id)
    if ticket is None or ticket.get("deletedAt"):
        raise not_found("Ticket")
    return ticket


def _field_map(fields: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["system_name"]: f for f in fields if not f["is_archived"]}


# ---------------------------------------------------------------------------------------- contacts


def _contact_matches(contact: dict[str, Any], needle: str, digits: str) -> bool:
    if (
        needle in str(contact.get("name") or "").lower()
        or needle in str(contact.get("contactNumber") or "").lower()
    ):
        return True
    for email in contact.get("contactEmails") or []:
        if needle in str(email.get("email", "")).lower():
            return True
    for phone in contact.get("contactPhones") or []:
        number = str(phone.get("phone", ""))
        if needle in number.lower() or (len(digits) >= 4 and digits in re.sub(r"\D", "", number)):
            return True
    return False


def list_contacts(tenant: SandboxTenant, req: ApiRequest) -> Result:
    page, size = page_params(req.query)
    needle = "" if tenant.ignore_contact_keyword else req.query.get("keyword", "").strip().lower()
    digits = re.sub(r"\D", "", needle)
    items = [
        c
        for c in tenant.contacts.values()
        if not c.get("deletedAt") and (not needle or _contact_matches(c, needle, digits))
    ]
    items.sort(key=lambda c: (c["createdAt"], c["id"]), reverse=True)
    return 200, paged(items, page, size)


def find_contacts_by_social_platform_id(tenant: SandboxTenant, req: ApiRequest) -> Result:
    wanted = req.params["socialPlatformId"]
    found = [
        c
        for c in tenant.contacts.values()
        if not c.get("deletedAt")
        and any(p.get("socialPlatformId") == wanted for p in c.get("platformContacts") or [])
    ]
    found.sort(key=lambda c: (c["createdAt"], c["id"]))
    return 200, _success("contact", found)


def get_contact_form_fields(tenant: SandboxTenant, req: ApiRequest) -> Result:
    page, size = page_params(req.query)
    return 200, paged(tenant.contact_fields, page, size)


def get_contact(tenant: SandboxTenant, req: ApiRequest) -> Result:
    return 200, _success("contact", _live_contact(tenant, req.params["id"]))


_CONTACT_KEYS = ("name", "address", "channel", "notes", "emails", "phones", "tags", "customFields")


def _read_contact_body(
    tenant: SandboxTenant, req: ApiRequest, *, creating: bool
) -> tuple[BodyReader, dict[str, Any]]:
    """Validate a contact create/update body; returns the reader and a dict of accepted changes."""
    builtins = {name: f for name, f in _field_map(tenant.contact_fields).items() if f["is_default"]}
    reader = BodyReader(req.json, (*_CONTACT_KEYS, *builtins))
    changes: dict[str, Any] = {}
    data = reader.data
    if creating or reader.given("name"):
        changes["name"] = reader.string("name", required=True, max_len=255)
    for key in ("address", "notes"):
        if reader.given(key):
            changes[key] = reader.string(key, nullable=True)
    if reader.given("channel"):
        channel_field = builtins.get("channel")
        value = data["channel"]
        problem = check_value(channel_field, value, "channel") if channel_field else None
        if problem is None and value is not None and not isinstance(value, str):
            problem = "channel must be a string"
        if problem:
            reader.errors.append(problem)
        changes["channel"] = value
    emails = reader.string_list("emails", check=is_email, what="an email")
    phones = reader.string_list("phones", check=is_phone, what="a valid phone number")
    for alias, check, what in (("email", is_email, "an email"), ("phone", is_phone, "a valid phone number")):
        # The singular built-in field sets the primary address/number; the rest of the list stays.
        if reader.given(alias) and data[alias] is not None:
            if not isinstance(data[alias], str) or not check(data[alias]):
                reader.errors.append(f"{alias} must be {what}")
            else:
                changes[alias] = data[alias]
    if emails is not None:
        changes["emails"] = list(dict.fromkeys(emails))
    if phones is not None:
        changes["phones"] = list(dict.fromkeys(phones))
    if reader.given("company"):
        company = data["company"]
        if company is not None and (not isinstance(company, str) or not company.strip()):
            reader.errors.append("company must be a non-empty string")
        changes["company"] = company
    tags = reader.string_list("tags")
    if tags is not None:
        changes["tags"] = tags
    for name, field in builtins.items():
        if name in _CONTACT_KEYS or name in ("email", "phone", "company") or not reader.given(name):
            continue
        problem = check_value(field, data[name], name)
        if problem:
            reader.errors.append(problem)
        changes[name] = data[name]
    if creating:
        for name, field in builtins.items():
            if not field["is_required"] or name == "name":
                continue
            plural = {"email": "emails", "phone": "phones"}.get(name, name)
            if not changes.get(name) and not changes.get(plural):
                reader.errors.append(f"{name} should not be empty")
    if reader.given("customFields") or creating:
        changes["customFields"] = validate_custom_fields(
            tenant.contact_fields, data.get("customFields"), creating=creating, errors=reader.errors
        )
        if reader.given("customFields") and isinstance(data["customFields"], dict):
            # explicit nulls clear a value on update
            for key, value in data["customFields"].items():
                if value is None and key in changes["customFields"]:
                    changes["customFields"][key] = None
    reader.done()
    return reader, changes


def _check_unique(tenant: SandboxTenant, custom: dict[str, Any], own_id: str | None) -> None:
    unique = {f["system_name"] for f in tenant.contact_fields if f["is_unique"] and not f["is_default"]}
    for key in unique:
        value = custom.get(key)
        if value is None:
            continue
        for other in tenant.contacts.values():
            if (
                other["id"] != own_id
                and not other.get("deletedAt")
                and other["customFields"].get(key) == value
            ):
                raise ApiError(409, f"customFields.{key} must be unique: {value!r} is already used")


_HANDLED_CONTACT_KEYS = frozenset(
    {
        "name",
        "address",
        "notes",
        "channel",
        "emails",
        "phones",
        "email",
        "phone",
        "company",
        "tags",
        "customFields",
    }
)


def _apply_contact_changes(
    tenant: SandboxTenant, contact: dict[str, Any], changes: dict[str, Any], stamp: str
) -> None:
    for key in ("name", "address", "notes", "channel"):
        if key in changes:
            contact[key] = changes[key]
    emails = changes.get("emails")
    if "email" in changes:
        base = emails if emails is not None else [e["email"] for e in contact["contactEmails"]]
        emails = [changes["email"], *(e for e in base if e != changes["email"])]
    if emails is not None:
        old = {e["email"]: e for e in contact["contactEmails"]}
        contact["contactEmails"] = [
            {**old[e], "isPrimary": i == 0, "updatedAt": stamp}
            if e in old
            else make_email(tenant.id_rng, e, i == 0, stamp)
            for i, e in enumerate(emails)
        ]
    phones = changes.get("phones")
    if "phone" in changes:
        base = phones if phones is not None else [p["phone"] for p in contact["contactPhones"]]
        phones = [changes["phone"], *(p for p in base if p != changes["phone"])]
    if phones is not None:
        old = {p["phone"]: p for p in contact["contactPhones"]}
        contact["contactPhones"] = [
            {**old[p], "isPrimary": i == 0, "updatedAt": stamp}
            if p in old
            else make_phone(tenant.id_rng, p, i == 0, stamp)
            for i, p in enumerate(phones)
        ]
    if "company" in changes:
        name = changes["company"]
        if name is None:
            contact["company"], contact["companyId"] = None, None
        else:
            company = tenant.company_named(name.strip())
            contact["company"] = {"id": company["id"], "name": company["name"]}
            contact["companyId"] = company["id"]
    if "tags" in changes:
        contact["tags"] = [
            {"id": t["id"], "name": t["name"]} for t in tenant.tags_named(changes["tags"], create=True)
        ]
    for key, value in changes.get("customFields", {}).items():
        if value is None:
            contact["customFields"].pop(key, None)
        else:
            contact["customFields"][key] = copy.deepcopy(value)
    for key, value in changes.items():
        if key not in _HANDLED_CONTACT_KEYS:
            contact[key] = copy.deepcopy(value)
    contact["updatedAt"] = stamp


def create_contact(tenant: SandboxTenant, req: ApiRequest) -> Result:
    _, changes = _read_contact_body(tenant, req, creating=True)
    _check_unique(tenant, changes["customFields"], None)
    stamp = tenant.stamp()
    contact: dict[str, Any] = {
        "id": tenant.new_id(),
        "name": changes["name"],
        "address": None,
        "channel": None,
        "notes": None,
        "company": None,
        "companyId": None,
        "contactNumber": tenant.next_contact_number(),
        "contactProfile": None,
        "socialProfileUrl": None,
        "contactEmails": [],
        "contactPhones": [],
        "tags": [],
        "customFields": {},
        "platformContacts": [],
        "createdAt": stamp,
        "updatedAt": stamp,
        "deletedAt": None,
    }
    _apply_contact_changes(tenant, contact, changes, stamp)
    tenant.contacts[contact["id"]] = contact
    tenant.emit("contact.create", contact)
    return 201, _success("contact created", contact)


def update_contact(tenant: SandboxTenant, req: ApiRequest) -> Result:
    contact = _live_contact(tenant, req.params["id"])
    _, changes = _read_contact_body(tenant, req, creating=False)
    if "customFields" in changes:
        _check_unique(tenant, {**contact["customFields"], **changes["customFields"]}, contact["id"])
    _apply_contact_changes(tenant, contact, changes, tenant.stamp())
    tenant.refresh_contact_copies(contact)
    tenant.emit("contact.update", contact)
    return 200, _success("contact updated", contact)


def delete_contact(tenant: SandboxTenant, req: ApiRequest) -> Result:
    contact = _live_contact(tenant, req.params["id"])
    stamp = tenant.stamp()
    contact["deletedAt"] = stamp
    contact["updatedAt"] = stamp
    return 200, _success("contact deleted", contact)


def list_contact_groups(tenant: SandboxTenant, req: ApiRequest) -> Result:
    groups = sorted(tenant.groups.values(), key=lambda g: (str(g.get("name", "")).lower(), g["id"]))
    return 200, _success("contact groups", groups)


def update_contact_tags(tenant: SandboxTenant, req: ApiRequest) -> Result:
    contact = _live_contact(tenant, req.params["id"])
    reader = BodyReader(req.json, ("actionType", "tags"))
    action = reader.choice("actionType", TAG_ACTIONS, required=True)
    names = reader.string_list("tags", required=True)
    reader.done()
    assert names is not None
    current = [t["name"] for t in contact["tags"]]
    if action == "REMOVE":
        drop = {n.lower() for n in names}
        wanted = [n for n in current if n.lower() not in drop]
    elif action == "REPLACE":
        wanted = names
    else:
        wanted = current + names
    contact["tags"] = [{"id": t["id"], "name": t["name"]} for t in tenant.tags_named(wanted, create=True)]
    contact["updatedAt"] = tenant.stamp()
    tenant.refresh_contact_copies(contact)
    tenant.emit("contact.update", contact)
    return 200, {"status": "success", "message": "Contact tags updated successfully", "data": None}


# ------------------------------------------------------------------------------ tags, channels...


def list_tags(tenant: SandboxTenant, req: ApiRequest) -> Result:
    return 200, {"data": sorted(tenant.tags.values(), key=lambda t: (str(t["name"]).lower(), t["id"]))}


def list_channels(tenant: SandboxTenant, req: ApiRequest) -> Result:
    return 200, {"data": sorted(tenant.channels.values(), key=lambda c: (c["createdAt"], c["id"]))}


def create_channel(tenant: SandboxTenant, req: ApiRequest) -> Result:
    reader = BodyReader(req.json, ("name", "type"))
    name = reader.string("name", required=True, max_len=100)
    type_ = reader.choice("type", CHANNEL_CREATE_TYPES, required=True)
    reader.done()
    if any(str(c["name"]).lower() == name.strip().lower() for c in tenant.channels.values()):
        raise ApiError(409, f"A channel named {name!r} already exists")
    stamp = tenant.stamp()
    channel = {
        "id": tenant.new_id(),
        "name": name,
        "type": type_,
        "status": "active",
        "createdAt": stamp,
        "updatedAt": stamp,
    }
    tenant.channels[channel["id"]] = channel
    return 201, _success("channel created", channel)


def list_categories(tenant: SandboxTenant, req: ApiRequest) -> Result:
    children: dict[str | None, list[dict[str, Any]]] = {}
    for cat in tenant.categories.values():
        children.setdefault(cat.get("parentId"), []).append(cat)

    def build(parent: str | None) -> list[dict[str, Any]]:
        nodes = sorted(children.get(parent, []), key=lambda c: (c.get("sortOrder", 0), c["id"]))
        return [{**node, "childCategoryList": build(node["id"])} for node in nodes]

    return 200, {"data": build(None)}


# ----------------------------------------------------------------------------------------- tickets


Predicate = Callable[[dict[str, Any]], bool]


def _equals(key: str, wanted: object) -> Predicate:
    return lambda record: record.get(key) == wanted


def _mentions(needle: str) -> Predicate:
    def test(record: dict[str, Any]) -> bool:
        return (
            needle in str(record.get("title") or "").lower()
            or needle in str(record.get("description") or "").lower()
        )

    return test


def _ticket_filters(req: ApiRequest) -> list[Predicate]:
    q = req.query
    errors: list[str] = []
    tests: list[Predicate] = []
    for key, allowed in (("status", TICKET_STATUSES), ("priority", TICKET_PRIORITIES)):
        if q.get(key):
            if q[key] not in allowed:
                errors.append(f"{key} must be one of the following values: {', '.join(allowed)}")
            tests.append(_equals(key, q[key]))
    for key in ("channel", "contactId", "assigneeId"):
        if q.get(key):
            tests.append(_equals(key, q[key]))
    if q.get("ticketNumber"):
        try:
            tests.append(_equals("ticketNumber", int(q["ticketNumber"])))
        except ValueError:
            errors.append("ticketNumber must be an integer number")
    if q.get("keyword", "").strip():
        tests.append(_mentions(q["keyword"].strip().lower()))
    if errors:
        raise bad_request(errors)
    return tests


_BY_TICKET_NUMBER = operator.itemgetter("ticketNumber")


def _ticket_page(tenant: SandboxTenant, req: ApiRequest, extra: Predicate | None) -> dict[str, Any]:
    page, size = page_params(req.query)
    tests = [] if tenant.ignore_ticket_filters else _ticket_filters(req)
    if extra is not None:
        tests.insert(0, extra)  # the contact filter is the most selective: run it first
    items = [t for t in tenant.tickets.values() if not t.get("deletedAt")]
    for test in tests:
        items = [t for t in items if test(t)]
    items.sort(key=_BY_TICKET_NUMBER, reverse=True)
    return paged(items, page, size)


def list_tickets(tenant: SandboxTenant, req: ApiRequest) -> Result:
    return 200, _ticket_page(tenant, req, None)


def list_contact_tickets(tenant: SandboxTenant, req: ApiRequest) -> Result:
    contact = _live_contact(tenant, req.params["contactId"])
    if tenant.ignore_contact_path:
        return 200, _ticket_page(tenant, req, None)
    return 200, _ticket_page(tenant, req, lambda t: t.get("contactId") == contact["id"])


def get_ticket_form_fields(tenant: SandboxTenant, req: ApiRequest) -> Result:
    page, size = page_params(req.query)
    return 200, paged(tenant.ticket_fields, page, size)


_TICKET_CREATE_KEYS = (
    "title",
    "description",
    "status",
    "priority",
    "contact_id",
    "channel",
    "type",
    "assigneeId",
    "tags",
    "customFields",
)
_TICKET_UPDATE_KEYS = (
    "title",
    "description",
    "priority",
    "channel",
    "type",
    "assigneeId",
    "tags",
    "customFields",
)


def _read_ticket_body(tenant: SandboxTenant, req: ApiRequest, *, creating: bool) -> dict[str, Any]:
    fields = _field_map(tenant.ticket_fields)
    extra_builtins = [n for n, f in fields.items() if f["is_default"] and n not in _TICKET_CREATE_KEYS]
    allowed = (*(_TICKET_CREATE_KEYS if creating else _TICKET_UPDATE_KEYS), *extra_builtins)
    reader = BodyReader(req.json, allowed)
    data = reader.data
    changes: dict[str, Any] = {}
    if creating or reader.given("title"):
        changes["title"] = reader.string("title", required=True, max_len=255)
    if reader.given("description"):
        changes["description"] = reader.string("description", nullable=True, max_len=20_000)
    if creating:
        changes["contact_id"] = reader.string("contact_id", required=True)
        changes["status"] = reader.choice("status", TICKET_STATUSES) or "open"
    if creating or reader.given("priority"):
        changes["priority"] = reader.choice("priority", TICKET_PRIORITIES) or "medium"
    for key in ("channel", "type", *extra_builtins):
        if reader.given(key):
            field = fields.get(key)
            value = data[key]
            problem = check_value(field, value, key) if field else None
            if (
                problem is None
                and key in ("channel", "type")
                and value is not None
                and not isinstance(value, str)
            ):
                problem = f"{key} must be a string"
            if problem:
                reader.errors.append(problem)
            changes[key] = value
    if reader.given("assigneeId"):
        assignee = data["assigneeId"]
        if assignee is not None and assignee not in tenant.agents:
            reader.errors.append("assigneeId must be the id of an existing agent")
        changes["assigneeId"] = assignee
    tag_ids = reader.string_list("tags")
    if tag_ids is not None:
        unknown = [t for t in tag_ids if t not in tenant.tags]
        if unknown:
            reader.errors.append(f"tags must be ids of existing tags (unknown: {', '.join(unknown)})")
        changes["tags"] = list(dict.fromkeys(tag_ids))
    if creating or reader.given("customFields"):
        changes["customFields"] = validate_custom_fields(
            tenant.ticket_fields, data.get("customFields"), creating=creating, errors=reader.errors
        )
        if isinstance(data.get("customFields"), dict):
            for key, value in data["customFields"].items():
                if value is None and key in changes["customFields"]:
                    changes["customFields"][key] = None
    reader.done()
    return changes


def _apply_ticket_changes(
    tenant: SandboxTenant, ticket: dict[str, Any], changes: dict[str, Any], stamp: str
) -> None:
    for key, value in changes.items():
        if key == "contact_id":
            continue
        if key == "assigneeId":
            agent = tenant.agents.get(value) if value else None
            ticket["assigneeId"] = value
            ticket["assignee"] = dict(agent) if agent else None
            ticket["reasonToAssign"] = "manual" if agent else None
        elif key == "tags":
            ticket["tags"] = [{"id": tenant.tags[t]["id"], "name": tenant.tags[t]["name"]} for t in value]
        elif key == "customFields":
            for name, field_value in value.items():
                if field_value is None:
                    ticket["customFields"].pop(name, None)
                else:
                    ticket["customFields"][name] = copy.deepcopy(field_value)
        else:
            ticket[key] = copy.deepcopy(value)
    ticket["updatedAt"] = stamp


def create_ticket(tenant: SandboxTenant, req: ApiRequest) -> Result:
    changes = _read_ticket_body(tenant, req, creating=True)
    contact = _live_contact(tenant, changes["contact_id"])
    stamp = tenant.stamp()
    creator = tenant.api_user()
    ticket: dict[str, Any] = {
        "id": tenant.new_id(),
        "ticketNumber": tenant.next_ticket_number(),
        "title": changes["title"],
        "description": None,
        "status": changes["status"],
        "priority": changes["priority"],
        "channel": contact.get("channel"),
        "type": None,
        "ticketType": "manual",
        "contactId": contact["id"],
        "creatorId": creator["id"],
        "assigneeId": None,
        "reasonToAssign": None,
        "contact": contact_summary(contact),
        "creator": dict(creator),
        "assignee": None,
        "tags": [],
        "customFields": {},
        "createdAt": stamp,
        "updatedAt": stamp,
        "deletedAt": None,
    }
    _apply_ticket_changes(tenant, ticket, changes, stamp)
    tenant.tickets[ticket["id"]] = ticket
    if ticket["status"] == "resolved":
        tenant.emit("room.solved", ticket)
    return 201, {"success": True, "data": ticket}


def update_ticket(tenant: SandboxTenant, req: ApiRequest) -> Result:
    ticket = _ticket(tenant, req.params["id"])
    changes = _read_ticket_body(tenant, req, creating=False)
    _apply_ticket_changes(tenant, ticket, changes, tenant.stamp())
    return 200, {"success": True, "data": ticket}


def update_ticket_status(tenant: SandboxTenant, req: ApiRequest) -> Result:
    ticket = _ticket(tenant, req.params["id"])
    reader = BodyReader(req.json, ("status",))
    status = reader.choice("status", TICKET_STATUSES, required=True)
    reader.done()
    was = ticket["status"]
    ticket["status"] = status
    ticket["updatedAt"] = tenant.stamp()
    if status == "resolved" and was != "resolved":
        tenant.emit("room.solved", ticket)
    return 200, {"success": True, "data": ticket}


# ----------------------------------------------------------------------------------------- CX logs


def _parse_local(text: str, zone: ZoneInfo) -> datetime:
    return datetime.strptime(text, "%Y/%m/%d %H:%M:%S").replace(tzinfo=zone)


def list_cx_logs(tenant: SandboxTenant, req: ApiRequest) -> Result:
    errors: list[str] = []
    raw_range = req.query.get("selectedDate", "")
    raw_zone = req.headers.get("x-client-timezone", "").strip()
    zone: ZoneInfo | None = None
    if not raw_zone:
        errors.append("x-client-timezone header should not be empty")
    else:
        try:
            zone = ZoneInfo(raw_zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append("x-client-timezone must be a valid IANA time zone")
    match = _SELECTED_DATE.match(raw_range)
    if not raw_range:
        errors.append("selectedDate should not be empty")
    elif match is None:
        errors.append("selectedDate must look like 'YYYY/MM/DD HH:mm:ss-YYYY/MM/DD HH:mm:ss'")
    try:
        page, size = page_params(req.query)
    except ApiError as exc:
        errors.extend(exc.message if isinstance(exc.message, list) else [exc.message])
    if errors:
        raise bad_request(errors)
    assert match is not None and zone is not None
    try:
        start, end = _parse_local(match.group(1), zone), _parse_local(match.group(2), zone)
    except ValueError:
        raise bad_request(["selectedDate contains an invalid date"]) from None
    if start > end:
        raise bad_request(["selectedDate must start before it ends"])
    logs = []
    for log in tenant.cx_logs.values():
        started = tenant.cx_started(log)
        if start <= started <= end:
            logs.append(log)
    logs.sort(key=lambda log: (log["startedDate"], log["id"]), reverse=True)
    return 200, {"requestId": tenant.new_id(), "cxLogs": paged(logs, page, size)}


# ---------------------------------------------------------------------------------------- messages


def send_message(tenant: SandboxTenant, req: ApiRequest) -> Result:
    reader = BodyReader(req.json, ("contactId", "messageType", "message", "createdAt"))
    contact_id = reader.string("contactId", required=True)
    message_type = reader.choice("messageType", MESSAGE_TYPES, required=True)
    text = reader.string("message", required=True, max_len=4096)
    created = reader.string("createdAt")
    if created is not None:
        try:
            parse_iso(created)
        except ValueError:
            reader.errors.append("createdAt must be a valid ISO 8601 date string")
    reader.done()
    contact = _live_contact(tenant, contact_id)
    moment = tenant.clock.now()
    created_at = created or iso(moment)
    record = {
        "id": tenant.new_id(),
        "contactId": contact["id"],
        "channel": contact.get("channel"),
        "messageType": message_type,
        "message": text,
        "createdAt": created_at,
        "direction": "outbound",
        "clientRequestId": "",
        "partition_key": f"{parse_iso(created_at):%Y_%m}",
    }
    tenant.messages[record["id"]] = record
    tenant.emit(
        "message.outbound",
        {k: record[k] for k in ("id", "contactId", "channel", "messageType", "message", "createdAt")},
    )
    return 200, {"status": 200, "message": "Message sent successfully", "data": record}


def simulate_inbound_message(tenant: SandboxTenant, req: ApiRequest) -> Result:
    """Sandbox only (not K-LINK): a customer writes in, so `message.inbound` is emitted on demand."""
    reader = BodyReader(req.json, ("contactId", "message", "channel"))
    contact_id = reader.string("contactId", required=True)
    text = reader.string("message", required=True, max_len=4096)
    channel = reader.string("channel")
    reader.done()
    _live_contact(tenant, contact_id)
    payload = tenant.simulate_inbound_message(contact_id, text, channel)
    return 201, {"status": "success", "message": "Inbound message simulated", "data": payload}


def recorded_requests(tenant: SandboxTenant, req: ApiRequest) -> Result:
    """Sandbox only (not K-LINK): the requests this tenant recorded, so a test driving it from another
    process (several replicas sharing one sandbox) can count what reached the upstream.

    `?method=POST` keeps one method. `/_sandbox/...` requests are left out. Headers are never returned
    (the recorded ones are already redacted, but a count needs none of them).
    """
    method = (req.query.get("method") or "").upper()
    items = [
        {"method": r.method, "path": r.path, "status": r.status, "json": r.json}
        for r in tenant.requests
        if not r.path.startswith("/_sandbox/") and (not method or r.method == method)
    ]
    return 200, {"count": len(items), "requests": items}


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/api/v1/contacts", list_contacts),
    ("POST", "/api/v1/contacts", create_contact),
    ("GET", "/api/v1/contacts/social-platform/{socialPlatformId}", find_contacts_by_social_platform_id),
    ("GET", "/api/v1/contacts/fields", get_contact_form_fields),
    ("GET", "/api/v1/contacts/groups", list_contact_groups),
    ("GET", "/api/v1/contacts/{id}", get_contact),
    ("PATCH", "/api/v1/contacts/{id}", update_contact),
    ("DELETE", "/api/v1/contacts/{id}", delete_contact),
    ("PATCH", "/api/v1/contacts/{id}/tags", update_contact_tags),
    ("GET", "/api/v1/tags", list_tags),
    ("GET", "/api/v1/channels", list_channels),
    ("POST", "/api/v1/channels", create_channel),
    ("GET", "/api/v1/tickets", list_tickets),
    ("POST", "/api/v1/tickets", create_ticket),
    ("GET", "/api/v1/tickets/contact/{contactId}", list_contact_tickets),
    ("GET", "/api/v1/tickets/fields", get_ticket_form_fields),
    ("PATCH", "/api/v1/tickets/{id}", update_ticket),
    ("PUT", "/api/v1/tickets/{id}/status", update_ticket_status),
    ("GET", "/api/v1/categories", list_categories),
    ("GET", "/api/v1/cx-logs", list_cx_logs),
    ("POST", "/api/v1/messages/send", send_message),
    # Sandbox-only helper (not part of the K-LINK API): drive the webhook loop from a terminal.
    ("POST", "/_sandbox/inbound-messages", simulate_inbound_message),
    ("GET", "/_sandbox/requests", recorded_requests),
)


class Router:
    """Matches a method and a list of already-unquoted path segments to a handler."""

    def __init__(self, routes: tuple[tuple[str, str, Handler], ...] = ROUTES) -> None:
        self._routes: list[tuple[str, list[str], Handler]] = [
            (method, pattern.strip("/").split("/"), handler) for method, pattern, handler in routes
        ]

    def match(self, method: str, segments: list[str]) -> tuple[Handler, dict[str, str]] | None:
        for route_method, pattern, handler in self._routes:
            if route_method != method or len(pattern) != len(segments):
                continue
            params: dict[str, str] = {}
            for want, got in zip(pattern, segments, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                return handler, params
        return None
