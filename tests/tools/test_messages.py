"""The messaging tool (klink_mcp/tools/messages.py) through the MCP client, in both protocol eras.

Moved from tests/server/test_tools.py (every tool: a happy path and an error path); assertions unchanged.
"""

from __future__ import annotations

import pytest
from mcp import Client

from klink_mcp.sandbox import SandboxTenant
from tests.approval._support import Person
from tests.helpers.server import a_contact, sc

pytestmark = pytest.mark.anyio


async def test_send_message_needs_confirmation_and_sends_nothing(
    client: Client, tenant: SandboxTenant
) -> None:
    contact = a_contact(tenant)
    tenant.reset_requests()
    result = sc(await client.call_tool("send_message", {"contact_id": contact["id"], "message": "Hello!"}))
    assert result["status"] == "approval_required" and "/approvals/" in result["approval_url"]
    assert result["preview"]["details"]["message"] == "Hello!"
    assert not [r for r in tenant.requests if r.method == "POST"]
    empty = await client.call_tool("send_message", {"contact_id": contact["id"], "message": ""})
    assert empty.is_error


async def test_confirmed_message_is_sent_exactly_as_previewed_without_invisible_characters(
    client: Client, tenant: SandboxTenant
) -> None:
    contact = a_contact(tenant)
    raw = "Hello\u202e there\u200b!"
    args = {"contact_id": contact["id"], "message": raw}
    first = sc(await client.call_tool("send_message", args))
    shown = first["preview"]["details"]["message"]
    before = len(tenant.messages)
    person = Person()
    try:
        await person.approve(first["approval_url"])  # a person approves on the page, as a browser does
    finally:
        await person.aclose()
    done = sc(await client.call_tool("send_message", args))
    assert done["sent_text"] == "Hello there!" and done["removed_invisible"] == 2
    assert done["status"] == "done" and done["sent"]["contact_id"] == contact["id"]
    sent = list(tenant.messages.values())[-1] if isinstance(tenant.messages, dict) else tenant.messages[-1]
    assert len(tenant.messages) == before + 1
    assert sent["message"] == "Hello there!" == shown
