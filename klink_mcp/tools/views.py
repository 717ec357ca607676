"""Compact views: what a model reads instead of raw K-LINK payloads.

Each `*_view` takes a wire model (or dict) and returns a small typed model: heavy fields are trimmed,
customer-written text is sanitized (short fields) or sanitized and fenced (free text), and nested
objects collapse to the few keys an assistant needs. Views read the contract's camelCase keys from
`model_dump(by_alias=True)`, so they do not depend on the wire models' attribute names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from klink_mcp.content import fence, sanitize_text

NAME_MAX = 120
TITLE_MAX = 200
TEXT_MAX = 2000
SNIPPET_MAX = 160


class CompactModel(BaseModel):
    """A view that leaves out empty values when serialized, so a model reads only what is there."""

    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        fields = type(self).model_fields
        return {
            k: v
            for k, v in data.items()
            if v is not None and not (v in ([], {}) and k in fields and not fields[k].is_required())
        }


def raw_dict(obj: Any) -> dict[str, Any]:
    """The wire payload as a dict with the contract's (camelCase) keys."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(by_alias=True, mode="json")
    if isinstance(obj, Mapping):
        return dict(obj)
    return {}


def _s(value: Any, max_len: int = NAME_MAX) -> str | None:
    if value is None or value == "":
        return None
    return sanitize_text(str(value), max_len=max_len)


def _fenced(value: Any, label: str, max_len: int = TEXT_MAX) -> str | None:
    if value is None or value == "":
        return None
    return fence(str(value), label=label, max_len=max_len)


def _primary(items: Any, key: str) -> str | None:
    if not isinstance(items, list) or not items:
        return None
    chosen = next((i for i in items if isinstance(i, Mapping) and i.get("isPrimary")), items[0])
    return _s(chosen.get(key)) if isinstance(chosen, Mapping) else None


def _names(items: Any) -> list[str]:
    out: list[str] = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping):
                name = _s(item.get("name") or item.get("value"), 60)
                if name:
                    out.append(name)
            elif isinstance(item, str):
                out.append(sanitize_text(item, max_len=60))
    return out


def _custom_fields(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, Any] = {}
    for k, v in value.items():
        if v is None or v == "" or v == []:
            continue
        out[str(k)] = sanitize_text(v, max_len=300) if isinstance(v, str) else v
    return out


def _nested_name(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return _s(value.get("name") or value.get("fullName") or value.get("email"))
    return None


# --- contacts -------------------------------------------------------------------------------------


class ContactSummary(CompactModel):
    """A contact in a list."""

    id: str
    name: str | None = None
    channel: str | None = None
    email: str | None = Field(default=None, description="Primary email.")
    phone: str | None = Field(default=None, description="Primary phone.")
    company: str | None = None
    tags: list[str] = Field(default_factory=list)
    updated_at: str | None = None


class SocialProfile(CompactModel):
    type: str | None = None
    social_platform_id: str | None = None
    channel_id: str | None = None


class ContactDetail(ContactSummary):
    """One contact in full (customer-written notes are fenced)."""

    emails: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)
    address: str | None = None
    notes: str | None = None
    contact_number: str | None = None
    social_profiles: list[SocialProfile] = Field(default_factory=list)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None


def contact_summary(obj: Any) -> ContactSummary:
    r = raw_dict(obj)
    return ContactSummary(**_contact_common(r))


def _contact_common(r: Mapping[str, Any]) -> dict[str, Any]:
    company = r.get("company")
    return {
        "id": str(r.get("id", "")),
        "name": _s(r.get("name")),
        "channel": _s(r.get("channel"), 40),
        "email": _primary(r.get("contactEmails"), "email"),
        "phone": _primary(r.get("contactPhones"), "phone"),
        "company": _nested_name(company) if company else None,
        "tags": _names(r.get("tags")),
        "updated_at": r.get("updatedAt"),
    }


def contact_detail(obj: Any) -> ContactDetail:
    r = raw_dict(obj)
    cid = str(r.get("id", ""))
    emails = [
        e for e in (_s(i.get("email")) for i in r.get("contactEmails") or [] if isinstance(i, Mapping)) if e
    ]
    phones = [
        p for p in (_s(i.get("phone")) for i in r.get("contactPhones") or [] if isinstance(i, Mapping)) if p
    ]
    profiles = [
        SocialProfile(
            type=_s(p.get("type"), 40),
            social_platform_id=_s(p.get("socialPlatformId"), 120),
            channel_id=_s(p.get("channelId"), 60),
        )
        for p in r.get("platformContacts") or []
        if isinstance(p, Mapping)
    ]
    return ContactDetail(
        **_contact_common(r),
        emails=emails,
        phones=phones,
        address=_s(r.get("address"), 300),
        notes=_fenced(r.get("notes"), f"contact {cid} notes"),
        contact_number=_s(r.get("contactNumber"), 60),
        social_profiles=profiles,
        custom_fields=_custom_fields(r.get("customFields")),
        created_at=r.get("createdAt"),
    )


# --- tickets --------------------------------------------------------------------------------------


class TicketSummary(CompactModel):
    """A ticket in a list. The title is customer-influenced text (sanitized, not fenced)."""

    id: str
    ticket_number: int | None = None
    title: str | None = None
    status: str | None = None
    priority: str | None = None
    channel: str | None = None
    contact_id: str | None = None
    contact_name: str | None = None
    assignee: str | None = None
    updated_at: str | None = None


class TicketDetail(TicketSummary):
    """One ticket in full; the description is fenced customer text."""

    description: str | None = None
    type: str | None = None
    tags: list[str] = Field(default_factory=list)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    creator: str | None = None
    created_at: str | None = None


