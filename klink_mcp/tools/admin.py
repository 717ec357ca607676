"""Operational tools: refresh the compiled form schemas on demand."""

from __future__ import annotations

from pydantic import BaseModel, Field

from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.tools.spec import ToolSpec
from klink_mcp.tools.state import ServerState


class RefreshResult(BaseModel):
    changed: list[str] = Field(description="Forms whose schema changed (their tools were re-registered).")
    contact_fields: int = Field(description="Usable contact fields now compiled.")
    ticket_fields: int = Field(description="Usable ticket fields now compiled.")
    problem: str | None = Field(default=None, description="Why the fields could not be fetched, if so.")


async def refresh_form_schemas(state: ServerState) -> RefreshResult:
    changed = await state.forms.refresh(state.client)
    counts = {
        kind: (len(s.builtin) + len(s.custom)) if (s := state.forms.get(kind)) else 0
        for kind in ("contact", "ticket")
    }
    return RefreshResult(
        changed=sorted(changed),
        contact_fields=counts["contact"],
        ticket_fields=counts["ticket"],
        problem=state.forms.problem,
    )


REFRESH_FORM_SCHEMAS = ToolSpec(
    name="refresh_form_schemas",
    title="Refresh form schemas",
    description="Re-read the tenant's contact and ticket form fields now (they are cached for "
    "KLINK_SCHEMA_TTL seconds). When they changed, the create/update tools get new schemas and the "
    "client is notified to list tools again.",
    toolset="admin",
    # re-reads form definitions from K-LINK and rebuilds the server's own schemas; writes nothing upstream
    effects=ToolPolicy(Risk.READ, idempotent=True),
    output=RefreshResult,
    handler=refresh_form_schemas,
)

SPECS: tuple[ToolSpec, ...] = (REFRESH_FORM_SCHEMAS,)
