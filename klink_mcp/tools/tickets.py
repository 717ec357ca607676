"""Ticket tools: list and filter, look up by number, per contact, create, update, change status.

`create_ticket`, `update_ticket` and `update_ticket_status` are compiled per tenant from the ticket
form (built-ins at the top level, `cf_*` fields under `custom_fields`, status values as an enum).
K-LINK has no single-ticket endpoint: `get_ticket_by_number` is served from the listing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import InputRequiredResult
from pydantic import Field

from klink_mcp.content import UNTRUSTED_NOTE
from klink_mcp.forms import FormSchema
from klink_mcp.tools import previews
from klink_mcp.tools._common import (
    ListResult,
    ServerState,
    ToolFailure,
    WriteOutcome,
    build_function,
    custom_fields_param,
    form_field_list,
    guarded_outcome,
    kw,
    register_tool,
    run_guarded,
    unregister,
)
from klink_mcp.tools.contacts import ConfirmationToken, ContactId, Page, PageSize
from klink_mcp.tools.views import (
    FormFieldView,
    TicketDetail,
    TicketSummary,
    ticket_detail,
    ticket_row,
    ticket_summary,
)

TicketId = Annotated[
    str,
    Field(
        min_length=1, max_length=256, description="The ticket's id (uuid), not its number; see list_tickets."
    ),
]
DEFAULT_STATUSES = ("open", "in progress", "pending", "resolved", "closed")
MAX_SCAN_PAGES = 50


class TicketOutcome(WriteOutcome):
    ticket: TicketDetail | None = None


async def find_ticket_by_number(
    state: ServerState,
    number: int,
    progress: Callable[[int, int], Awaitable[None]] | None = None,
) -> Any | None:
    """The ticket with this number, from the listing (K-LINK has no single-ticket endpoint).

    Asks with the (inferred) `ticketNumber` filter first; if the tenant ignores it, scans the listing
    page by page (up to MAX_SCAN_PAGES), reporting progress.
    """
    page = await state.client.list_tickets(page=1, page_size=100, ticket_number=number)
    scanned = 1
    while True:
        match = next((t for t in page.items if ticket_summary(t).ticket_number == number), None)
        if match is not None or not page.has_more or scanned >= MAX_SCAN_PAGES:
            return match
        scanned += 1
        if progress is not None:
            await progress(scanned, min(page.last_page or MAX_SCAN_PAGES, MAX_SCAN_PAGES))
        page = await state.client.list_tickets(page=scanned, page_size=100)


def register_static(mcp: MCPServer[Any], state: ServerState) -> None:
    async def list_tickets(
        status: Annotated[
            str | None, Field(max_length=40, description="Only this status, e.g. open, in progress, pending.")
        ] = None,
        priority: Annotated[
            str | None, Field(max_length=40, description="Only this priority, e.g. high.")
        ] = None,
        channel: Annotated[
            str | None, Field(max_length=40, description="Only this channel, e.g. email.")
        ] = None,
        keyword: Annotated[
            str | None, Field(max_length=200, description="Search in title/description.")
        ] = None,
        contact_id: Annotated[
            str | None, Field(max_length=256, description="Only this contact's tickets.")
        ] = None,
        detail: Annotated[
            bool, Field(description="Include descriptions, tags and custom fields (bigger output).")
        ] = False,
        page: Page = 1,
        page_size: PageSize = 10,
    ) -> ListResult[TicketDetail]:
        result = await state.client.list_tickets(
            page=page,
            page_size=page_size,
            status=status or None,
            priority=priority or None,
            channel=channel or None,
            keyword=keyword or None,
            contact_id=contact_id or None,
        )
        view = ticket_detail if detail else ticket_row
        items = [view(t) for t in result.items]
        return ListResult[TicketDetail].from_page(result, items, page_size)

    register_tool(
        mcp,
        list_tickets,
        name="list_tickets",
        title="List tickets",
        description="List helpdesk tickets, newest first, optionally filtered by status, priority, channel, "
        "keyword or contact. Compact by default; pass detail=true for descriptions. To triage, start with "
        f"status='open'. {UNTRUSTED_NOTE}",
    )

    async def get_ticket_by_number(
        ctx: Context[Any, Any],
        ticket_number: Annotated[int, Field(ge=1, description="The ticket number people quote, e.g. 1042.")],
    ) -> TicketDetail:
        async def progress(done: int, total: int) -> None:
            await ctx.report_progress(done, total)

        match = await find_ticket_by_number(state, ticket_number, progress)
        if match is None:
            raise ToolFailure(
                "not_found",
                f"No ticket number {ticket_number} found. Use list_tickets (keyword or contact filter) to find it.",
            )
        return ticket_detail(match)

    register_tool(
        mcp,
        get_ticket_by_number,
        name="get_ticket_by_number",
        title="Get a ticket by its number",
        description="Look up one ticket by the number people quote (e.g. #1042), in full. K-LINK has no "
        "single-ticket endpoint, so this searches the ticket listing. " + UNTRUSTED_NOTE,
    )

    async def list_contact_tickets(
        contact_id: ContactId, page: Page = 1, page_size: PageSize = 10
    ) -> ListResult[TicketSummary]:
        result = await state.client.list_contact_tickets(contact_id, page=page, page_size=page_size)
        return ListResult[TicketSummary].from_page(
            result, [ticket_summary(t) for t in result.items], page_size
        )

    register_tool(
        mcp,
        list_contact_tickets,
        name="list_contact_tickets",
        title="List a contact's tickets",
        description="All tickets of one contact (compact). Useful to summarise a customer's history together "
        "with list_cx_logs.",
    )

    async def get_ticket_form_fields(
        custom_only: Annotated[bool, Field(description="Only the custom cf_* fields.")] = False,
    ) -> ListResult[FormFieldView]:
        return form_field_list(await state.client.all_ticket_form_fields(), custom_only=custom_only)

    register_tool(
        mcp,
        get_ticket_form_fields,
        name="get_ticket_form_fields",
        title="Ticket form fields",
        description="The tenant's ticket fields (built-in and custom cf_*), with types, required flags and "
        "allowed values. create_ticket/update_ticket already take these as typed parameters.",
    )


def status_values(schema: FormSchema | None) -> tuple[str, ...]:
    """Ticket status values: from the tenant's `status` field when it has options, else the defaults."""
    if schema is not None:
        for f in schema.builtin:
            if f.system_name == "status" and f.option_values:
                return f.option_values
    return DEFAULT_STATUSES


