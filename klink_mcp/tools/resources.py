"""Resources, completions and prompts.

Resources: `klink://contacts/{contact_id}`, `klink://tickets/{ticket_number}`, `klink://forms/contact`,
`klink://forms/ticket`, `klink://categories`, `klink://audit/recent` (JSON). Completions offer tag names,
channels, ticket statuses and priorities and category values for prompt and template arguments.
Prompts are the `*.md` files in `klink_mcp/prompts/` (TOML front matter between `+++` lines with
`name`, `description`, `[[arguments]]`; the body uses `{argument}` placeholders).
"""

from __future__ import annotations

import inspect
import json
import logging
import tomllib
from dataclasses import dataclass
from importlib import resources as importlib_resources
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)
from pydantic import Field

from klink_mcp.api import errors as api_errors
from klink_mcp.tools.results import form_field_list
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.tickets import DEFAULT_STATUSES, find_ticket_by_number, status_values
from klink_mcp.tools.views import (
    category_node,
    contact_detail,
    ticket_detail,
)

logger = logging.getLogger("klink_mcp.resources")

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
        return _json(state.guard.audit.recent(100))

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


async def completion_values(state: ServerState, name: str) -> list[str] | None:
    """Candidate values for an argument name, or None when the name is not one we complete."""
    try:
        if name in ("tag", "tags", "tag_name"):
            return sorted({str(t.name) for t in await state.client.list_tags() if t.name})
        if name in ("channel", "channel_name"):
            return sorted({str(c.name) for c in await state.client.list_channels() if c.name})
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
                    if n.value:
                        out.append(n.value)
                    walk(n.children)

            walk([category_node(c) for c in await state.client.list_categories()])
            return out
    except api_errors.KlinkError as exc:
        logger.info("completion for %s unavailable: %s", name, type(exc).__name__)
        return []
    return None


@dataclass(frozen=True)
class PromptSpec:
    name: str
    description: str
    arguments: tuple[tuple[str, str, bool], ...]
    body: str

    def render(self, values: dict[str, Any]) -> str:
        text = self.body
        for arg, _, _ in self.arguments:
            text = text.replace("{" + arg + "}", str(values.get(arg) or "(not given)"))
        return text

    def to_mcp(self) -> Prompt:
        params = [
            inspect.Parameter(
                arg,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if required else None,
                annotation=Annotated[str, Field(description=desc)]
                if required
                else Annotated[str | None, Field(description=desc)],
            )
            for arg, desc, required in self.arguments
        ]
        spec = self

        def render_prompt(**kwargs: Any) -> str:
            return spec.render(kwargs)

        render_prompt.__name__ = self.name
        render_prompt.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
        render_prompt.__annotations__ = {p.name: p.annotation for p in params} | {"return": str}
        return Prompt.from_function(render_prompt, name=self.name, description=self.description)


class PromptFileError(ValueError):
    """A prompt file has no valid front matter."""


def parse_prompt(text: str, *, source: str) -> PromptSpec:
    """Parse one prompt file.

    Raises:
        PromptFileError: missing or invalid front matter, or a placeholder without an argument.
    """
    if not text.startswith("+++"):
        raise PromptFileError(f"{source}: must start with a '+++' TOML front matter block")
    try:
        _, front, body = text.split("+++", 2)
        meta = tomllib.loads(front)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PromptFileError(f"{source}: invalid front matter: {exc}") from exc
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise PromptFileError(f"{source}: front matter needs a name")
    args = tuple(
        (str(a["name"]), str(a.get("description", "")), bool(a.get("required", False)))
        for a in meta.get("arguments", [])
    )
    return PromptSpec(
        name=name, description=str(meta.get("description", "")), arguments=args, body=body.strip()
    )


def load_prompts() -> list[PromptSpec]:
    """Every prompt shipped in `klink_mcp/prompts/*.md`, sorted by name."""
    folder = importlib_resources.files("klink_mcp") / "prompts"
    specs = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            specs.append(parse_prompt(entry.read_text(encoding="utf-8"), source=entry.name))
    return specs
