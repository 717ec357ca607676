"""Ticket tools: list and filter, look up by number, per contact, create, update, change status.

Each tool is a module-level handler (first parameter: the `ServerState`) and a `ToolSpec` in `SPECS`.
`create_ticket`, `update_ticket` and `update_ticket_status` are compiled per tenant from the ticket
form (built-ins at the top level, `cf_*` fields under `custom_fields`, status values as an enum).
K-LINK has no single-ticket endpoint: `get_ticket_by_number` is served from the listing.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context
from mcp.types import InputRequiredResult
from pydantic import Field

from klink_mcp.api.errors import ErrorCode
from klink_mcp.api.models import Page as ApiPage
from klink_mcp.api.models import Ticket
from klink_mcp.content import UNTRUSTED_NOTE
from klink_mcp.forms import FormSchema
from klink_mcp.guard.policy import Risk, ToolPolicy, status_change_risk, update_effect_risk
from klink_mcp.guard.preview import Preview
from klink_mcp.tools import previews
from klink_mcp.tools.errors import ToolFailure
from klink_mcp.tools.filtering import FilteredList, Scanned, honest_page
from klink_mcp.tools.guarded import guarded_outcome, run_guarded
from klink_mcp.tools.params import (
    ConfirmationToken,
    ContactId,
    Page,
    PageSize,
    TicketId,
    custom_fields_param,
    kw,
)
from klink_mcp.tools.results import ListResult, WriteOutcome, form_field_list
from klink_mcp.tools.spec import FINDS_CONTACTS, FINDS_TICKETS, ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import (
    FormFieldView,
    TicketDetail,
    TicketSummary,
    ticket_detail,
    ticket_row,
    ticket_summary,
)

DEFAULT_STATUSES = ("open", "in progress", "pending", "resolved", "closed")
MAX_SCAN_PAGES = 50
_R, _W, _D = Risk.READ, Risk.WRITE, Risk.DESTRUCTIVE
V = TypeVar("V")


class TicketOutcome(WriteOutcome):
    ticket: TicketDetail | None = None


async def find_ticket_by_number(
    state: ServerState,
    number: int,
    progress: Callable[[int, int], Awaitable[None]] | None = None,
) -> Ticket | None:
    """The ticket with this number, from the listing (K-LINK has no single-ticket endpoint).

    Asks with the (inferred) `ticketNumber` filter first; if the tenant ignores it, scans the listing
    page by page (up to MAX_SCAN_PAGES), reporting progress.

    Raises:
        KlinkError: a K-LINK call failed.
    """
    match, _, _ = await _search_ticket_number(state, number, progress)
    return match


async def _search_ticket_number(
    state: ServerState,
    number: int,
    progress: Callable[[int, int], Awaitable[None]] | None,
) -> tuple[Ticket | None, int, int]:
    """The match (or None), the pages read and the pages the listing has."""
    page = await state.client.list_tickets(page=1, page_size=100, ticket_number=number)
    scanned = 1
    while True:
        match = next((t for t in page.items if ticket_summary(t).ticket_number == number), None)
        if match is not None or not page.has_more or scanned >= MAX_SCAN_PAGES:
            return match, scanned, max(page.last_page, scanned)
        scanned += 1
        if progress is not None:
            await progress(scanned, min(page.last_page or MAX_SCAN_PAGES, MAX_SCAN_PAGES))
        page = await state.client.list_tickets(page=scanned, page_size=100)


@dataclass(frozen=True)
class TicketFilters:
    """The filters of `list_tickets` as a check on one wire ticket (what K-LINK should have applied)."""

    status: str | None = None
    priority: str | None = None
    channel: str | None = None
    keyword: str | None = None
    contact_id: str | None = None

    def predicate(self) -> Callable[[Ticket], bool] | None:
        """The check, or None when no filter is set."""
        wanted = {
            "status": _norm(self.status),
            "priority": _norm(self.priority),
            "channel": _norm(self.channel),
        }
        wanted = {k: v for k, v in wanted.items() if v}
        needle = _norm(self.keyword)
        contact = (self.contact_id or "").strip()
        if not wanted and not needle and not contact:
            return None

        def keep(t: Ticket) -> bool:
            if any(_norm(getattr(t, key)) != value for key, value in wanted.items()):
                return False
            if contact and (t.contact_id or (t.contact.id if t.contact is not None else None)) != contact:
                return False
            return not needle or needle in _norm(t.title) or needle in _norm(t.description)

        return keep


def _norm(value: object) -> str:
    return str(value or "").strip().lower()


async def list_tickets(
    state: ServerState,
    ctx: Context[Any, Any],
    status: Annotated[
        str | None, Field(max_length=40, description="Only this status, e.g. open, in progress, pending.")
    ] = None,
    priority: Annotated[
        str | None, Field(max_length=40, description="Only this priority, e.g. high.")
    ] = None,
    channel: Annotated[str | None, Field(max_length=40, description="Only this channel, e.g. email.")] = None,
    keyword: Annotated[
        str | None,
        Field(max_length=200, description="Only tickets whose title or description contains this text."),
    ] = None,
    contact_id: Annotated[
        str | None, Field(max_length=256, description="Only this contact's tickets.")
    ] = None,
    detail: Annotated[
        bool, Field(description="Include descriptions, tags and custom fields (bigger output).")
    ] = False,
    page: Page = 1,
    page_size: PageSize = 10,
) -> FilteredList[TicketDetail]:
    filters = TicketFilters(status, priority, channel, keyword, contact_id)

    async def filtered(number: int, size: int) -> ApiPage[Ticket]:
        return await state.client.list_tickets(
            page=number,
            page_size=size,
            status=status or None,
            priority=priority or None,
            channel=channel or None,
            keyword=keyword or None,
            contact_id=contact_id or None,
        )

    async def unfiltered(number: int, size: int) -> ApiPage[Ticket]:
        return await state.client.list_tickets(page=number, page_size=size)

    tickets, facts = await honest_page(
        fetch_filtered=filtered,
        fetch_unfiltered=unfiltered,
        keep=filters.predicate(),
        what="ticket",
        page=page,
        page_size=page_size,
        concurrency=state.settings.page_concurrency,
        progress=_progress(ctx, "tickets"),
    )
    view = ticket_detail if detail else ticket_row
    return _filtered_list([view(t) for t in tickets], facts, page, page_size)


def _progress(ctx: Context[Any, Any], what: str) -> Callable[[int, int], Awaitable[None]]:
    async def progress(done: int, total: int) -> None:
        await ctx.report_progress(done, total, f"read {done} of {total} pages of {what}")

    return progress


def _filtered_list(
    views: list[V], facts: ApiPage[Ticket] | Scanned[Ticket], page: int, page_size: int
) -> FilteredList[V]:
    if isinstance(facts, Scanned):
        return facts.as_list(views, page, page_size)
    return FilteredList[V].of_page(facts, views, page_size)


async def get_ticket_by_number(
    state: ServerState,
    ctx: Context[Any, Any],
    ticket_number: Annotated[int, Field(ge=1, description="The ticket number people quote, e.g. 1042.")],
) -> TicketDetail:
    async def progress(done: int, total: int) -> None:
        await ctx.report_progress(done, total)

    match, scanned, pages = await _search_ticket_number(state, ticket_number, progress)
    if match is None:
        # The spec's not_found hint follows this text.
        searched = "" if scanned >= pages else f" in the newest {scanned} of {pages} pages of tickets"
        raise ToolFailure(ErrorCode.NOT_FOUND, f"No ticket number {ticket_number} found{searched}.")
    return ticket_detail(match)


async def list_contact_tickets(
    state: ServerState,
    ctx: Context[Any, Any],
    contact_id: ContactId,
    page: Page = 1,
    page_size: PageSize = 10,
) -> FilteredList[TicketSummary]:
    async def of_contact(number: int, size: int) -> ApiPage[Ticket]:
        return await state.client.list_contact_tickets(contact_id, page=number, page_size=size)

    # The path is [inferred]: a tenant that ignored the contact would list everyone's tickets.
    tickets, facts = await honest_page(
        fetch_filtered=of_contact,
        fetch_unfiltered=of_contact,
        keep=TicketFilters(contact_id=contact_id).predicate(),
        what="contact-ticket",
        page=page,
        page_size=page_size,
        concurrency=state.settings.page_concurrency,
        progress=_progress(ctx, "tickets"),
        probe=False,
    )
    return _filtered_list([ticket_summary(t) for t in tickets], facts, page, page_size)


async def get_ticket_form_fields(
    state: ServerState,
    custom_only: Annotated[bool, Field(description="Only the custom cf_* fields.")] = False,
) -> ListResult[FormFieldView]:
    return form_field_list(await state.client.all_ticket_form_fields(), custom_only=custom_only)


def status_values(schema: FormSchema | None) -> tuple[str, ...]:
    """Ticket status values: from the tenant's `status` field when it has options, else the defaults."""
    if schema is not None:
        for f in schema.builtin:
            if f.system_name == "status" and f.option_values:
                return f.option_values
    return DEFAULT_STATUSES


