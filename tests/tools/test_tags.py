"""The tag tool (klink_mcp/tools/tags.py), with the other vocabulary lists, through the MCP client.

Moved from tests/server/test_tools.py (every tool: a happy path and an error path); assertions unchanged.
"""

from __future__ import annotations

import pytest
from mcp import Client

from tests.helpers.server import sc

pytestmark = pytest.mark.anyio


async def test_list_contact_groups_tags_channels_categories(client: Client) -> None:
    assert sc(await client.call_tool("list_contact_groups", {}))["items"]
    assert sc(await client.call_tool("list_tags", {}))["items"]
    assert sc(await client.call_tool("list_channels", {}))["items"]
    tree = sc(await client.call_tool("list_categories", {}))
    assert any(node["children"] for node in tree["items"])
