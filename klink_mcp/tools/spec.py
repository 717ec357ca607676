"""`ToolSpec`: everything about one tool, in one module-level value.

A spec carries the tool's name, title, description, toolset, output model, effects (the guard's
`ToolPolicy`: what it can delete, overwrite or send), next-step hints per error code and its
handler. The handler is a module-level `async def` whose first parameter is the `ServerState`; the
rest of its signature is the tool's input (for tools compiled from a tenant form, the input comes
from `form_parameters(schema, guarded)` and the handler also receives the compiled `FormSchema`).

Everything else is derived from the specs (`klink_mcp.inventory`): the registration, the
toolset map, the guard's risk table, the annotations and the README's tool table. This module must
not register anything nor talk to K-LINK.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp.types import ToolAnnotations
from pydantic import BaseModel

from klink_mcp.api.errors import ErrorCode
from klink_mcp.forms import FormKind, FormSchema
from klink_mcp.guard.policy import Risk, ToolPolicy, annotations_of

FormParameters = Callable[[FormSchema, bool], list[inspect.Parameter]]


@dataclass(frozen=True)
class ToolSpec:
    """One tool of the server (see the module docstring)."""

    name: str
    title: str
    description: str
    toolset: str
    effects: ToolPolicy
    output: type[BaseModel]
    handler: Callable[..., Awaitable[Any]]
    hints: Mapping[ErrorCode, str] = field(default_factory=dict)
    # Tools compiled from a tenant form: which form, and the parameters it yields (schema, guarded).
    form: FormKind | None = None
    form_parameters: FormParameters | None = None
    # False: results may hold nulls, so the output schema keeps its null branches and the SDK
    # serializes (and checks) the result itself.
    compact_output: bool = True

    @property
    def annotations(self) -> ToolAnnotations:
        """MCP annotations derived from the effects, with all four hints stated explicitly."""
        return annotations_of(self.effects)

    @property
    def confirms_always(self) -> bool:
        """Destructive tools: the guard's confirmation paragraph is part of their description."""
        return self.effects.risk is Risk.DESTRUCTIVE


CONTACT_NOT_FOUND = (
    "Use list_contacts (keyword search) or find_contacts_by_social_platform_id to find contact ids."
)
TICKET_NOT_FOUND = "Use list_tickets or get_ticket_by_number to find ticket ids."
CHANNEL_NOT_FOUND = "Use list_channels to see the channels."

FINDS_CONTACTS: Mapping[ErrorCode, str] = {ErrorCode.NOT_FOUND: CONTACT_NOT_FOUND}
FINDS_TICKETS: Mapping[ErrorCode, str] = {ErrorCode.NOT_FOUND: TICKET_NOT_FOUND}
FINDS_CHANNELS: Mapping[ErrorCode, str] = {ErrorCode.NOT_FOUND: CHANNEL_NOT_FOUND}