# K-LINK body keys -> the Ticket model's attribute names (for the audit's after-image).
_SNAKE = {"assigneeId": "assignee_id", "customFields": "custom_fields"}


# -- compiled from the tenant's ticket form ----------------------------------------------------------


def _ticket_tags_param(description: str, name: str = "tags") -> inspect.Parameter:
    return kw(
        name,
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=256)]] | None,
            Field(max_length=50, description=description),
        ],
        None,
    )


_TAGS_SET = "Tag NAMES (list_tags shows them) to set on the ticket."
_TAGS_REPLACE = (
    "Tag NAMES (list_tags shows them): REPLACES every tag of the ticket (tags not listed are removed; "
    "[] removes all), so it needs the user's approval. Not with tags_add/tags_remove."
)
_TAGS_ADD = "Tag NAMES (list_tags shows them) to ADD to the ticket's tags; its other tags are kept."
_TAGS_REMOVE = (
    "Tag NAMES (list_tags shows them) to REMOVE from the ticket's tags (the others are kept); "
    "removing needs the user's approval."
)


async def find_ticket_by_id(state: ServerState, ticket_id: str) -> Ticket:
    """The ticket with this id, from the listing (K-LINK has no single-ticket read).

    Reads the listing page by page, up to MAX_SCAN_PAGES, and stops at the first match.

    Raises:
        ToolFailure: not_found, when no ticket has this id within the pages read.
        KlinkError: a K-LINK call failed.
    """
    number = 1
    while True:
        page = await state.client.list_tickets(page=number, page_size=100)
        match = next((t for t in page.items if t.id == ticket_id), None)
        if match is not None:
            return match
        if not page.has_more or number >= MAX_SCAN_PAGES:
            break
        number += 1
    scope = (
        "in the whole ticket listing"
        if not page.has_more
        else f"in the first {number} pages of the ticket listing (the scan stops there)"
    )
    raise ToolFailure(
        ErrorCode.NOT_FOUND,
        f"ticket_id: no ticket {json.dumps(ticket_id)} {scope}; tags_add/tags_remove need its current "
        "tags. list_tickets or get_ticket_by_number show ticket ids.",
        fields=["ticket_id"],
    )


