"""The channel tools (klink_mcp/tools/channels.py) through the MCP client, in both protocol eras.

Moved from tests/server/test_tools.py (every tool: a happy path and an error path); assertions unchanged.
"""

from __future__ import annotations

import pytest
from mcp import Client

from tests.helpers.server import sc

pytestmark = pytest.mark.anyio


async def test_create_channel_and_bad_type(client: Client) -> None:
    made = sc(await client.call_tool("create_channel", {"name": "Support line", "type": "line"}))
    assert made["status"] == "done" and made["channel"]["name"] == "Support line"
    assert (await client.call_tool("create_channel", {"name": "x", "type": "pigeon"})).is_error
