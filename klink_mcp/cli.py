"""Command-line entry points. Filled in by the server work; nothing runs at import time."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `klink-mcp` console script."""
    sys.stderr.write("klink-mcp: not built yet\n")
    return 2