def register_form_tools(mcp: MCPServer[Any], state: ServerState, schema: FormSchema) -> list[str]:
    """(Re)build create_ticket, update_ticket and update_ticket_status from the tenant's ticket form."""
    names = ["create_ticket", "update_ticket", "update_ticket_status"]
    for name in names:
        unregister(mcp, name)

    ctx_param = kw("ctx", Context[Any, Any])
    token_param = kw("confirmation_token", ConfirmationToken, None)
    tags_param = kw(
        "tags",
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=256)]] | None,
            Field(max_length=50, description="Tag ids (uuids from list_tags)."),
        ],
        None,
    )
    guarded = state.guard.is_guarded

    async def create_impl(**kwargs: Any) -> TicketOutcome | InputRequiredResult:
        ctx = kwargs.pop("ctx")
        token = kwargs.pop("confirmation_token", None)
        contact_id = kwargs.pop("contact_id")
        body = schema.wire_body(kwargs)
        body["contact_id"] = contact_id  # the contract's one snake_case request key
        if tags := kwargs.get("tags"):
            body["tags"] = sorted(set(tags))

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

    create_params = [
        ctx_param,
        kw(
            "contact_id",
            Annotated[str, Field(min_length=1, max_length=256, description="The customer's contact id.")],
        ),
        *schema.builtin_parameters(for_update=False),
        *custom_fields_param(schema, for_update=False, kind="ticket"),
        tags_param,
        *([token_param] if guarded("create_ticket") else []),
    ]
    create_params.sort(key=lambda p: p.default is not p.empty)
    register_tool(
        mcp,
        build_function("create_ticket", create_impl, create_params, TicketOutcome | InputRequiredResult),
        name="create_ticket",
        title="Create a ticket",
        description="Open a helpdesk ticket for a contact. Parameters are this tenant's ticket form: built-in "
        "fields at the top level, custom cf_* fields inside custom_fields. Returns the ticket with its id "
        "and number.",
    )

    async def update_impl(**kwargs: Any) -> TicketOutcome | InputRequiredResult:
        ctx = kwargs.pop("ctx")
        token = kwargs.pop("confirmation_token", None)
        ticket_id = kwargs.pop("ticket_id")
        body = schema.wire_body(kwargs)
        if assignee_id := kwargs.get("assignee_id"):
            body["assigneeId"] = assignee_id
        if tags := kwargs.get("tags"):
            body["tags"] = sorted(set(tags))
        if not body:
            raise ToolFailure("validation", "Nothing to update: give at least one field to change.")

        async def execute() -> TicketDetail:
            return ticket_detail(await state.client.update_ticket(ticket_id, body))

        ran = await run_guarded(
            state,
            ctx,
            tool="update_ticket",
            args={"ticket_id": ticket_id, **body},
            confirmation_token=token,
            load_preview=lambda: previews.for_ticket(state, ticket_id, "Update ticket", body),
            execute=execute,
            target_ids={"ticket_id": ticket_id},
        )
        return guarded_outcome(TicketOutcome, "ticket", ran)

    update_params = [
        ctx_param,
        kw("ticket_id", TicketId),
        *schema.builtin_parameters(for_update=True, exclude=("status",)),
        kw(
            "assignee_id",
            Annotated[str | None, Field(max_length=256, description="Agent id to assign the ticket to.")],
            None,
        ),
        *custom_fields_param(schema, for_update=True, kind="ticket"),
        tags_param,
        *([token_param] if guarded("update_ticket") else []),
    ]
    update_params.sort(key=lambda p: p.default is not p.empty)

    register_tool(
        mcp,
        build_function("update_ticket", update_impl, update_params, TicketOutcome | InputRequiredResult),
        name="update_ticket",
        title="Update a ticket",
        description="Change a ticket's fields (only those you pass). To change its status use "
        "update_ticket_status.",
    )

    statuses = status_values(schema)
    status_type: Any = Literal[statuses]

    async def status_impl(
        ctx: Context[Any, Any], ticket_id: str, status: str, confirmation_token: str | None = None
    ) -> TicketOutcome | InputRequiredResult:
        async def execute() -> TicketDetail:
            return ticket_detail(await state.client.update_ticket_status(ticket_id, status))

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
        )
        return guarded_outcome(TicketOutcome, "ticket", ran)

    status_params = [
        ctx_param,
        kw("ticket_id", TicketId),
        kw("status", Annotated[status_type, Field(description="The new status.")]),
        *([token_param] if guarded("update_ticket_status") else []),
    ]
    register_tool(
        mcp,
        build_function(
            "update_ticket_status", status_impl, status_params, TicketOutcome | InputRequiredResult
        ),
        name="update_ticket_status",
        title="Change a ticket's status",
        description="Move a ticket to another status (e.g. resolve it once the customer's issue is handled).",
    )
    return names
