"""`update_ticket` tags_add / tags_remove (issue 10, item 2): tag NAMES, read-modify-write over the
listing (K-LINK has no single-ticket read and a ticket update with tags replaces them all).

Adding loses nothing and runs directly; removing needs a person's yes, with a preview that lists every
tag removed and the tags after (read fresh). Every write is counted at the upstream (the sandbox
tenant's recorded requests), through `Client` against `build_server` over the sandbox tenant.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from klink_mcp.sandbox import SandboxTenant
from klink_mcp.tools import tickets
from tests.helpers.server import MODES, error_code, make_server, sc

pytestmark = pytest.mark.anyio

ERAS = pytest.mark.parametrize("mode", MODES)


def patches(tenant: SandboxTenant) -> list[str]:
    return [r.path for r in tenant.requests if r.method != "GET"]


def tag(tenant: SandboxTenant, name: str) -> dict[str, str]:
    found = next(t for t in tenant.tags.values() if t["name"] == name)
    return {"id": found["id"], "name": found["name"]}


def tagged_ticket(tenant: SandboxTenant, *names: str) -> dict[str, Any]:
    """A ticket on the listing's last page (the scan reads several pages), holding exactly `names`."""
    ticket = next(iter(tenant.tickets.values()))
    ticket["tags"] = [tag(tenant, n) for n in names]
    return ticket


def tag_names(ticket: dict[str, Any]) -> list[str]:
    return sorted(t["name"] for t in ticket.get("tags") or [])


@ERAS
async def test_tags_add_adds_without_approval_and_keeps_the_other_tags(mode: str) -> None:
    tenant = SandboxTenant.seeded()
    ticket = tagged_ticket(tenant, "vip", "new")
    server = make_server(tenant, confirm="on")  # the default: a removal could not run here
    async with Client(server, mode=mode) as client:  # type: ignore[arg-type]
        tenant.reset_requests()
        done = sc(
            await client.call_tool("update_ticket", {"ticket_id": ticket["id"], "tags_add": ["Refund"]})
        )
    assert done["status"] == "done"
    assert len(patches(tenant)) == 1
    assert len([r for r in tenant.requests if r.method == "GET" and r.path.endswith("/tickets")]) > 1
    # "Refund" is the tenant's "refund" (names compare case-insensitively); vip and new are kept
    assert tag_names(tenant.tickets[ticket["id"]]) == ["new", "refund", "vip"]
    audit = server.klink_state.guard.audit  # type: ignore[attr-defined]
    executed = [e for e in audit.recent() if e["decision"] == "executed" and e["tool"] == "update_ticket"]
    change = executed[-1]["change"]["tags"]
    assert sorted(change["before"]) == ["new", "vip"]
    assert sorted(change["after"]) == ["new", "refund", "vip"]


@ERAS
async def test_tags_remove_without_approval_writes_nothing_and_previews_the_removal(mode: str) -> None:
    tenant = SandboxTenant.seeded()
    ticket = tagged_ticket(tenant, "vip", "new", "complaint")
    async with Client(make_server(tenant, confirm="on"), mode=mode) as client:  # type: ignore[arg-type]
        tenant.reset_requests()
        asked = sc(
            await client.call_tool("update_ticket", {"ticket_id": ticket["id"], "tags_remove": ["VIP"]})
        )
    assert asked["status"] == "approval_required", asked
    assert patches(tenant) == []
    assert tag_names(tenant.tickets[ticket["id"]]) == ["complaint", "new", "vip"]
    details = asked["preview"]["details"]
    assert details["tags_removed"] == '"vip"'
    assert details["tags_after"] == '"complaint", "new"'
    assert details["tags_before"] == '"complaint", "new", "vip"'


