"""The names of the toolsets (groups of tools that `KLINK_TOOLSETS` may allow).

The one list the settings validate `KLINK_TOOLSETS` against and every tool spec's `toolset` must come
from (a test checks the inventory uses exactly these). Must not import anything from the package.
"""

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
