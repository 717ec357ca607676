"""The CX-log tool (klink_mcp/tools/cx_logs.py) through the MCP client, in both protocol eras.

Moved from tests/server/test_tools.py (every tool: a happy path and an error path); assertions unchanged.
"""

from __future__ import annotations

import pytest
from mcp import Client

from tests.helpers.server import error_code, sc

pytestmark = pytest.mark.anyio


async def test_list_cx_logs_in_a_range_and_bad_range(client: Client) -> None:
    page = sc(
        await client.call_tool(
            "list_cx_logs",
            {"start": "2026-09-01T00:00:00", "end": "2026-11-01T00:00:00", "timezone": "Asia/Singapore"},
        )
    )
    assert page["items"] and page["total"] > 0
    backwards = await client.call_tool(
        "list_cx_logs", {"start": "2026-10-01T00:00:00", "end": "2026-09-01T00:00:00"}
    )
    assert error_code(backwards) == "validation"
    bad_zone = await client.call_tool(
        "list_cx_logs",
        {"start": "2026-09-01T00:00:00", "end": "2026-09-02T00:00:00", "timezone": "Mars/Base"},
    )
    assert error_code(bad_zone) == "validation"
