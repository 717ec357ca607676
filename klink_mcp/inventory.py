"""The tool inventory: every tool of the server, as the specs its modules export, in one list.

`SPECS` is the order tools are registered (and listed) in; the server walks it. Everything keyed by
a tool's name is derived from here: `TOOLSETS` (toolset -> tool names), `EFFECTS` (the guard's risk
table, read by `klink_mcp.guard.policy`), the annotations (`ToolSpec.annotations`) and the README's
tool table (`klink_mcp.docs`). Adding a tool means adding its handler and spec to its module's `SPECS`.

It sits at the package root, above both the tool layer and the guard: the guard reads its risk table
from here (lazily), without importing the tool layer itself. This module must not register anything
nor talk to K-LINK.
"""

from __future__ import annotations

from collections.abc import Mapping

from klink_mcp.config import ConfigError, Settings
from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.tools import admin, categories, channels, contacts, cx_logs, messages, tags, tickets
from klink_mcp.tools.spec import ToolSpec
from klink_mcp.toolsets import TOOLSET_NAMES
from klink_mcp.webhooks import surface

SPECS: tuple[ToolSpec, ...] = (
    *contacts.SPECS,
    *tags.SPECS,
    *channels.SPECS,
    *tickets.SPECS,
    *categories.SPECS,
    *cx_logs.SPECS,
    *messages.SPECS,
    *admin.SPECS,
    *surface.SPECS,
)

BY_NAME: Mapping[str, ToolSpec] = {spec.name: spec for spec in SPECS}
if len(BY_NAME) != len(SPECS):  # pragma: no cover - a programming error caught at import
    raise RuntimeError("two tool specs share a name")

EFFECTS: Mapping[str, ToolPolicy] = {spec.name: spec.effects for spec in SPECS}

TOOLSETS: Mapping[str, tuple[str, ...]] = {
    toolset: tuple(spec.name for spec in SPECS if spec.toolset == toolset) for toolset in TOOLSET_NAMES
}


def spec_for(name: str) -> ToolSpec:
    """The spec of tool `name`.

    Raises:
        KeyError: no such tool.
    """
    return BY_NAME[name]


def check_toolsets(names: tuple[str, ...] | list[str] | None) -> None:
    """Refuse toolset names the inventory does not have (a typo would otherwise serve zero tools).

    Raises:
        ConfigError: `names` holds an unknown toolset.
    """
    unknown = sorted(set(names or ()) - set(TOOLSET_NAMES))
    if unknown:
        raise ConfigError(
            f"KLINK_TOOLSETS names unknown toolsets: {', '.join(unknown)}; "
            f"the toolsets are: {', '.join(TOOLSET_NAMES)}"
        )


def tool_allowed(settings: Settings, spec: ToolSpec) -> bool:
    """Read-only wins over everything; then the toolset allow-list."""
    if settings.read_only and spec.effects.risk is not Risk.READ:
        return False
    return not (settings.toolsets and spec.toolset not in settings.toolsets)


def served_specs(settings: Settings) -> list[ToolSpec]:
    """The specs a server built from `settings` serves, in registration order.

    Raises:
        ConfigError: `settings.toolsets` names an unknown toolset.
    """
    check_toolsets(settings.toolsets)
    return [spec for spec in SPECS if tool_allowed(settings, spec)]