@ERAS
async def test_approved_tags_remove_runs_once_and_removes_only_that_tag(mode: str) -> None:
    tenant = SandboxTenant.seeded()
    ticket = tagged_ticket(tenant, "vip", "new", "complaint")
    args = {"ticket_id": ticket["id"], "tags_remove": ["complaint"], "tags_add": ["refund"]}
    server = make_server(tenant, confirm="token")
    async with Client(server, mode=mode) as client:  # type: ignore[arg-type]
        tenant.reset_requests()
        first = sc(await client.call_tool("update_ticket", args))
        assert first["status"] == "confirmation_required", first
        assert patches(tenant) == []
        assert first["preview"]["details"]["tags_removed"] == '"complaint"'
        assert first["preview"]["details"]["tags_after"] == '"new", "refund", "vip"'
        token = first["confirmation_token"]
        done = sc(await client.call_tool("update_ticket", {**args, "confirmation_token": token}))
        assert done["status"] == "done"
        assert len(patches(tenant)) == 1
        replay = await client.call_tool("update_ticket", {**args, "confirmation_token": token})
        assert replay.is_error or sc(replay)["status"] != "done"
        assert len(patches(tenant)) == 1
    assert tag_names(tenant.tickets[ticket["id"]]) == ["new", "refund", "vip"]
    audit = server.klink_state.guard.audit  # type: ignore[attr-defined]
    executed = [e for e in audit.recent() if e["decision"] == "executed" and e["tool"] == "update_ticket"]
    assert sorted(executed[-1]["change"]["tags"]["before"]) == ["complaint", "new", "vip"]


async def test_a_tag_change_after_the_preview_needs_a_fresh_approval() -> None:
    tenant = SandboxTenant.seeded()
    ticket = tagged_ticket(tenant, "vip", "new")
    args = {"ticket_id": ticket["id"], "tags_remove": ["vip"]}
    async with Client(make_server(tenant, confirm="token")) as client:
        first = sc(await client.call_tool("update_ticket", args))
        assert first["status"] == "confirmation_required"
        ticket["tags"].append(tag(tenant, "lead"))  # someone tags the ticket in between
        tenant.reset_requests()
        again = await client.call_tool(
            "update_ticket", {**args, "confirmation_token": first["confirmation_token"]}
        )
        assert again.is_error or sc(again)["status"] != "done"
        assert patches(tenant) == []
    assert tag_names(tenant.tickets[ticket["id"]]) == ["lead", "new", "vip"]


@ERAS
@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        ({"tags": ["vip"], "tags_add": ["new"]}, "validation", "one or the other"),
        ({"tags": [], "tags_remove": ["new"]}, "validation", "one or the other"),
        ({"tags_add": ["refnud"]}, "validation", '"refund"'),
        ({"tags_remove": ["vipp"]}, "validation", '"vip"'),
        ({"tags_add": ["vip"], "tags_remove": ["VIP"]}, "validation", "add or to remove"),
    ],
)
async def test_refused_tag_edits_send_nothing(mode: str, args: dict[str, Any], code: str, says: str) -> None:
    tenant = SandboxTenant.seeded()
    ticket = tagged_ticket(tenant, "vip")
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        tenant.reset_requests()
        result = await client.call_tool("update_ticket", {"ticket_id": ticket["id"], **args})
        assert error_code(result) == code
        assert says in result.content[0].text  # type: ignore[union-attr]
    if "tags" in args:  # refused before any request at all
        assert tenant.requests == []
    assert patches(tenant) == []
    assert tag_names(tenant.tickets[ticket["id"]]) == ["vip"]


@ERAS
@pytest.mark.parametrize("edit", [{"tags_add": ["vip"]}, {"tags_remove": ["vip"]}])
async def test_an_unknown_ticket_id_is_not_found_and_nothing_is_written(
    mode: str, edit: dict[str, Any]
) -> None:
    tenant = SandboxTenant.seeded()
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        tenant.reset_requests()
        result = await client.call_tool("update_ticket", {"ticket_id": "no-such-ticket", **edit})
        assert error_code(result) == "not_found"
        assert "no-such-ticket" in result.content[0].text  # type: ignore[union-attr]
    assert patches(tenant) == []
    assert any(r.method == "GET" and "tickets" in r.path for r in tenant.requests)  # it did look


async def test_a_ticket_beyond_the_scan_cap_is_refused_not_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = SandboxTenant.seeded()
    ticket = tagged_ticket(tenant, "vip")  # on the listing's last page
    monkeypatch.setattr(tickets, "MAX_SCAN_PAGES", 2)
    async with Client(make_server(tenant, confirm="token")) as client:
        tenant.reset_requests()
        result = await client.call_tool("update_ticket", {"ticket_id": ticket["id"], "tags_add": ["new"]})
        assert error_code(result) == "not_found"
        assert "first 2 pages" in result.content[0].text  # type: ignore[union-attr]
    assert patches(tenant) == []
    assert tag_names(tenant.tickets[ticket["id"]]) == ["vip"]