def _tag_names(ticket: Ticket) -> list[str]:
    # As K-LINK holds them: the edit is computed on what the tenant compares.
    return [t.name for t in ticket.tags if t.name]


async def _tag_ids(state: ServerState, names: list[str]) -> dict[str, str]:
    """Tag names -> ids, compared as K-LINK compares names (case-insensitively), in the given order.

    Raises:
        ToolFailure: a name is not a tag of the tenant (the message suggests close names).
    """
    by_key = {(t.name or "").strip().lower(): t for t in await state.client.list_tags() if t.name}
    ids: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        tag = by_key.get(name.strip().lower())
        if tag is None:
            unknown.append(name)
        else:
            ids[tag.name or name] = tag.id
    if unknown:
        close = sorted(
            {m for n in unknown for m in difflib.get_close_matches(n.lower(), list(by_key), n=3, cutoff=0.6)}
        )
        hint = f" Did you mean: {', '.join(json.dumps(by_key[m].name or m) for m in close)}?" if close else ""
        raise ToolFailure(
            ErrorCode.VALIDATION,
            # json.dumps escapes what the model sent (bidi and control characters stay inert).
            f"tags: unknown tag name(s): {', '.join(json.dumps(n) for n in unknown)}. Tickets take "
            "existing tag names; "
            f"list_tags shows them.{hint}",
            fields=["tags"],
        )
    return ids


def _clean_names(tags: list[str]) -> list[str]:
    return sorted({t.strip() for t in tags if t.strip()}, key=str.lower)


def _token_params(guarded: bool) -> list[inspect.Parameter]:
    return [kw("confirmation_token", ConfirmationToken, None)] if guarded else []


def create_ticket_parameters(schema: FormSchema, guarded: bool) -> list[inspect.Parameter]:
    """The parameters of `create_ticket`: the contact id, the form's fields, tag ids (and the token)."""
    params = [
        kw("ctx", Context[Any, Any]),
        kw(
            "contact_id",
            Annotated[str, Field(min_length=1, max_length=256, description="The customer's contact id.")],
        ),
        *schema.builtin_parameters(for_update=False),
        *custom_fields_param(schema, for_update=False, kind="ticket"),
        _ticket_tags_param(_TAGS_SET),
        *_token_params(guarded),
    ]
    params.sort(key=lambda p: p.default is not p.empty)
    return params


