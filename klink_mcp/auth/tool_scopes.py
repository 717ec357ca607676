"""The per-tool scope check on `tools/call`, as an MCP middleware installed by the HTTP app.

The effects come from the tool inventory (`klink_mcp.inventory.SPECS`: each spec's `effects`,
argument-aware: `update_contact_tags` MERGE is a write, REMOVE a delete; read lazily, at the first
call): read -> `klink:read`, write -> `klink:write`, destructive -> `klink:delete`, except
the customer-visible sends -> `klink:send`. The check runs before the tool (and before any preview or
K-LINK request); a refused call returns an error result naming the missing scope, with the machine
code `insufficient_scope` in `_meta["klink_mcp/error"]`. Without an authenticated principal (stdio,
unauthenticated loopback) nothing is refused, as `require_scope` says.

`effects_from_policy` reads the guard's risk table instead (the same rows, for callers without
the inventory). This module must not import the tool layer at import time nor do I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from mcp.server.context import ServerMiddleware
from mcp.types import CallToolResult, TextContent

from klink_mcp.auth.principal import InsufficientScope, require_scope, scope_for_effects
from klink_mcp.guard.policy import Risk, UnknownToolError, risk_of

__all__ = ["CUSTOMER_VISIBLE_TOOLS", "effects_from_inventory", "effects_from_policy", "tool_scope_middleware"]

# Destructive because a customer reads it, not because data is lost.
CUSTOMER_VISIBLE_TOOLS: Final = frozenset({"send_message"})

EffectsOf = Callable[[str, Mapping[str, Any]], set[str]]


def effects_from_policy(tool: str, args: Mapping[str, Any]) -> set[str]:
    """The effects of one call according to the guard's risk table (unknown tools: read)."""
    try:
        risk = risk_of(tool, args)
    except UnknownToolError:
        return {"read"}  # the SDK answers "unknown tool"; reading needs the read scope anyway
    if risk is Risk.READ:
        return {"read"}
    if risk is Risk.WRITE:
        return {"write"}
    return {"send"} if tool in CUSTOMER_VISIBLE_TOOLS else {"delete"}


def _effects_of_risk(tool: str, risk: Risk) -> set[str]:
    if risk is Risk.READ:
        return {"read"}
    if risk is Risk.WRITE:
        return {"write"}
    return {"send"} if tool in CUSTOMER_VISIBLE_TOOLS else {"delete"}


def effects_from_inventory(tool: str, args: Mapping[str, Any]) -> set[str]:
    """The effects of one call according to its spec in the tool inventory (unknown tools: read)."""
    from klink_mcp.inventory import spec_for  # lazily: the inventory imports the tool layer

    try:
        spec = spec_for(tool)
    except KeyError:
        return {"read"}  # the SDK answers "unknown tool"; reading needs the read scope anyway
    return _effects_of_risk(tool, spec.effects.risk_of(args))


def tool_scope_middleware(effects_of: EffectsOf = effects_from_inventory) -> ServerMiddleware[Any]:
    """An MCP server middleware refusing `tools/call` when the principal lacks the call's scope."""

    async def check_tool_scope(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if getattr(ctx, "method", None) == "tools/call":
            params = getattr(ctx, "params", None)
            params = params if isinstance(params, Mapping) else {}
            name = params.get("name")
            args = params.get("arguments")
            if isinstance(name, str):
                scope = scope_for_effects(effects_of(name, args if isinstance(args, Mapping) else {}))
                try:
                    require_scope(scope)
                except InsufficientScope as exc:
                    # A model, not a dict: the server serializes it for the client's protocol era.
                    return CallToolResult(
                        content=[TextContent(type="text", text=str(exc))],
                        is_error=True,
                        _meta={"klink_mcp/error": {"code": "insufficient_scope", "scope": scope}},
                    )
        return await call_next(ctx)

    return check_tool_scope
