"""Every tool through the MCP client, in both protocol eras: a happy path and an error path."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from klink_mcp.sandbox import SandboxTenant

pytestmark = pytest.mark.anyio


def sc(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_code(result: Any) -> str:
    assert result.is_error
    return str((result.meta or {}).get("klink_mcp/error", {}).get("code"))


def a_contact(tenant: SandboxTenant) -> dict[str, Any]:
    return next(c for c in tenant.contacts.values() if not c.get("deletedAt"))


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
    assert result["contact"]["name"] == "Test Person"
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


async def test_list_contact_groups_tags_channels_categories(client: Client) -> None:
    assert sc(await client.call_tool("list_contact_groups", {}))["items"]
    assert sc(await client.call_tool("list_tags", {}))["items"]
    assert sc(await client.call_tool("list_channels", {}))["items"]
    tree = sc(await client.call_tool("list_categories", {}))
    assert any(node["children"] for node in tree["items"])


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
    assert result["status"] == "confirmation_required"
    assert result["confirmation_token"]
    assert not [r for r in tenant.requests if r.method != "GET"]


async def test_create_channel_and_bad_type(client: Client) -> None:
    made = sc(await client.call_tool("create_channel", {"name": "Support line", "type": "line"}))
    assert made["status"] == "done" and made["channel"]["name"] == "Support line"
    assert (await client.call_tool("create_channel", {"name": "x", "type": "pigeon"})).is_error


async def test_list_tickets_filters_by_status(client: Client) -> None:
    page = sc(await client.call_tool("list_tickets", {"status": "open", "page_size": 20}))
    assert page["items"] and all(t["status"] == "open" for t in page["items"])
    detailed = sc(await client.call_tool("list_tickets", {"page_size": 2, "detail": True}))
    assert "description" in detailed["items"][0]


async def test_get_ticket_by_number_and_missing_number(client: Client, tenant: SandboxTenant) -> None:
    ticket = next(iter(tenant.tickets.values()))
    found = sc(await client.call_tool("get_ticket_by_number", {"ticket_number": ticket["ticketNumber"]}))
    assert found["id"] == ticket["id"]
    missing = await client.call_tool("get_ticket_by_number", {"ticket_number": 99_999_999})
    assert error_code(missing) == "not_found"


async def test_list_contact_tickets(client: Client, tenant: SandboxTenant) -> None:
    ticket = next(iter(tenant.tickets.values()))
    page = sc(await client.call_tool("list_contact_tickets", {"contact_id": ticket["contactId"]}))
    assert ticket["id"] in {t["id"] for t in page["items"]} or page["has_more"]
    assert (await client.call_tool("list_contact_tickets", {"contact_id": ""})).is_error


async def test_create_update_and_resolve_a_ticket(client: Client, tenant: SandboxTenant) -> None:
    contact = a_contact(tenant)
    created = sc(
        await client.call_tool(
            "create_ticket",
            {
                "contact_id": contact["id"],
                "title": "Parcel missing",
                "description": "Where is it?",
                "priority": "high",
            },
        )
    )
    assert created["status"] == "done"
    ticket_id = created["ticket"]["id"]
    assert tenant.tickets[ticket_id]["contactId"] == contact["id"]
    updated = sc(
        await client.call_tool("update_ticket", {"ticket_id": ticket_id, "title": "Parcel still missing"})
    )
    assert updated["ticket"]["title"] == "Parcel still missing"
    resolved = sc(
        await client.call_tool("update_ticket_status", {"ticket_id": ticket_id, "status": "resolved"})
    )
    assert resolved["ticket"]["status"] == "resolved"
    bad = await client.call_tool("update_ticket_status", {"ticket_id": ticket_id, "status": "vanished"})
    assert bad.is_error


async def test_create_ticket_for_unknown_contact_is_not_found(client: Client) -> None:
    result = await client.call_tool(
        "create_ticket", {"contact_id": "00000000-0000-0000-0000-000000000000", "title": "x"}
    )
    assert error_code(result) == "not_found"


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


async def test_send_message_needs_confirmation_and_sends_nothing(
    client: Client, tenant: SandboxTenant
) -> None:
    contact = a_contact(tenant)
    tenant.reset_requests()
    result = sc(await client.call_tool("send_message", {"contact_id": contact["id"], "message": "Hello!"}))
    assert result["status"] == "confirmation_required"
    assert result["preview"]["details"]["message"] == "Hello!"
    assert not [r for r in tenant.requests if r.method == "POST"]
    empty = await client.call_tool("send_message", {"contact_id": contact["id"], "message": ""})
    assert empty.is_error


async def test_delete_contact_with_token_runs_once(client: Client, tenant: SandboxTenant) -> None:
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


async def test_refresh_form_schemas_reports_counts(client: Client) -> None:
    result = sc(await client.call_tool("refresh_form_schemas", {}))
    assert result["contact_fields"] >= 39 and result["ticket_fields"] >= 15
    assert result["changed"] == [] and "problem" not in result  # results leave out nulls


async def test_confirmed_message_is_sent_exactly_as_previewed_without_invisible_characters(
    client: Client, tenant: SandboxTenant
) -> None:
    contact = a_contact(tenant)
    raw = "Hello\u202e there\u200b!"
    first = sc(await client.call_tool("send_message", {"contact_id": contact["id"], "message": raw}))
    shown = first["preview"]["details"]["message"]
    before = len(tenant.messages)
    args = {"contact_id": contact["id"], "message": raw, "confirmation_token": first["confirmation_token"]}
    done = sc(await client.call_tool("send_message", args))
    assert done["status"] == "done" and done["sent"]["contact_id"] == contact["id"]
    sent = list(tenant.messages.values())[-1] if isinstance(tenant.messages, dict) else tenant.messages[-1]
    assert len(tenant.messages) == before + 1
    assert sent["message"] == "Hello there!" == shown


async def test_ticket_lookup_scans_the_listing_when_the_tenant_ignores_the_number_filter(
    tenant: SandboxTenant,
) -> None:
    from tests.server.conftest import make_server

    server = make_server(tenant)
    oldest = min(tenant.tickets.values(), key=lambda t: t["ticketNumber"])
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with Client(server) as client:
        state = server.klink_state  # type: ignore[attr-defined]
        real = state.client.list_tickets

        async def ignoring_number(**kwargs: Any) -> Any:
            kwargs.pop("ticket_number", None)
            return await real(**kwargs)

        state.client.list_tickets = ignoring_number
        found = await client.call_tool(
            "get_ticket_by_number", {"ticket_number": oldest["ticketNumber"]}, progress_callback=on_progress
        )
    assert sc(found)["id"] == oldest["id"]
    assert progress and progress[-1] >= 5  # 500+ tickets, 100 a page, oldest last