def update_ticket_parameters(schema: FormSchema, guarded: bool) -> list[inspect.Parameter]:
    """The parameters of `update_ticket`: the ticket id, then the form's fields (not status), all optional."""
    params = [
        kw("ctx", Context[Any, Any]),
        kw("ticket_id", TicketId),
        *schema.builtin_parameters(for_update=True, exclude=("status",)),
        kw(
            "assignee_id",
            Annotated[str | None, Field(max_length=256, description="Agent id to assign the ticket to.")],
            None,
        ),
        *custom_fields_param(schema, for_update=True, kind="ticket"),
        _ticket_tags_param(_TAGS_REPLACE),
        _ticket_tags_param(_TAGS_ADD, "tags_add"),
        _ticket_tags_param(_TAGS_REMOVE, "tags_remove"),
        *_token_params(guarded),
    ]
    params.sort(key=lambda p: p.default is not p.empty)
    return params


def update_ticket_status_parameters(schema: FormSchema, guarded: bool) -> list[inspect.Parameter]:
    """The parameters of `update_ticket_status`: the ticket id and one of the tenant's status values."""
    status_type: Any = Literal[status_values(schema)]
    return [
        kw("ctx", Context[Any, Any]),
        kw("ticket_id", TicketId),
        kw("status", Annotated[status_type, Field(description="The new status.")]),
        *_token_params(guarded),
    ]


async def create_ticket(
    state: ServerState, schema: FormSchema, **kwargs: Any
) -> TicketOutcome | InputRequiredResult:
    ctx = kwargs.pop("ctx")
    token = kwargs.pop("confirmation_token", None)
    contact_id = kwargs.pop("contact_id")
    body = schema.wire_body(kwargs)
    body["contact_id"] = contact_id  # the contract's one snake_case request key
    if tags := _clean_names(kwargs.get("tags") or []):
        body["tags"] = list((await _tag_ids(state, tags)).values())  # the wire takes tag ids

    async def execute() -> TicketDetail:
        return ticket_detail(await state.client.create_ticket(body))

    ran = await run_guarded(
        state,
        ctx,
        tool="create_ticket",
        args=body,
        confirmation_token=token,
        load_preview=lambda: previews.generic(
            "Create ticket", f"Create ticket {body.get('title', '')!r}", "ticket", None, body
        ),
        execute=execute,
        target_ids={"contact_id": contact_id},
    )
    return guarded_outcome(TicketOutcome, "ticket", ran)


