"""Tolerant pydantic models of K-LINK's wire payloads (what the API returns, not what tools show).

K-LINK's payloads are only partly documented and change without notice, so these models never crash on
a new, missing or oddly-typed field:

- unknown keys are kept (`extra="allow"`), reachable as attributes and in `model_dump()`;
- every field has a default, except the `id` of top-level records;
- a known field whose value has an unexpected type is dropped (it falls back to its default) instead of
  failing the whole record (logged at DEBUG on "klink_mcp.api");
- keys are camelCase on the wire (`contactEmails`) and snake_case in Python (`contact_emails`); both
  spellings are accepted (`populate_by_name=True`). Form-field definitions are snake_case on the wire.

Timestamps are kept as the wire's ISO-8601 strings: lossless, and comparable as versions.
This module must not import `mcp` and does no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

log = logging.getLogger("klink_mcp.api")


class WireModel(BaseModel):
    """Base of every wire model: camelCase aliases, unknown keys kept, bad known fields dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        coerce_numbers_to_str=True,  # ids sometimes arrive as numbers
    )

    @model_validator(mode="wrap")
    @classmethod
    def _drop_invalid_fields(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            if not isinstance(data, Mapping):
                raise
            bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
            log.debug("%s: dropped unexpected values of %s", cls.__name__, sorted(map(str, bad)))
            # A second failure (e.g. the id itself is missing or unusable) propagates: nothing to salvage.
            return handler({key: value for key, value in data.items() if key not in bad})


def _custom_fields_as_map(value: Any) -> Any:
    """K-LINK sends `customFields` as a map, or as `[]` when empty; a list of {key,value} pairs is mapped."""
    if value is None:
        return {}
    if isinstance(value, list):
        pairs: dict[str, Any] = {}
        for item in value:
            if isinstance(item, Mapping):
                key = item.get("key", item.get("name", item.get("system_name")))
                if isinstance(key, str):
                    pairs[key] = item.get("value")
        return pairs
    return value


class Company(WireModel):
    id: str | None = None
    name: str | None = None


class ContactEmail(WireModel):
    id: str | None = None
    email: str | None = None
    is_primary: bool | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ContactPhone(WireModel):
    id: str | None = None
    phone: str | None = None
    is_primary: bool | None = None
    created_at: str | None = None
    updated_at: str | None = None


class PlatformContact(WireModel):
    id: str | None = None
    channel_id: str | None = None
    social_platform_id: str | None = None
    type: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class TagRef(WireModel):
    """A tag as embedded in a contact or ticket."""

    id: str | None = None
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class UserRef(WireModel):
    """An agent/user embedded in a ticket or CX log (creator, assignee, firstAssignee)."""

    id: str | None = None
    name: str | None = None
    email: str | None = None


class Contact(WireModel):
    id: str
    name: str | None = None
    address: str | None = None
    channel: str | None = None
    notes: str | None = None
    company: Company | None = None
    company_id: str | None = None
    contact_number: str | None = None
    contact_profile: str | None = None
    social_profile_url: str | None = None
    contact_emails: list[ContactEmail] = Field(default_factory=list)
    contact_phones: list[ContactPhone] = Field(default_factory=list)
    tags: list[TagRef] = Field(default_factory=list)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    platform_contacts: list[PlatformContact] = Field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None
    deleted_at: str | None = None

    _custom_fields = field_validator("custom_fields", mode="before")(_custom_fields_as_map)


class Ticket(WireModel):
    id: str
    ticket_number: int | None = None
    title: str | None = None
    description: str | None = None
    status: str | None = None
    priority: str | None = None
    channel: str | None = None
    type: str | None = None
    ticket_type: str | None = None
    contact_id: str | None = None
    creator_id: str | None = None
    assignee_id: str | None = None
    reason_to_assign: str | None = None
    contact: Contact | None = None
    creator: UserRef | None = None
    assignee: UserRef | None = None
    tags: list[TagRef] = Field(default_factory=list)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    deleted_at: str | None = None

    _custom_fields = field_validator("custom_fields", mode="before")(_custom_fields_as_map)


class Tag(WireModel):
    id: str
    name: str | None = None
    color: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Channel(WireModel):
    id: str
    name: str | None = None
    type: str | None = None
    status: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class ContactGroup(WireModel):
    id: str
    name: str | None = None
    description: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Category(WireModel):
    """A node of the category tree; `child_category_list` holds its children (same shape)."""

    id: str
    value: str | None = None
    parent_id: str | None = None
    level: int | None = None
    sort_order: int | None = None
    child_category_list: list[Category] = Field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None


class CxLog(WireModel):
    id: str
    case_id: str | None = None
    entity_id: str | None = None
    entity_name: str | None = None
    contact_id: str | None = None
    channel: str | None = None
    channel_type: str | None = None
    queue_id: str | None = None
    queue_name: str | None = None
    agent_id: str | None = None
    direction: str | None = None
    started_date: str | None = None
    closed_at: str | None = None
    handled_time: float | None = None
    first_response_time: float | None = None
    resolution_time: float | None = None
    full_resolution_time: float | None = None
    wrap_up_duration: float | None = None
    total_hold_duration: float | None = None
    disposition: str | None = None
    sla_status: str | None = None
    contact_label: list[Any] = Field(default_factory=list)
    uid: str | None = None
    contact: Contact | None = None
    first_assignee: UserRef | None = None
    cx_intelligence_status: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class FormFieldOption(WireModel):
    """One choice of a select/multiselect field (snake_case on the wire)."""

    model_config = ConfigDict(alias_generator=None)

    value: str | None = None
    label: str | None = None
    is_default: bool = False


class FormField(WireModel):
    """A contact or ticket form-field definition (snake_case on the wire).

    `is_default` true = a built-in field whose `system_name` is a top-level body key; otherwise a custom
    field (`cf_*`) that goes under `customFields`. `type` is free text: unknown types must be tolerated.
    """

    model_config = ConfigDict(alias_generator=None)

    id: str
    system_name: str | None = None
    display_name: str | None = None
    type: str | None = None
    is_default: bool = False
    is_archived: bool = False
    is_required: bool = False
    is_unique: bool = False
    options: list[FormFieldOption] = Field(default_factory=list)


class SentMessage(WireModel):
    """The `data` of a send-message answer.

    Its `id` is optional on purpose: the message has already reached the customer when this is parsed,
    so an odd answer must not look like a failure (a retry would message them twice).
    """

    id: str | None = None
    contact_id: str | None = None
    message_type: str | None = None
    message: str | None = None
    created_at: str | None = None
    client_request_id: str | None = None
    partition_key: str | None = Field(default=None, alias="partition_key")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a paged list. `last_page` is the page count (0 or 1 when there is nothing)."""

    items: list[T] = Field(default_factory=list)
    total: int = 0
    page: int = 1
    page_size: int = 10
    last_page: int = 0

    @property
    def has_more(self) -> bool:
        """True when pages after this one exist."""
        return self.page < self.last_page


__all__ = [
    "Category",
    "Channel",
    "Company",
    "Contact",
    "ContactEmail",
    "ContactGroup",
    "ContactPhone",
    "CxLog",
    "FormField",
    "FormFieldOption",
    "Page",
    "PlatformContact",
    "SentMessage",
    "Tag",
    "TagRef",
    "Ticket",
    "UserRef",
    "WireModel",
]