def _ticket_common(r: Mapping[str, Any]) -> dict[str, Any]:
    number = r.get("ticketNumber")
    contact = r.get("contact")
    return {
        "id": str(r.get("id", "")),
        "ticket_number": number if isinstance(number, int) else None,
        "title": _s(r.get("title"), TITLE_MAX),
        "status": _s(r.get("status"), 40),
        "priority": _s(r.get("priority"), 40),
        "channel": _s(r.get("channel"), 40),
        "contact_id": r.get("contactId") or (contact.get("id") if isinstance(contact, Mapping) else None),
        "contact_name": _nested_name(contact),
        "assignee": _nested_name(r.get("assignee")),
        "updated_at": r.get("updatedAt"),
    }


def ticket_summary(obj: Any) -> TicketSummary:
    return TicketSummary(**_ticket_common(raw_dict(obj)))


def ticket_row(obj: Any) -> TicketDetail:
    """A ticket in a list without its heavy fields (typed as TicketDetail so lists have one item type)."""
    return TicketDetail(**_ticket_common(raw_dict(obj)))


def ticket_detail(obj: Any) -> TicketDetail:
    r = raw_dict(obj)
    label = f"ticket #{r.get('ticketNumber', r.get('id'))} description"
    return TicketDetail(
        **_ticket_common(r),
        description=_fenced(r.get("description"), label),
        type=_s(r.get("type") or r.get("ticketType"), 60),
        tags=_names(r.get("tags")),
        custom_fields=_custom_fields(r.get("customFields")),
        creator=_nested_name(r.get("creator")),
        created_at=r.get("createdAt"),
    )


# --- small resources ------------------------------------------------------------------------------


class TagView(CompactModel):
    id: str
    name: str | None = None


class ChannelView(CompactModel):
    id: str
    name: str | None = None
    type: str | None = None


class GroupView(CompactModel):
    id: str
    name: str | None = None
    contact_count: int | None = None


def tag_view(obj: Any) -> TagView:
    r = raw_dict(obj)
    return TagView(id=str(r.get("id", "")), name=_s(r.get("name"), 60))


def channel_view(obj: Any) -> ChannelView:
    r = raw_dict(obj)
    return ChannelView(id=str(r.get("id", "")), name=_s(r.get("name"), 80), type=_s(r.get("type"), 40))


def group_view(obj: Any) -> GroupView:
    r = raw_dict(obj)
    count = r.get("contactCount", r.get("count"))
    return GroupView(
        id=str(r.get("id", "")),
        name=_s(r.get("name"), 80),
        contact_count=count if isinstance(count, int) else None,
    )


class CategoryNode(CompactModel):
    """A category and its children (the K-LINK category tree)."""

    id: str
    value: str | None = None
    children: list[CategoryNode] = Field(default_factory=list)


def category_node(obj: Any) -> CategoryNode:
    r = raw_dict(obj)
    kids = r.get("childCategoryList") or []
    return CategoryNode(
        id=str(r.get("id", "")),
        value=_s(r.get("value"), 120),
        children=[category_node(k) for k in kids if isinstance(k, Mapping)],
    )


class CxLogView(CompactModel):
    """One customer conversation/case. Durations are in seconds."""

    id: str
    case_id: str | None = None
    contact_id: str | None = None
    contact_name: str | None = None
    channel: str | None = None
    direction: str | None = None
    queue: str | None = None
    started_at: str | None = None
    closed_at: str | None = None
    first_response_time_s: float | None = None
    resolution_time_s: float | None = None
    handled_time_s: float | None = None
    sla_status: str | None = None
    disposition: str | None = None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cx_log_view(obj: Any) -> CxLogView:
    r = raw_dict(obj)
    case = r.get("caseId")
    return CxLogView(
        id=str(r.get("id", "")),
        case_id=str(case) if case is not None else None,
        contact_id=r.get("contactId"),
        contact_name=_nested_name(r.get("contact")),
        channel=_s(r.get("channel") or r.get("channelType"), 40),
        direction=_s(r.get("direction"), 20),
        queue=_s(r.get("queueName"), 80),
        started_at=r.get("startedDate"),
        closed_at=r.get("closedAt"),
        first_response_time_s=_num(r.get("firstResponseTime")),
        resolution_time_s=_num(r.get("resolutionTime")),
        handled_time_s=_num(r.get("handledTime")),
        sla_status=_s(r.get("slaStatus"), 40),
        disposition=_s(r.get("disposition"), 80),
    )


class FormFieldView(CompactModel):
    """One field definition of the tenant's contact or ticket form."""

    system_name: str
    display_name: str | None = None
    type: str
    required: bool = False
    custom: bool = Field(description="True for custom cf_* fields (they go under custom_fields).")
    options: list[str] | None = Field(default=None, description="Allowed values for select/multiselect.")


def form_field_view(obj: Any) -> FormFieldView:
    r = raw_dict(obj)
    options = r.get("options") or []
    values = [str(o.get("value")) for o in options if isinstance(o, Mapping) and o.get("value") is not None]
    return FormFieldView(
        system_name=str(r.get("system_name", "")),
        display_name=_s(r.get("display_name"), 120),
        type=str(r.get("type") or "text"),
        required=bool(r.get("is_required")),
        custom=not bool(r.get("is_default")),
        options=values or None,
    )


class SentMessageView(CompactModel):
    """What K-LINK answered for a sent message."""

    id: str | None = None
    contact_id: str
    created_at: str | None = None
    status: str = "sent"
