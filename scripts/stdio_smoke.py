"""One MCP stdio session against an installed `klink-mcp` (the embedded sandbox): tools/list + one read.

Usage: python scripts/stdio_smoke.py /path/to/bin/klink-mcp
Run it with the Python of the venv klink-mcp is installed in (it needs the `mcp` package, a dependency).
Prints, on stdout, the seconds from start to the first tools/list answer and to the read tool's answer;
exits non-zero (with the reason on stderr) when the session fails. Every KLINK_* variable of the caller
is dropped, so it can never reach a real tenant.
"""

from __future__ import annotations

import os
import sys
import time

import anyio
from mcp import Client, StdioServerParameters


async def _session(command: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINK_")}
    env["KLINK_EVENTS_DB"] = ":memory:"
    params = StdioServerParameters(command=command, args=["serve"], env=env)
    started = time.perf_counter()
    with anyio.fail_after(120):
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            listed = time.perf_counter() - started
            if "list_contacts" not in names:
                sys.stderr.write(f"stdio smoke: list_contacts missing from tools/list ({len(names)} tools)\n")
                return 1
            result = await client.call_tool("list_contacts", {"page_size": 2})
            called = time.perf_counter() - started
    items = (result.structured_content or {}).get("items")
    if result.is_error or not isinstance(items, list) or len(items) != 2:
        sys.stderr.write(f"stdio smoke: list_contacts failed: {result.content!r}\n")
        return 1
    print(
        f"stdio session: {len(names)} tools listed in {listed:.2f} s; list_contacts answered at {called:.2f} s"
    )
    return 0


def main() -> int:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: stdio_smoke.py /path/to/klink-mcp\n")
        return 2
    return anyio.run(_session, sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