async def update_ticket(
    state: ServerState, schema: FormSchema, **kwargs: Any
) -> TicketOutcome | InputRequiredResult:
    ctx = kwargs.pop("ctx")
    token = kwargs.pop("confirmation_token", None)
    ticket_id = kwargs.pop("ticket_id")
    body = schema.wire_body(kwargs)
    if assignee_id := kwargs.get("assignee_id"):
        body["assigneeId"] = assignee_id
    # The guard and the preview see tag NAMES (what the tickets show); the wire takes their ids.
    args: dict[str, Any] = dict(body)
    wire = dict(body)
    add_arg, remove_arg = kwargs.get("tags_add"), kwargs.get("tags_remove")
    if kwargs.get("tags") is not None and (add_arg is not None or remove_arg is not None):
        raise ToolFailure(
            ErrorCode.VALIDATION,
            "tags replaces every tag; tags_add/tags_remove edit the current ones: give one or the other.",
            fields=["tags", "tags_add", "tags_remove"],
        )
    if kwargs.get("tags") is not None:
        # Present, even empty: a ticket update with tags replaces every tag (the policy asks).
        ids = await _tag_ids(state, _clean_names(kwargs["tags"]))
        args["tags"], wire["tags"] = list(ids), list(ids.values())
    # tags_add / tags_remove: read-modify-write, since a ticket update with tags replaces them all.
    add_ids = await _tag_ids(state, _clean_names(add_arg)) if add_arg else {}
    remove_ids = await _tag_ids(state, _clean_names(remove_arg)) if remove_arg else {}
    if both := sorted(set(add_ids.values()) & set(remove_ids.values())):
        names = [n for n, i in add_ids.items() if i in both]
        raise ToolFailure(
            ErrorCode.VALIDATION,
            f"tags_add and tags_remove both name {', '.join(json.dumps(n) for n in names)}: "
            "say whether to add or to remove it.",
            fields=["tags_add", "tags_remove"],
        )
    editing = bool(add_ids or remove_ids)
    if add_ids:
        args["tags_add"] = list(add_ids)
    if remove_ids:
        args["tags_remove"] = list(remove_ids)
    if not wire and not editing:
        raise ToolFailure(ErrorCode.VALIDATION, "Nothing to update: give at least one field to change.")
    # The ticket's tags as last read (the scan now, the preview's fresh read if one is shown): the
    # written list is computed from the read the approval bound, never from an older one.
    seen: dict[str, Ticket] = {}
    if editing:
        seen["ticket"] = await find_ticket_by_id(state, ticket_id)

    def edited_wire() -> tuple[dict[str, Any], list[str]]:
        before = seen["ticket"]
        _, after = previews.ticket_tag_edit(_tag_names(before), list(add_ids), list(remove_ids))
        known = {(t.name or "").strip().lower(): t.id for t in before.tags if t.name and t.id}
        known |= {n.strip().lower(): i for n, i in add_ids.items()}
        missing = [n for n in after if n.strip().lower() not in known]
        if missing:  # a held tag the listing gave without its id: never drop it silently
            raise ToolFailure(
                ErrorCode.UPSTREAM_UNEXPECTED,
                f"The ticket's tag(s) {', '.join(json.dumps(n) for n in missing)} came without an id; "
                "nothing was written. Use tags (replace) with the full list instead.",
            )
        return {**wire, "tags": [known[n.strip().lower()] for n in after]}, _tag_names(before)

    async def execute() -> TicketDetail:
        body_out, before_tags = edited_wire() if editing else (wire, None)
        after = await state.client.update_ticket(ticket_id, body_out)
        # K-LINK cannot read one ticket by id: the before-image is not known (tags edited by
        # tags_add/tags_remove excepted: the scan read them), the after is.
        for key in args:
            if key in ("tags_add", "tags_remove"):
                continue
            if key == "tags":
                value: Any = [t.name for t in after.tags]
            elif key == "customFields":
                value = {k: after.custom_fields.get(k) for k in args[key]}
            else:
                value = getattr(after, _SNAKE.get(key, key), None)
            changes[key] = {"before": None, "after": value if value is not None else args[key]}
        if before_tags is not None:
            changes["tags"] = {"before": before_tags, "after": [t.name for t in after.tags]}
        return ticket_detail(after)

    async def load_preview() -> Preview:
        if not editing:
            return await previews.for_ticket(state, ticket_id, "Update ticket", args)
        seen["ticket"] = await find_ticket_by_id(state, ticket_id)  # fresh: the approval binds it
        return await previews.for_ticket(
            state, ticket_id, "Update ticket", args, current_tags=_tag_names(seen["ticket"])
        )

    changes: dict[str, Any] = {}
    ran = await run_guarded(
        state,
        ctx,
        tool="update_ticket",
        args={"ticket_id": ticket_id, **args},
        confirmation_token=token,
        load_preview=load_preview,
        execute=execute,
        target_ids={"ticket_id": ticket_id},
        change=lambda _: changes,
    )
    return guarded_outcome(TicketOutcome, "ticket", ran)


async def update_ticket_status(
    state: ServerState,
    schema: FormSchema,
    ctx: Context[Any, Any],
    ticket_id: str,
    status: str,
    confirmation_token: str | None = None,
) -> TicketOutcome | InputRequiredResult:
    async def execute() -> TicketDetail:
        view = ticket_detail(await state.client.update_ticket_status(ticket_id, status))
        changes["status"] = {"before": None, "after": status}
        return view

    changes: dict[str, Any] = {}

    ran = await run_guarded(
        state,
        ctx,
        tool="update_ticket_status",
        args={"ticket_id": ticket_id, "status": status},
        confirmation_token=confirmation_token,
        load_preview=lambda: previews.for_ticket(
            state, ticket_id, "Change ticket status", {"status": status}
        ),
        execute=execute,
        target_ids={"ticket_id": ticket_id},
        change=lambda _: changes,
    )
    return guarded_outcome(TicketOutcome, "ticket", ran)


# -- the specs ---------------------------------------------------------------------------------------

