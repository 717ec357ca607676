"""The contact tools (klink_mcp/tools/contacts.py) through the MCP client, in both protocol eras.

Moved from tests/server/test_tools.py (every tool: a happy path and an error path); assertions unchanged.
"""

from __future__ import annotations

import pytest
from mcp import Client

from klink_mcp.content import fence
from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import a_contact, error_code, make_server, sc

pytestmark = pytest.mark.anyio


async def test_list_contacts_pages_and_reports_has_more(client: Client) -> None:
    first = sc(await client.call_tool("list_contacts", {"page_size": 5}))
    assert len(first["items"]) == 5
    assert first["has_more"] is True and first["total"] >= 200
    assert set(first["items"][0]) >= {"id", "name"}


async def test_list_contacts_keyword_finds_a_known_contact(client: Client, tenant: SandboxTenant) -> None:
    contact = a_contact(tenant)
    found = sc(await client.call_tool("list_contacts", {"keyword": contact["name"], "page_size": 50}))
    assert contact["id"] in {c["id"] for c in found["items"]}


async def test_list_contacts_rejects_page_size_over_100(client: Client) -> None:
    result = await client.call_tool("list_contacts", {"page_size": 500})
    assert result.is_error


async def test_get_contact_returns_detail_and_unknown_id_is_not_found(
    client: Client, tenant: SandboxTenant
) -> None:
    contact = a_contact(tenant)
    detail = sc(await client.call_tool("get_contact", {"contact_id": contact["id"]}))
    assert detail["id"] == contact["id"]
    missing = await client.call_tool("get_contact", {"contact_id": "00000000-0000-0000-0000-000000000000"})
    assert error_code(missing) == "not_found"
    assert "list_contacts" in missing.content[0].text


async def test_hostile_id_is_refused_before_any_request(client: Client, tenant: SandboxTenant) -> None:
    tenant.reset_requests()
    result = await client.call_tool("get_contact", {"contact_id": "../x"})
    assert error_code(result) == "validation"
    assert tenant.requests == []


async def test_find_contacts_by_social_platform_id(client: Client, tenant: SandboxTenant) -> None:
    contact = next(c for c in tenant.contacts.values() if c.get("platformContacts"))
    spid = contact["platformContacts"][0]["socialPlatformId"]
    found = sc(await client.call_tool("find_contacts_by_social_platform_id", {"social_platform_id": spid}))
    assert contact["id"] in {c["id"] for c in found["items"]}
    none = sc(
        await client.call_tool("find_contacts_by_social_platform_id", {"social_platform_id": "nobody-here"})
    )
    assert none["items"] == []


async def test_form_field_tools_list_every_page(client: Client) -> None:
    contact_fields = sc(await client.call_tool("get_contact_form_fields", {}))
    assert contact_fields["total"] >= 39  # 40+ defined, one archived left out
    custom = sc(await client.call_tool("get_contact_form_fields", {"custom_only": True}))
    assert all(f["custom"] for f in custom["items"]) and custom["items"]
    ticket_fields = sc(await client.call_tool("get_ticket_form_fields", {}))
    assert ticket_fields["total"] >= 15


async def test_create_contact_with_typed_custom_fields(client: Client, tenant: SandboxTenant) -> None:
    before = len(tenant.contacts)
    result = sc(
        await client.call_tool(
            "create_contact",
            {"name": "Test Person", "emails": ["test.person@example.com"], "tags": ["vip"]},
        )
    )
    assert result["status"] == "done"
    assert result["contact"]["name"] == fence("Test Person")  # names are customer text
    assert len(tenant.contacts) == before + 1


async def test_create_contact_without_required_name_fails(client: Client, tenant: SandboxTenant) -> None:
    tenant.reset_requests()
    result = await client.call_tool("create_contact", {"address": "somewhere"})
    assert result.is_error
    assert not [r for r in tenant.requests if r.method == "POST"]


async def test_update_contact_changes_only_given_fields(client: Client, tenant: SandboxTenant) -> None:
    contact = a_contact(tenant)
    result = sc(
        await client.call_tool("update_contact", {"contact_id": contact["id"], "address": "1 New Road"})
    )
    assert result["status"] == "done"
    assert tenant.contacts[contact["id"]]["address"] == "1 New Road"
    empty = await client.call_tool("update_contact", {"contact_id": contact["id"]})
    assert error_code(empty) == "validation"


async def test_merge_tags_runs_without_confirmation(client: Client, tenant: SandboxTenant) -> None:
    contact = a_contact(tenant)
    result = sc(
        await client.call_tool(
            "update_contact_tags", {"contact_id": contact["id"], "action": "MERGE", "tags": ["followup"]}
        )
    )
    assert result["status"] == "done" and "followup" in result["tags"]


async def test_remove_tags_needs_confirmation_and_changes_nothing(
    client: Client, tenant: SandboxTenant
) -> None:
    contact = next(c for c in tenant.contacts.values() if c.get("tags") and not c.get("deletedAt"))
    tag = contact["tags"][0]["name"]
    tenant.reset_requests()
    result = sc(
        await client.call_tool(
            "update_contact_tags", {"contact_id": contact["id"], "action": "REMOVE", "tags": [tag]}
        )
    )
    assert result["status"] == "approval_required"
    assert "/approvals/" in result["approval_url"] and "confirmation_token" not in result
    assert not [r for r in tenant.requests if r.method != "GET"]


async def test_delete_contact_with_token_runs_once(tenant: SandboxTenant, mode: str) -> None:
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        await _delete_with_token(client, tenant)


async def _delete_with_token(client: Client, tenant: SandboxTenant) -> None:
    contact = a_contact(tenant)
    first = sc(await client.call_tool("delete_contact", {"contact_id": contact["id"]}))
    assert first["status"] == "confirmation_required" and first["preview"]["irreversible"] is True
    token = first["confirmation_token"]
    done = sc(
        await client.call_tool("delete_contact", {"contact_id": contact["id"], "confirmation_token": token})
    )
    assert done["status"] == "done" and done["deleted_contact_id"] == contact["id"]
    assert tenant.contacts[contact["id"]]["deletedAt"]
    replay = await client.call_tool(
        "delete_contact", {"contact_id": contact["id"], "confirmation_token": token}
    )
    assert replay.is_error
