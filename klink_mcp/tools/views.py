"""Compact views: what a model reads instead of raw K-LINK payloads.

Each `*_view` takes a typed wire model from `klink_mcp.api.models` and returns a small typed model:
heavy fields are trimmed and nested objects collapse to the few keys an assistant needs. Views read
the wire models' attributes, so a renamed wire field is a type error here; keys K-LINK sends that the
models do not declare are read from `model_extra` by their wire name.

Every string a customer or a tenant admin controls goes through `klink_mcp.content` here, one rule
per kind, so no view can forget one:

- free text (contact and company names, ticket titles, addresses, notes, descriptions, CX-log contact
  names) -> `_free` (`content.untrusted`: sanitized and fenced); string custom values and the items
  of list-valued ones also go through `content.untrusted`, which there leaves a single plain token
  such as "gold" unfenced (most are select values);
- labels the tenant defines (tag, channel, group, category names, statuses, priorities, types,
  queues, dispositions, form labels) -> `_label` (`content.clean_label`: sanitized, one line);
- identifiers and timestamps -> `_s` (`content.sanitize_text`);
- option values and field keys that are sent back upstream exactly are never altered: one that
  holds an invisible character is shown marked (`content.mark_invisible`), so it cannot be mistaken
  for a usable value (the form compiler leaves it out of the tool schemas).

Views must not fence short enum-like values (bytes in every result) nor leave any of the above raw.
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
from klink_mcp.content import clean_label, has_invisible, mark_invisible, sanitize_text, untrusted

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


def _free(value: Any, max_len: int = NAME_MAX, label: str | None = None) -> str | None:
    """Customer-controlled free text: sanitized and fenced (`content.untrusted`)."""
    if value is None or value == "":
        return None
    return untrusted(str(value), label=label, max_len=max_len)


def _label(value: Any, max_len: int = NAME_MAX) -> str | None:
    """A tenant-defined label (names of tags, channels, statuses...): sanitized, one line, not fenced."""
    if value is None or value == "":
        return None
    return clean_label(str(value), max_len=max_len) or None


def _exact(value: str) -> str:
    """A value sent back upstream exactly: as is when clean, visibly marked when it hides something."""
    return mark_invisible(value) if has_invisible(value) else value


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
        name = _label(tag.name or _extra(tag, "value"), 60)
        if name:
            out.append(name)
    return out


CUSTOM_MAX = 300
_CUSTOM_DEPTH = 4


def _custom_value(value: Any, depth: int) -> Any:
    """A custom-field value with every string in it (list items and nested objects too) made safe."""
    if isinstance(value, str):  # select values are plain tokens: fencing them would only cost bytes
        return untrusted(value, max_len=CUSTOM_MAX, plain_tokens=True) if value else value
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= _CUSTOM_DEPTH:  # deeper structures are not a form value: say so rather than pass raw
        return _free(str(value), CUSTOM_MAX)
    if isinstance(value, list | tuple):
        return [_custom_value(v, depth + 1) for v in value if v is not None and v != ""]
    if isinstance(value, dict):
        return {_exact(str(k)[:80]): _custom_value(v, depth + 1) for k, v in value.items()}
    return _free(str(value), CUSTOM_MAX)


def _custom_fields(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if v is None or v == "" or v == []:
            continue
        # Keys are the tenant's system names (sent back as keys): marked, never silently altered.
        out[_exact(str(k))] = _custom_value(v, 0)
    return out


def _ref_text(ref: Company | UserRef | Contact | None) -> str | None:
    if ref is None:
        return None
    email = ref.email if isinstance(ref, UserRef) else _extra(ref, "email")
    value = ref.name or _extra(ref, "fullName") or email
    return None if value is None or value == "" else str(value)


def _ref_name(ref: Company | UserRef | Contact | None) -> str | None:
    """The display name of an embedded company or contact: customer free text, fenced."""
    return _free(_ref_text(ref))


def _agent_name(ref: UserRef | None) -> str | None:
    """An agent's name (the tenant's staff, set by its admins): a label, sanitized, not fenced."""
    return _label(_ref_text(ref))


def plain_name(contact: Contact) -> str | None:
    """A contact's name sanitized and capped but not fenced: for previews a person reads on the approval
    page (the preview puts it in quotes; the model reads fenced names everywhere else)."""
    return _s(contact.name)


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
        "name": _free(c.name),
        "channel": _label(c.channel, 40),
        "email": _primary_email(c.contact_emails),
        "phone": _primary_phone(c.contact_phones),
        "company": _ref_name(c.company),
        "tags": _names(c.tags),
        "updated_at": _s(c.updated_at, 40),
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
        address=_free(c.address, 300),
        notes=_free(c.notes, TEXT_MAX, f"contact {c.id} notes"),
        contact_number=_s(c.contact_number, 60),
        social_profiles=profiles,
        custom_fields=_custom_fields(c.custom_fields),
        created_at=_s(c.created_at, 40),
    )


# --- tickets --------------------------------------------------------------------------------------


class TicketSummary(CompactModel):
    """A ticket in a list. The title and the contact's name are customer text (fenced)."""

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
        "title": _free(t.title, TITLE_MAX),
        "status": _label(t.status, 40),
        "priority": _label(t.priority, 40),
        "channel": _label(t.channel, 40),
        "contact_id": t.contact_id or (t.contact.id if t.contact is not None else None),
        "contact_name": _ref_name(t.contact),
        "assignee": _agent_name(t.assignee),
        "updated_at": _s(t.updated_at, 40),
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
        description=_free(t.description, TEXT_MAX, f"ticket #{t.ticket_number} description"),
        type=_label(t.type or t.ticket_type, 60),
        tags=_names(t.tags),
        custom_fields=_custom_fields(t.custom_fields),
        creator=_agent_name(t.creator),
        created_at=_s(t.created_at, 40),
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
    return TagView(id=tag.id, name=_label(tag.name, 60))