LIST_TICKETS = ToolSpec(
    name="list_tickets",
    title="List tickets",
    description="List helpdesk tickets, newest first, optionally filtered by status, priority, channel, "
    "keyword or contact; total and has_more count the filtered tickets. Compact by default; pass "
    "detail=true for descriptions. To triage, start with status='open'. Times are UTC. "
    f"{UNTRUSTED_NOTE}",
    toolset="tickets",
    effects=ToolPolicy(_R, idempotent=True),
    output=FilteredList[TicketDetail],
    handler=list_tickets,
    hints=FINDS_TICKETS,
)
GET_TICKET_BY_NUMBER = ToolSpec(
    name="get_ticket_by_number",
    title="Get a ticket by its number",
    description="Look up one ticket by the number people quote (e.g. #1042), in full. K-LINK has no "
    "single-ticket endpoint, so this searches the ticket listing. Times are UTC. " + UNTRUSTED_NOTE,
    toolset="tickets",
    effects=ToolPolicy(_R, idempotent=True),
    output=TicketDetail,
    handler=get_ticket_by_number,
    hints={ErrorCode.NOT_FOUND: "Use list_tickets (keyword or contact filter) to find it."},
)
CREATE_TICKET = ToolSpec(
    name="create_ticket",
    title="Create a ticket",
    description="Open a helpdesk ticket for a contact. Parameters are this tenant's ticket form: built-in "
    "fields at the top level, custom cf_* fields inside custom_fields. Returns the ticket with its id "
    "and number.",
    toolset="tickets",
    effects=ToolPolicy(_W, idempotent=False),
    output=TicketOutcome,
    handler=create_ticket,
    # The id a new ticket refers to is its contact's: a not-found is about the contact.
    hints=FINDS_CONTACTS,
    form="ticket",
    form_parameters=create_ticket_parameters,
)
LIST_CONTACT_TICKETS = ToolSpec(
    name="list_contact_tickets",
    title="List a contact's tickets",
    description="All tickets of one contact (compact). Useful to summarise a customer's history together "
    "with list_cx_logs. Times are UTC.",
    toolset="tickets",
    effects=ToolPolicy(_R, idempotent=True),
    output=FilteredList[TicketSummary],
    handler=list_contact_tickets,
    hints=FINDS_CONTACTS,
)
GET_TICKET_FORM_FIELDS = ToolSpec(
    name="get_ticket_form_fields",
    title="Ticket form fields",
    description="The tenant's ticket fields (built-in and custom cf_*), with types, required flags and "
    "allowed values. create_ticket/update_ticket already take these as typed parameters.",
    toolset="tickets",
    effects=ToolPolicy(_R, idempotent=True),
    output=ListResult[FormFieldView],
    handler=get_ticket_form_fields,
    hints=FINDS_TICKETS,
)
UPDATE_TICKET = ToolSpec(
    name="update_ticket",
    title="Update a ticket",
    description="Change a ticket's fields (only those you pass). Tags are NAMES: tags replaces every tag, "
    "tags_add adds some, tags_remove removes some (the others are kept). Clearing a field, replacing "
    "or removing tags needs the user's approval; other changes run directly "
    "and are recorded in the audit log. To change its status use update_ticket_status.",
    toolset="tickets",
    effects=ToolPolicy(
        _D,
        idempotent=True,
        risk_for_args=update_effect_risk,
        guarded_when="When it clears a field, replaces or removes tags (or, with KLINK_CONFIRM_OVERWRITES, "
        "changes any field),",
    ),
    output=TicketOutcome,
    handler=update_ticket,
    hints=FINDS_TICKETS,
    form="ticket",
    form_parameters=update_ticket_parameters,
)
UPDATE_TICKET_STATUS = ToolSpec(
    name="update_ticket_status",
    title="Change a ticket's status",
    description="Move a ticket to another status (e.g. resolve it once the customer's issue is handled). "
    "Solving or closing it (KLINK_APPROVAL_STATUSES, default resolved and closed) usually notifies the "
    "customer, so it needs the user's approval.",
    toolset="tickets",
    effects=ToolPolicy(  # PUT
        _D,
        idempotent=True,
        risk_for_args=status_change_risk,
        guarded_when="When the new status solves or closes the ticket,",
    ),
    output=TicketOutcome,
    handler=update_ticket_status,
    hints=FINDS_TICKETS,
    form="ticket",
    form_parameters=update_ticket_status_parameters,
)

SPECS: tuple[ToolSpec, ...] = (
    LIST_TICKETS,
    GET_TICKET_BY_NUMBER,
    LIST_CONTACT_TICKETS,
    GET_TICKET_FORM_FIELDS,
    CREATE_TICKET,
    UPDATE_TICKET,
    UPDATE_TICKET_STATUS,
)
