"""Resources, completions and prompts.

Resources: `klink://contacts/{contact_id}`, `klink://tickets/{ticket_number}`, `klink://forms/contact`,
`klink://forms/ticket`, `klink://categories`, `klink://audit/recent` (JSON). Completions offer tag names,
channels, ticket statuses and priorities and category values for prompt and template arguments.
Prompts are the `*.md` files in `klink_mcp/prompts/`, parsed and rendered by `klink_mcp.prompt_templates`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from klink_mcp.api import errors as api_errors
from klink_mcp.content import has_invisible
from klink_mcp.prompt_templates import PromptFileError, PromptSpec, load_prompts, parse_prompt
from klink_mcp.tools.results import form_field_list
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.tickets import DEFAULT_STATUSES, find_ticket_by_number, status_values
from klink_mcp.tools.views import (
    category_node,
    contact_detail,
    ticket_detail,
)

logger = logging.getLogger("klink_mcp.resources")

__all__ = ["PromptFileError", "PromptSpec", "completion_values", "load_prompts", "parse_prompt", "register"]

DEFAULT_PRIORITIES = ("low", "medium", "high", "urgent")
MAX_COMPLETIONS = 100


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1, default=str)


def register(mcp: MCPServer[Any], state: ServerState) -> None:
    """Register resources, the completion handler and the prompts."""

    @mcp.resource(
        "klink://contacts/{contact_id}",
        name="contact",
        description="One contact in full (JSON). Customer-written notes are fenced as untrusted.",
        mime_type="application/json",
    )
    async def contact_resource(contact_id: str) -> str:
        try:
            contact = await state.client.get_contact(contact_id)
        except (api_errors.NotFound, api_errors.KlinkInputError) as exc:
            raise ResourceNotFoundError(f"No contact {contact_id!r}") from exc
        return _json(contact_detail(contact).model_dump(exclude_none=True))

    @mcp.resource(
        "klink://tickets/{ticket_number}",
        name="ticket",
        description="One ticket by its number (JSON), found through the ticket listing.",
        mime_type="application/json",
    )
    async def ticket_resource(ticket_number: str) -> str:
        if not ticket_number.isdigit():
            raise ResourceNotFoundError(f"Ticket numbers are digits, got {ticket_number!r}")
        number = int(ticket_number)
        match = await find_ticket_by_number(state, number)
        if match is None:
            raise ResourceNotFoundError(f"No ticket number {number}")
        return _json(ticket_detail(match).model_dump(exclude_none=True))

    @mcp.resource(
        "klink://forms/contact",
        name="contact-form",
        description="The tenant's contact form fields (JSON).",
        mime_type="application/json",
    )
    async def contact_form_resource() -> str:
        return _form_json(await state.client.all_contact_form_fields())

    @mcp.resource(
        "klink://forms/ticket",
        name="ticket-form",
        description="The tenant's ticket form fields (JSON).",
        mime_type="application/json",
    )
    async def ticket_form_resource() -> str:
        return _form_json(await state.client.all_ticket_form_fields())

    @mcp.resource(
        "klink://categories",
        name="categories",
        description="The category tree (JSON).",
        mime_type="application/json",
    )
    async def categories_resource() -> str:
        return _json([category_node(c).model_dump() for c in await state.client.list_categories()])

    @mcp.resource(
        "klink://audit/recent",
        name="audit-recent",
        description="The most recent guarded write attempts and decisions (JSON lines as a list).",
        mime_type="application/json",
    )
    async def audit_resource() -> str:
        return _json(await state.guard.audit.recent_shared(100))

    @mcp.completion()  # type: ignore[untyped-decorator, no-untyped-call]
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        values = await completion_values(state, argument.name)
        if values is None:
            return None
        prefix = argument.value.lower()
        matches = [v for v in values if v.lower().startswith(prefix)]
        return Completion(
            values=matches[:MAX_COMPLETIONS], total=len(matches), has_more=len(matches) > MAX_COMPLETIONS
        )

    for prompt in load_prompts():
        mcp.add_prompt(prompt.to_mcp())


def _form_json(fields: list[Any]) -> str:
    return _json([v.model_dump() for v in form_field_list(fields, custom_only=False).items])


def _exact_values(values: Any) -> list[str]:
    """Values offered to be sent back as they are: one hiding an invisible character is left out
    (cleaning it would offer a value the tenant does not have; showing it would pass the character on)."""
    return sorted({str(v) for v in values if v and not has_invisible(str(v))})


async def completion_values(state: ServerState, name: str) -> list[str] | None:
    """Candidate values for an argument name, or None when the name is not one we complete."""
    try:
        if name in ("tag", "tags", "tag_name"):
            return _exact_values(t.name for t in await state.client.list_tags())
        if name in ("channel", "channel_name"):
            return _exact_values(c.name for c in await state.client.list_channels())
        if name == "status":
            return list(status_values(state.forms.get("ticket")) or DEFAULT_STATUSES)
        if name == "priority":
            schema = state.forms.get("ticket")
            for f in schema.builtin if schema else []:
                if f.system_name == "priority" and f.option_values:
                    return list(f.option_values)
            return list(DEFAULT_PRIORITIES)
        if name in ("category", "category_value"):
            out: list[str] = []

            def walk(nodes: list[Any]) -> None:
                for n in nodes:
                    if n.value and not has_invisible(n.value):
                        out.append(n.value)
                    walk(n.child_category_list)

            walk(await state.client.list_categories())
            return out
    except api_errors.KlinkError as exc:
        logger.info("completion for %s unavailable: %s", name, type(exc).__name__)
        return []
    return None
