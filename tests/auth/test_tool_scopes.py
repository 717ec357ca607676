"""Per-tool scopes over real loopback HTTP: a person without the delete (or send) scope cannot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from klink_mcp import ops
from klink_mcp.auth.tool_scopes import effects_from_policy
from tests.auth.harness import authed_client, running_klink
from tests.auth.idp import LocalIdP, running_idp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
async def idp() -> AsyncIterator[LocalIdP]:
    async with running_idp() as provider:
        yield provider


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_reader_cannot_delete_or_send_and_nothing_reaches_klink(idp: LocalIdP, mode: str) -> None:
    refused_before = (
        ops.REGISTRY.get_sample_value(
            "klink_tool_calls_total", {"tool": "delete_contact", "outcome": "refused"}
        )
        or 0.0
    )
    with anyio.fail_after(30):
        async with running_klink(idp) as srv:
            contact_id = next(iter(srv.tenant.contacts))
            token = idp.access_token(srv.mcp_url, ["klink:read", "klink:write"])
            async with authed_client(srv.mcp_url, token, mode) as client:
                srv.upstream.seen.clear()
                deleted = await client.call_tool("delete_contact", {"contact_id": contact_id})
                sent = await client.call_tool("send_message", {"contact_id": contact_id, "message": "hello"})
                untouched = list(srv.upstream.seen)
                listed = await client.call_tool("list_tags", {})
    assert deleted.is_error and "klink:delete" in deleted.content[0].text  # type: ignore[union-attr]
    assert deleted.meta == {"klink_mcp/error": {"code": "insufficient_scope", "scope": "klink:delete"}}
    assert sent.is_error and "klink:send" in sent.content[0].text  # type: ignore[union-attr]
    assert untouched == []  # refused before any preview read or write
    assert not listed.is_error
    assert not srv.tenant.contacts[contact_id].get("deletedAt")
    refused_after = ops.REGISTRY.get_sample_value(
        "klink_tool_calls_total", {"tool": "delete_contact", "outcome": "refused"}
    )
    assert refused_after == refused_before + 1


async def test_with_the_delete_scope_the_call_goes_on_to_the_confirmation(idp: LocalIdP) -> None:
    with anyio.fail_after(30):
        async with running_klink(idp) as srv:
            contact_id = next(iter(srv.tenant.contacts))
            token = idp.access_token(srv.mcp_url, ["klink:read", "klink:delete"])
            async with authed_client(srv.mcp_url, token, "legacy") as client:
                result = await client.call_tool("delete_contact", {"contact_id": contact_id})
    meta = result.meta or {}
    assert meta.get("klink_mcp/error", {}).get("code") != "insufficient_scope"
    assert "klink:delete" not in str(result.content)
    assert not srv.tenant.contacts[contact_id].get("deletedAt")  # still waits for a person's yes


def test_effects_follow_the_risk_table_and_its_arguments() -> None:
    assert effects_from_policy("list_tags", {}) == {"read"}
    assert effects_from_policy("create_ticket", {}) == {"write"}
    assert effects_from_policy("delete_contact", {}) == {"delete"}
    assert effects_from_policy("send_message", {}) == {"send"}
    assert effects_from_policy("no_such_tool", {}) == {"read"}
    merge = effects_from_policy("update_contact_tags", {"action": "MERGE", "tags": ["vip"]})
    remove = effects_from_policy("update_contact_tags", {"action": "REMOVE", "tags": ["vip"]})
    assert remove == {"delete"} and merge in ({"write"}, {"delete"})