def channel_view(channel: Channel) -> ChannelView:
    return ChannelView(id=channel.id, name=_label(channel.name, 80), type=_label(channel.type, 40))


def group_view(group: ContactGroup) -> GroupView:
    # Not in the documented payload: K-LINK may send a member count under either name.
    count = _extra(group, "contactCount")
    if count is None and "contactCount" not in (group.model_extra or {}):
        count = _extra(group, "count")
    return GroupView(
        id=group.id, name=_label(group.name, 80), contact_count=count if isinstance(count, int) else None
    )


class CategoryNode(CompactModel):
    """A category and its children (the K-LINK category tree)."""

    id: str
    value: str | None = None
    children: list[CategoryNode] = Field(default_factory=list)


def category_node(category: Category) -> CategoryNode:
    return CategoryNode(
        id=category.id,
        value=_label(category.value, 120),
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
        case_id=_s(log.case_id, 80),
        contact_id=_s(log.contact_id, 256),
        contact_name=_ref_name(log.contact),
        channel=_label(log.channel or log.channel_type, 40),
        direction=_label(log.direction, 20),
        queue=_label(log.queue_name, 80),
        started_at=_s(log.started_date, 40),
        closed_at=_s(log.closed_at, 40),
        first_response_time_s=log.first_response_time,
        resolution_time_s=log.resolution_time,
        handled_time_s=log.handled_time,
        sla_status=_label(log.sla_status, 40),
        disposition=_label(log.disposition, 80),
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
    # Option values go back to K-LINK exactly: one hiding an invisible character is shown marked
    # (and the compiled tool schemas leave it out), never cleaned into a different, usable-looking value.
    values = [_exact(str(o.value)) for o in field.options if o.value is not None]
    return FormFieldView(
        system_name=_exact(field.system_name or ""),
        display_name=clean_label(field.display_name, max_len=120, markup_safe=True)
        if field.display_name
        else None,
        type=clean_label(field.type, max_len=40, markup_safe=True) if field.type else "text",
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
