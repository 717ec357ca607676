"""Compact views: what a model reads instead of raw K-LINK payloads.

Each `*_view` takes a typed wire model from `klink_mcp.api.models` and returns a small typed model:
heavy fields are trimmed, customer-written text is sanitized (short fields) or sanitized and fenced
(free text), and nested objects collapse to the few keys an assistant needs. Views read the wire
models' attributes, so a renamed wire field is a type error here; keys K-LINK sends that the models
do not declare are read from `model_extra` by their wire name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from klink_mcp.api.models import (
    Category,
    Channel,
    Company,
    Contact,
    ContactEmail,
    ContactGroup,
    ContactPhone,
    CxLog,
    FormField,
    Tag,
    TagRef,
    Ticket,
    UserRef,
    WireModel,
)
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


def _s(value: Any, max_len: int = NAME_MAX) -> str | None:
    if value is None or value == "":
        return None
    return sanitize_text(str(value), max_len=max_len)


def _fenced(value: Any, label: str, max_len: int = TEXT_MAX) -> str | None:
    if value is None or value == "":
        return None
    return fence(str(value), label=label, max_len=max_len)


def _extra(model: WireModel, wire_key: str) -> Any:
    """A key K-LINK sent that the wire model does not declare (kept by `extra="allow"`)."""
    return (model.model_extra or {}).get(wire_key)


def _primary_email(items: list[ContactEmail]) -> str | None:
    if not items:
        return None
    return _s(next((i for i in items if i.is_primary), items[0]).email)


def _primary_phone(items: list[ContactPhone]) -> str | None:
    if not items:
        return None
    return _s(next((i for i in items if i.is_primary), items[0]).phone)


def _names(tags: list[TagRef]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        name = _s(tag.name or _extra(tag, "value"), 60)
        if name:
            out.append(name)
    return out


def _custom_fields(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if v is None or v == "" or v == []:
            continue
        out[str(k)] = sanitize_text(v, max_len=300) if isinstance(v, str) else v
    return out


def _ref_name(ref: Company | UserRef | Contact | None) -> str | None:
    """The display name of an embedded company, agent or contact."""
    if ref is None:
        return None
    email = ref.email if isinstance(ref, UserRef) else _extra(ref, "email")
    return _s(ref.name or _extra(ref, "fullName") or email)


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


def contact_summary(contact: Contact) -> ContactSummary:
    return ContactSummary(**_contact_common(contact))


def _contact_common(c: Contact) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": _s(c.name),
        "channel": _s(c.channel, 40),
        "email": _primary_email(c.contact_emails),
        "phone": _primary_phone(c.contact_phones),
        "company": _ref_name(c.company),
        "tags": _names(c.tags),
        "updated_at": c.updated_at,
    }


def contact_detail(contact: Contact) -> ContactDetail:
    c = contact
    profiles = [
        SocialProfile(
            type=_s(p.type, 40),
            social_platform_id=_s(p.social_platform_id, 120),
            channel_id=_s(p.channel_id, 60),
        )
        for p in c.platform_contacts
    ]
    return ContactDetail(
        **_contact_common(c),
        emails=[e for e in (_s(i.email) for i in c.contact_emails) if e],
        phones=[p for p in (_s(i.phone) for i in c.contact_phones) if p],
        address=_s(c.address, 300),
        notes=_fenced(c.notes, f"contact {c.id} notes"),
        contact_number=_s(c.contact_number, 60),
        social_profiles=profiles,
        custom_fields=_custom_fields(c.custom_fields),
        created_at=c.created_at,
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


def _ticket_common(t: Ticket) -> dict[str, Any]:
    return {
        "id": t.id,
        "ticket_number": t.ticket_number,
        "title": _s(t.title, TITLE_MAX),
        "status": _s(t.status, 40),
        "priority": _s(t.priority, 40),
        "channel": _s(t.channel, 40),
        "contact_id": t.contact_id or (t.contact.id if t.contact is not None else None),
        "contact_name": _ref_name(t.contact),
        "assignee": _ref_name(t.assignee),
        "updated_at": t.updated_at,
    }


def ticket_summary(ticket: Ticket) -> TicketSummary:
    return TicketSummary(**_ticket_common(ticket))


def ticket_row(ticket: Ticket) -> TicketDetail:
    """A ticket in a list without its heavy fields (typed as TicketDetail so lists have one item type)."""
    return TicketDetail(**_ticket_common(ticket))


def ticket_detail(ticket: Ticket) -> TicketDetail:
    t = ticket
    return TicketDetail(
        **_ticket_common(t),
        description=_fenced(t.description, f"ticket #{t.ticket_number} description"),
        type=_s(t.type or t.ticket_type, 60),
        tags=_names(t.tags),
        custom_fields=_custom_fields(t.custom_fields),
        creator=_ref_name(t.creator),
        created_at=t.created_at,
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


def tag_view(tag: Tag) -> TagView:
    return TagView(id=tag.id, name=_s(tag.name, 60))


def channel_view(channel: Channel) -> ChannelView:
    return ChannelView(id=channel.id, name=_s(channel.name, 80), type=_s(channel.type, 40))


def group_view(group: ContactGroup) -> GroupView:
    # Not in the documented payload: K-LINK may send a member count under either name.
    count = _extra(group, "contactCount")
    if count is None and "contactCount" not in (group.model_extra or {}):
        count = _extra(group, "count")
    return GroupView(
        id=group.id, name=_s(group.name, 80), contact_count=count if isinstance(count, int) else None
    )


class CategoryNode(CompactModel):
    """A category and its children (the K-LINK category tree)."""

    id: str
    value: str | None = None
    children: list[CategoryNode] = Field(default_factory=list)


def category_node(category: Category) -> CategoryNode:
    return CategoryNode(
        id=category.id,
        value=_s(category.value, 120),
        children=[category_node(k) for k in category.child_category_list],
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


def cx_log_view(log: CxLog) -> CxLogView:
    return CxLogView(
        id=log.id,
        case_id=log.case_id,
        contact_id=log.contact_id,
        contact_name=_ref_name(log.contact),
        channel=_s(log.channel or log.channel_type, 40),
        direction=_s(log.direction, 20),
        queue=_s(log.queue_name, 80),
        started_at=log.started_date,
        closed_at=log.closed_at,
        first_response_time_s=log.first_response_time,
        resolution_time_s=log.resolution_time,
        handled_time_s=log.handled_time,
        sla_status=_s(log.sla_status, 40),
        disposition=_s(log.disposition, 80),
    )


class FormFieldView(CompactModel):
    """One field definition of the tenant's contact or ticket form."""

    system_name: str
    display_name: str | None = None
    type: str
    required: bool = False
    custom: bool = Field(description="True for custom cf_* fields (they go under custom_fields).")
    options: list[str] | None = Field(default=None, description="Allowed values for select/multiselect.")


def form_field_view(field: FormField) -> FormFieldView:
    values = [str(o.value) for o in field.options if o.value is not None]
    return FormFieldView(
        system_name=field.system_name or "",
        display_name=_s(field.display_name, 120),
        type=field.type or "text",
        required=field.is_required,
        custom=not field.is_default,
        options=values or None,
    )


class SentMessageView(CompactModel):
    """What K-LINK answered for a sent message."""

    id: str | None = None
    contact_id: str
    created_at: str | None = None
    status: str = "sent"
