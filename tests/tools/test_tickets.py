"""The ticket tools (klink_mcp/tools/tickets.py) through the MCP client, in both protocol eras.

Moved from tests/server/test_tools.py (every tool: a happy path and an error path); assertions unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from klink_mcp.content import fence
from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import a_contact, error_code, make_server, sc

pytestmark = pytest.mark.anyio


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
    assert updated["ticket"]["title"] == fence("Parcel still missing")  # titles are customer text
    # Resolving notifies the customer: the first call asks and changes nothing, the approved one runs.
    asked = sc(await client.call_tool("update_ticket_status", {"ticket_id": ticket_id, "status": "resolved"}))
    assert (
        asked["status"] == "approval_required"
    )  # a person approves on the page (tests/guard/test_effects.py)
    assert tenant.tickets[ticket_id]["status"] != "resolved"
    moved = sc(await client.call_tool("update_ticket_status", {"ticket_id": ticket_id, "status": "pending"}))
    assert moved["ticket"]["status"] == "pending"
    bad = await client.call_tool("update_ticket_status", {"ticket_id": ticket_id, "status": "vanished"})
    assert bad.is_error


async def test_create_ticket_for_unknown_contact_is_not_found(client: Client) -> None:
    result = await client.call_tool(
        "create_ticket", {"contact_id": "00000000-0000-0000-0000-000000000000", "title": "x"}
    )
    assert error_code(result) == "not_found"


async def test_ticket_lookup_scans_the_listing_when_the_tenant_ignores_the_number_filter(
    tenant: SandboxTenant,
) -> None:
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
