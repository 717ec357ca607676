"""The guard's risk policy: what each tool may do to the tenant, and which calls need a human's yes.

The table is not written here: each tool's spec carries its effects (`ToolSpec.effects`, a
`ToolPolicy` row: its risk - read / write / destructive -, whether repeating a call with the same
arguments changes nothing more (idempotent), whether it reaches K-LINK (open world), whether its
effect cannot be undone). `klink_mcp.inventory.EFFECTS` collects them; this module reads that
table the first time it is asked (the tool layer imports the guard, so the inventory is imported
lazily, never at import time). Everything else is derived from the table:

- `annotations_for(tool)` - the MCP tool annotations (hints for the host's approval UI);
- `guarded_tools(settings)` - the tools whose calls may need confirmation (destructive ones plus
  `KLINK_CONFIRM_TOOLS`);
- `needs_confirmation(tool, args, settings)` - the per-call answer, which can depend on the arguments:
  `update_contact_tags` with `MERGE` only adds tags (write), while `REPLACE` and `REMOVE` take tags
  away (destructive). Its annotation says destructive because the tool can be.

This is server-side policy, not a hint: the guard enforces it whatever the client or model claims.
This module must not import the tool layer (`klink_mcp.tools`) nor the K-LINK client, and must not do
I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
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
    "annotations_of",
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


def _table() -> Mapping[str, ToolPolicy]:
    # Imported here, not at the top: the tool modules import the guard, which imports this module.
    from klink_mcp.inventory import EFFECTS

    return EFFECTS


class _TableView(Mapping[str, ToolPolicy]):
    """The risk table, read from the tool inventory on first use."""

    def __getitem__(self, tool: str) -> ToolPolicy:
        return _table()[tool]

    def __iter__(self) -> Iterator[str]:
        return iter(_table())

    def __len__(self) -> int:
        return len(_table())


class _ToolNames(AbstractSet[str]):
    """The names of the tools whose row satisfies `pick`, computed on first use."""

    def __init__(self, pick: Callable[[ToolPolicy], bool]) -> None:
        self._pick = pick
        self._names: frozenset[str] | None = None

    def _get(self) -> frozenset[str]:
        if self._names is None:
            self._names = frozenset(name for name, row in _table().items() if self._pick(row))
        return self._names

    def __contains__(self, name: object) -> bool:
        return name in self._get()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(set(self._get()))

    @classmethod
    def _from_iterable(cls, it: Iterable[str]) -> frozenset[str]:  # type: ignore[override]
        return frozenset(it)


POLICY: Mapping[str, ToolPolicy] = _TableView()
ALL_TOOLS: AbstractSet[str] = _ToolNames(lambda row: True)
READ_TOOLS: AbstractSet[str] = _ToolNames(lambda row: row.risk is Risk.READ)
WRITE_TOOLS: AbstractSet[str] = _ToolNames(lambda row: row.risk is not Risk.READ)
DESTRUCTIVE_TOOLS: AbstractSet[str] = _ToolNames(lambda row: row.risk is Risk.DESTRUCTIVE)


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
    return annotations_of(policy_for(tool))


def annotations_of(effects: ToolPolicy) -> ToolAnnotations:
    """The four MCP hints for a tool with these effects, all stated explicitly."""
    return ToolAnnotations(
        read_only_hint=effects.risk is Risk.READ,
        destructive_hint=effects.risk is Risk.DESTRUCTIVE,
        idempotent_hint=effects.idempotent,
        open_world_hint=effects.open_world,
    )


def guarded_tools(settings: Settings) -> AbstractSet[str]:
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
    return frozenset(DESTRUCTIVE_TOOLS) | extra


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
