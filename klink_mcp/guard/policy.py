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
- `needs_confirmation(tool, args, settings)` - the per-call answer, which depends on the arguments:
  the policy is by EFFECT, not by tool name. `update_contact_tags` with `MERGE` only adds tags
  (write), while `REPLACE` and `REMOVE` take tags away (destructive); an update is destructive when
  it clears a value, replaces tags, or replaces how a customer is reached or who they are
  (`update_effect_risk`); a status change is destructive when it solves or closes the ticket
  (`status_change_risk`, statuses from `KLINK_APPROVAL_STATUSES`). Other overwrites are writes
  (recorded in the audit log with their before-image) unless `KLINK_CONFIRM_OVERWRITES` is set. A
  tool's annotation says destructive when SOME argument makes it so.

The classifiers read the arguments only (no fresh data): they fail closed, so a call whose shape
can lose data asks even when, on this target, it would change nothing (e.g. setting a name to the
name it already has).

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
    "clears",
    "closing_statuses",
    "guarded_tools",
    "needs_confirmation",
    "overwrites",
    "policy_for",
    "risk_of",
    "status_change_risk",
    "update_effect_risk",
    "update_effects",
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
    risk_for_args: Callable[[Mapping[str, Any], Settings | None], Risk] | None = None
    irreversible: bool = False
    # When `risk_for_args` is set: which calls need a yes, as a clause for the tool's description
    # ("When it clears a field, ..."); the guard's paragraph starts with it.
    guarded_when: str = ""

    def risk_of(self, args: Mapping[str, Any], settings: Settings | None = None) -> Risk:
        """The risk of one call with these arguments (never above the tool's own risk).

        `settings` None: the defaults (`resolved,closed` close a ticket; overwrites are writes).
        """
        if self.risk_for_args is None:
            return self.risk
        risk = self.risk_for_args(args, settings)
        return Risk.WRITE if risk is Risk.DESTRUCTIVE and self.risk is not Risk.DESTRUCTIVE else risk


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


def risk_of(tool: str, args: Mapping[str, Any], settings: Settings | None = None) -> Risk:
    """The risk of calling `tool` with `args` (e.g. `update_contact_tags` MERGE -> write).

    Raises:
        UnknownToolError: `tool` is not in the table.
    """
    return policy_for(tool).risk_of(args, settings)


# -- classifiers by effect (used by the tool specs' `risk_for_args`) -----------------------------------

DEFAULT_APPROVAL_STATUSES: tuple[str, ...] = ("resolved", "closed")
# Wire keys whose new value replaces how a customer is reached or who they are.
IDENTITY_KEYS: frozenset[str] = frozenset({"name", "emails", "phones"})
# Argument keys that name targets or carry the guard's own data, never a field being written.
_NOT_FIELDS: frozenset[str] = frozenset({"contact_id", "ticket_id", "confirmation_token"})
# Tag arguments: `tags` replaces every tag, `tags_remove` takes some off, `tags_add` only adds.
_TAG_REPLACE, _TAG_REMOVE, _TAG_ADD = "tags", "tags_remove", "tags_add"


def clears(value: Any) -> bool:
    """True when writing `value` would clear a field: an empty or blank string, an empty list or map,
    or a list/map holding a cleared item (e.g. `emails=[""]`, `customFields={"cf_x": ""}`)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Mapping):
        return not value or any(clears(v) for v in value.values())
    if isinstance(value, list | tuple):
        return not value or any(clears(v) for v in value)
    return False


def update_effects(args: Mapping[str, Any]) -> list[str]:
    """What an update call with these arguments can lose, as short facts (empty: nothing is lost).

    `args` are the guard's arguments of `update_contact` / `update_ticket`: the target id plus the
    K-LINK body keys (tag names under `tags`, `tags_add`, `tags_remove`).
    """
    effects: list[str] = []
    for key, value in args.items():
        if key in _NOT_FIELDS or key == _TAG_ADD:
            continue
        if key == _TAG_REPLACE:
            effects.append("replaces every tag")
        elif key == _TAG_REMOVE:
            effects.append("removes tags")
        elif key == "customFields" and isinstance(value, Mapping):
            effects.extend(f"clears {k}" for k, v in value.items() if clears(v))
        elif clears(value):
            effects.append(f"clears {key}")
        elif key in IDENTITY_KEYS:
            effects.append(f"replaces {key}")
    return effects


def overwrites(args: Mapping[str, Any]) -> list[str]:
    """The fields an update call writes (tags added excepted): overwritten if they held a value."""
    return sorted(k for k in args if k not in _NOT_FIELDS and k != _TAG_ADD)


def update_effect_risk(args: Mapping[str, Any], settings: Settings | None) -> Risk:
    """Destructive when the update can lose data (see `update_effects`), or overwrites a field while
    `KLINK_CONFIRM_OVERWRITES` is set; else a write."""
    if update_effects(args):
        return Risk.DESTRUCTIVE
    if settings is not None and settings.confirm_overwrites and overwrites(args):
        return Risk.DESTRUCTIVE
    return Risk.WRITE


def closing_statuses(settings: Settings | None) -> frozenset[str]:
    """The statuses that solve or close a ticket (lower case)."""
    names = settings.approval_statuses if settings is not None else DEFAULT_APPROVAL_STATUSES
    return frozenset(n.strip().lower() for n in names)


def status_change_risk(args: Mapping[str, Any], settings: Settings | None) -> Risk:
    """Destructive when the new status solves or closes the ticket (the customer is notified), or
    when no status is given (fail closed); else a write."""
    status = args.get("status")
    if not isinstance(status, str) or status.strip().lower() in closing_statuses(settings):
        return Risk.DESTRUCTIVE
    if settings is not None and settings.confirm_overwrites:
        return Risk.DESTRUCTIVE
    return Risk.WRITE


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
    return row.risk_of(args, settings) is Risk.DESTRUCTIVE
