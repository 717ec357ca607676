"""The names of the toolsets: the groups of tools `KLINK_TOOLSETS` can allow.

This is the one list the settings loader validates `toolsets` against; the tool inventory maps
every tool to one of these names (and is tested against this tuple). This module must not import
`mcp` or anything else of the package: the settings loader imports it.
"""

from __future__ import annotations

TOOLSET_NAMES: tuple[str, ...] = (
    "contacts",
    "tags",
    "channels",
    "tickets",
    "categories",
    "cx_logs",
    "messages",
    "events",
    "admin",
)
