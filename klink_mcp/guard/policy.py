"""The one risk table: what each tool may do to the tenant, and which calls need a human's yes.

Every tool the server exposes has exactly one row here: its risk (read / write / destructive),
whether repeating a call with the same arguments changes nothing more (idempotent), and whether it
reaches K-LINK (open world). Everything else is derived from this table:

- `annotations_for(tool)` - the MCP tool annotations (hints for the host's approval UI);
- `guarded_tools(settings)` - the tools whose calls may need confirmation (destructive ones plus
  `KLINK_CONFIRM_TOOLS`);
- `needs_confirmation(tool, args, settings)` - the per-call answer, which can depend on the arguments:
  `update_contact_tags` with `MERGE` only adds tags (write), while `REPLACE` and `REMOVE` take tags
  away (destructive). Its annotation says destructive because the tool can be.

This is server-side policy, not a hint: the guard enforces it whatever the client or model claims.
This module must not import the tool layer (`klink_mcp.tools`) nor the K-LINK client, and must not
do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mcp.types import ToolAnnotations

from klink_mcp.config import ConfigError, Settings

__all__ = [
    "ALL_TOOLS",
    "DESTRUCTIVE_TOOLS",
    "POLICY",
    "READ_TOOLS",
    "WRITE_TOOLS",
    "Risk",
    "ToolPolicy",
    "UnknownToolError",
    "annotations_for",
    "guarded_tools",
    "needs_confirmation",
    "policy_for",
    "risk_of",
]


class Risk(StrEnum):
    """What a call can do to the tenant."""

    READ = "read"
    WRITE = "write"
    DESTRUCTIVE = "destructive"


class UnknownToolError(KeyError):
    """A tool name that is not in the risk table (a programming error: every tool must have a row)."""


def _tag_update_risk(args: Mapping[str, Any]) -> Risk:
    # The tool layer may name the K-LINK field `actionType` in snake_case or shorter; accept each
    # spelling. A missing or unrecognised action is treated as destructive: fail closed.
    for key in ("action", "action_type", "actionType", "mode"):
        value = args.get(key)
        if value is not None:
            return Risk.WRITE if str(value).strip().upper() == "MERGE" else Risk.DESTRUCTIVE
    return Risk.DESTRUCTIVE


@dataclass(frozen=True)
class ToolPolicy:
    """One row of the risk table.

    `risk` is the worst the tool can do; `risk_for_args`, when set, narrows it per call.
    """

    risk: Risk
    idempotent: bool
    open_world: bool = True
    risk_for_args: Callable[[Mapping[str, Any]], Risk] | None = None
    irreversible: bool = False

    def risk_of(self, args: Mapping[str, Any]) -> Risk:
        """The risk of one call with these arguments (never above the tool's own risk)."""
        return self.risk if self.risk_for_args is None else self.risk_for_args(args)


_R, _W, _D = Risk.READ, Risk.WRITE, Risk.DESTRUCTIVE

POLICY: Mapping[str, ToolPolicy] = {
    # contacts
    "list_contacts": ToolPolicy(_R, idempotent=True),
    "create_contact": ToolPolicy(_W, idempotent=False),  # POST: a repeat creates a second contact
    "find_contacts_by_social_platform_id": ToolPolicy(_R, idempotent=True),
    "get_contact_form_fields": ToolPolicy(_R, idempotent=True),
    "get_contact": ToolPolicy(_R, idempotent=True),
    "update_contact": ToolPolicy(_W, idempotent=True),  # PATCH with set semantics
    "delete_contact": ToolPolicy(_D, idempotent=True, irreversible=True),
    "list_contact_groups": ToolPolicy(_R, idempotent=True),
    "update_contact_tags": ToolPolicy(_D, idempotent=True, risk_for_args=_tag_update_risk, irreversible=True),
    # tags and channels
    "list_tags": ToolPolicy(_R, idempotent=True),
    "list_channels": ToolPolicy(_R, idempotent=True),
    "create_channel": ToolPolicy(_W, idempotent=False),
    # tickets
    "list_tickets": ToolPolicy(_R, idempotent=True),
    "get_ticket_by_number": ToolPolicy(_R, idempotent=True),
    "create_ticket": ToolPolicy(_W, idempotent=False),
    "list_contact_tickets": ToolPolicy(_R, idempotent=True),
    "get_ticket_form_fields": ToolPolicy(_R, idempotent=True),
    "update_ticket": ToolPolicy(_W, idempotent=True),
    "update_ticket_status": ToolPolicy(_W, idempotent=True),  # PUT
    "list_categories": ToolPolicy(_R, idempotent=True),
    # conversations
    "list_cx_logs": ToolPolicy(_R, idempotent=True),
    "send_message": ToolPolicy(_D, idempotent=False, irreversible=True),  # reaches a real customer
    # local: the webhook event store never leaves the process
    "list_recent_events": ToolPolicy(_R, idempotent=True, open_world=False),
    # re-reads form definitions from K-LINK and rebuilds the server's own schemas; writes nothing upstream
    "refresh_form_schemas": ToolPolicy(_R, idempotent=True),
}

ALL_TOOLS: frozenset[str] = frozenset(POLICY)
READ_TOOLS: frozenset[str] = frozenset(name for name, row in POLICY.items() if row.risk is Risk.READ)
WRITE_TOOLS: frozenset[str] = ALL_TOOLS - READ_TOOLS
DESTRUCTIVE_TOOLS: frozenset[str] = frozenset(
    name for name, row in POLICY.items() if row.risk is Risk.DESTRUCTIVE
)


def policy_for(tool: str) -> ToolPolicy:
    """The row for `tool`.

    Raises:
        UnknownToolError: `tool` is not in the table.
    """
    try:
        return POLICY[tool]
    except KeyError:
        raise UnknownToolError(f"tool {tool!r} has no row in the guard's risk table") from None


def risk_of(tool: str, args: Mapping[str, Any]) -> Risk:
    """The risk of calling `tool` with `args` (e.g. `update_contact_tags` MERGE -> write).

    Raises:
        UnknownToolError: `tool` is not in the table.
    """
    return policy_for(tool).risk_of(args)


def annotations_for(tool: str) -> ToolAnnotations:
    """MCP annotations derived from the table, with all four hints stated explicitly.

    Raises:
        UnknownToolError: `tool` is not in the table.
    """
    row = policy_for(tool)
    return ToolAnnotations(
        read_only_hint=row.risk is Risk.READ,
        destructive_hint=row.risk is Risk.DESTRUCTIVE,
        idempotent_hint=row.idempotent,
        open_world_hint=row.open_world,
    )


def guarded_tools(settings: Settings) -> frozenset[str]:
    """Tools whose calls may need confirmation: every destructive tool plus `settings.confirm_tools`.

    Raises:
        ConfigError: `KLINK_CONFIRM_TOOLS` names an unknown tool or a read-only one (a read changes
            nothing, so there is nothing to confirm).
    """
    extra = frozenset(settings.confirm_tools)
    unknown = sorted(extra - ALL_TOOLS)
    if unknown:
        raise ConfigError(
            f"KLINK_CONFIRM_TOOLS names unknown tools: {', '.join(unknown)}; "
            f"write tools are: {', '.join(sorted(WRITE_TOOLS))}"
        )
    reads = sorted(extra & READ_TOOLS)
    if reads:
        raise ConfigError(
            f"KLINK_CONFIRM_TOOLS names read-only tools, which change nothing: {', '.join(reads)}"
        )
    return DESTRUCTIVE_TOOLS | extra


def needs_confirmation(tool: str, args: Mapping[str, Any], settings: Settings) -> bool:
    """True when this call must be confirmed by a human before it runs.

    Independent of `settings.confirm` (the guard applies "off" itself, so the audit log still says
    which calls would have needed a yes).

    Raises:
        UnknownToolError: `tool` is not in the table.
        ConfigError: `KLINK_CONFIRM_TOOLS` is invalid (see `guarded_tools`).
    """
    row = policy_for(tool)
    guarded_tools(settings)  # validates KLINK_CONFIRM_TOOLS
    if tool in settings.confirm_tools:
        return True  # named in KLINK_CONFIRM_TOOLS: every call, whatever the arguments
    return row.risk_of(args) is Risk.DESTRUCTIVE
