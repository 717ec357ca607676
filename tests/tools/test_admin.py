"""The operational tool (klink_mcp/tools/admin.py) through the MCP client, in both protocol eras.

Moved from tests/server/test_tools.py (every tool: a happy path and an error path); assertions unchanged.
"""

from __future__ import annotations

import pytest
from mcp import Client

from tests.helpers.server import sc

pytestmark = pytest.mark.anyio


async def test_refresh_form_schemas_reports_counts(client: Client) -> None:
    result = sc(await client.call_tool("refresh_form_schemas", {}))
    assert result["contact_fields"] >= 39 and result["ticket_fields"] >= 15
    assert result["changed"] == [] and "problem" not in result  # results leave out nulls
