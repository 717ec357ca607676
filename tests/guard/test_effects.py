"""Policy by effect (issue 10, items 2 and 3): every hole that let a write lose data without a person's
yes, each counted at the upstream (the sandbox tenant's recorded requests).

The real tools (`build_server` over the sandbox) with a client that has no elicitation. In token mode
(the headless opt-in) the guard's answer is a clean `confirmation_required` and the approved call is
the same call plus the token, so "approved once runs once" is countable; one test runs the default
mode (`on`), where the model cannot approve at all, and counts zero writes too.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import MODES, a_contact, error_code, make_server, sc

pytestmark = pytest.mark.anyio

ERAS = pytest.mark.parametrize("mode", MODES)


def writes(tenant: SandboxTenant) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in tenant.requests if r.method != "GET"]


def tagged_contact(tenant: SandboxTenant) -> dict[str, Any]:
    return next(
        c for c in tenant.contacts.values() if len(c.get("tags") or []) >= 2 and not c.get("deletedAt")
    )


def tag_names(record: dict[str, Any]) -> list[str]:
    return sorted(t["name"] for t in record.get("tags") or [])


async def asked_then_approved_once(
    client: Client, tenant: SandboxTenant, tool: str, args: dict[str, Any]
) -> dict[str, Any]:
    """The unapproved call writes nothing; the approved one writes exactly once; a replay nothing."""
    tenant.reset_requests()
    first = sc(await client.call_tool(tool, args))
    assert first["status"] == "confirmation_required", first
    assert writes(tenant) == []
    token = first["confirmation_token"]
    done = sc(await client.call_tool(tool, {**args, "confirmation_token": token}))
    assert done["status"] == "done"
    assert len(writes(tenant)) == 1, writes(tenant)
    replay = await client.call_tool(tool, {**args, "confirmation_token": token})
    assert replay.is_error or sc(replay)["status"] != "done"
    assert len(writes(tenant)) == 1
    return first


@ERAS
async def test_update_contact_tags_replace_needs_approval(mode: str) -> None:
    tenant = SandboxTenant.seeded()
    contact = tagged_contact(tenant)
    before = tag_names(contact)
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        first = await asked_then_approved_once(
            client, tenant, "update_contact", {"contact_id": contact["id"], "tags": ["vip"]}
        )
    details = first["preview"]["details"]
    for name in before:  # every tag removed is listed
        assert f'"{name}"' in details["tags_removed"]
    assert tag_names(tenant.contacts[contact["id"]]) == ["vip"]


@ERAS
@pytest.mark.parametrize("field", ["emails", "phones"])
async def test_clearing_emails_or_phones_needs_approval(mode: str, field: str) -> None:
    tenant = SandboxTenant.seeded()
    contact = a_contact(tenant)
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        first = await asked_then_approved_once(
            client, tenant, "update_contact", {"contact_id": contact["id"], field: []}
        )
    assert f"clears {field}" in first["preview"]["details"]["data_lost"]


async def test_replacing_an_email_needs_approval_and_the_preview_masks_the_old_one() -> None:
    tenant = SandboxTenant.seeded()
    contact = a_contact(tenant)
    old = contact["contactEmails"][0]["email"]
    async with Client(make_server(tenant, confirm="token")) as client:
        first = await asked_then_approved_once(
            client, tenant, "update_contact", {"contact_id": contact["id"], "emails": ["new@example.com"]}
        )
    shown = first["preview"]["details"]["emails"]
    assert old not in shown and "new@example.com" in shown and "->" in shown


@ERAS
async def test_overwriting_the_name_needs_approval(mode: str) -> None:
    tenant = SandboxTenant.seeded()
    contact = a_contact(tenant)
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        first = await asked_then_approved_once(
            client, tenant, "update_contact", {"contact_id": contact["id"], "name": "Mallory"}
        )
    assert first["preview"]["details"]["name"].endswith('-> "Mallory"')
    assert tenant.contacts[contact["id"]]["name"] == "Mallory"


@ERAS
async def test_update_ticket_tags_replace_takes_names_and_needs_approval(mode: str) -> None:
    tenant = SandboxTenant.seeded()
    ticket = next(iter(tenant.tickets.values()))
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        first = await asked_then_approved_once(
            client, tenant, "update_ticket", {"ticket_id": ticket["id"], "tags": ["VIP", "billing"]}
        )
        # unknown names are refused before anything is written, with close names suggested
        tenant.reset_requests()
        unknown = await client.call_tool("update_ticket", {"ticket_id": ticket["id"], "tags": ["biling"]})
        assert error_code(unknown) == "validation"
        assert "billing" in unknown.content[0].text  # type: ignore[union-attr]
        assert writes(tenant) == []
    assert '"billing"' in first["preview"]["details"]["tags_after"]
    # "VIP" is the tenant's "vip" tag (names compare case-insensitively); the wire got ids
    assert tag_names(tenant.tickets[ticket["id"]]) == ["billing", "vip"]


@ERAS
async def test_solving_or_closing_tickets_in_a_loop_writes_nothing(mode: str) -> None:
    tenant = SandboxTenant.seeded()
    open_ids = [t["id"] for t in tenant.tickets.values() if t["status"] == "open"][:6]
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        tenant.reset_requests()
        for i, ticket_id in enumerate(open_ids):
            status = "resolved" if i % 2 else "closed"
            asked = sc(
                await client.call_tool("update_ticket_status", {"ticket_id": ticket_id, "status": status})
            )
            assert asked["status"] == "confirmation_required"
            assert asked["preview"]["details"]["customer_notified"].startswith("yes")
        assert writes(tenant) == []
        assert all(tenant.tickets[t]["status"] == "open" for t in open_ids)
        # a status that neither solves nor closes runs directly
        moved = sc(
            await client.call_tool("update_ticket_status", {"ticket_id": open_ids[0], "status": "pending"})
        )
        assert moved["status"] == "done" and len(writes(tenant)) == 1
        await asked_then_approved_once(
            client, tenant, "update_ticket_status", {"ticket_id": open_ids[1], "status": "resolved"}
        )


@ERAS
@pytest.mark.parametrize("action", ["REMOVE", "REPLACE"])
async def test_tag_names_in_another_case_preview_the_real_effect(mode: str, action: str) -> None:
    tenant = SandboxTenant.seeded()
    contact = tagged_contact(tenant)
    names = tag_names(contact)
    keep = names[0]
    # REMOVE every tag but the first, spelled in upper case; REPLACE with the first, in upper case
    given = [n.upper() for n in names[1:]] if action == "REMOVE" else [keep.upper()]
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        first = await asked_then_approved_once(
            client,
            tenant,
            "update_contact_tags",
            {"contact_id": contact["id"], "action": action, "tags": given},
        )
    preview = first["preview"]
    assert f"removes {len(names) - 1} tag(s)" in preview["summary"]
    for name in names[1:]:
        assert f'"{name}"' in preview["details"]["tags_removed"]
    assert preview["details"]["tags_after"] == f'"{keep}"'
    assert tag_names(tenant.contacts[contact["id"]]) == [keep]  # the effect is what was previewed


async def test_default_mode_without_elicitation_writes_nothing() -> None:
    tenant = SandboxTenant.seeded()
    contact = tagged_contact(tenant)
    ticket_id = next(t["id"] for t in tenant.tickets.values() if t["status"] == "open")
    calls = [
        ("update_contact", {"contact_id": contact["id"], "tags": []}),
        ("update_contact", {"contact_id": contact["id"], "emails": []}),
        ("update_contact", {"contact_id": contact["id"], "name": "Mallory"}),
        ("update_ticket", {"ticket_id": ticket_id, "tags": ["vip"]}),
        ("update_ticket_status", {"ticket_id": ticket_id, "status": "resolved"}),
    ]
    async with Client(make_server(tenant, confirm="on")) as client:
        tenant.reset_requests()
        for tool, args in calls:
            result = await client.call_tool(tool, args)
            if not result.is_error:
                assert sc(result)["status"] == "approval_required"
        assert writes(tenant) == []
        ran = sc(
            await client.call_tool("update_contact", {"contact_id": contact["id"], "notes": "called back"})
        )
        assert ran["status"] == "done" and len(writes(tenant)) == 1


async def test_other_overwrites_run_and_the_audit_keeps_their_before_image() -> None:
    tenant = SandboxTenant.seeded()
    contact = a_contact(tenant)
    old = contact.get("address")
    server = make_server(tenant, confirm="token")
    async with Client(server) as client:
        done = sc(
            await client.call_tool("update_contact", {"contact_id": contact["id"], "address": "1 New Road"})
        )
        assert done["status"] == "done"
    audit = server.klink_state.guard.audit  # type: ignore[attr-defined]
    executed = [e for e in audit.recent() if e["decision"] == "executed" and e["tool"] == "update_contact"]
    assert executed[-1]["change"] == {"address": {"before": old, "after": "1 New Road"}}


async def test_confirm_overwrites_makes_every_overwrite_ask_and_the_preview_is_not_cut() -> None:
    tenant = SandboxTenant.seeded()
    contact = a_contact(tenant)
    notes = "n" * 900 + " the end"
    async with Client(make_server(tenant, confirm="token", confirm_overwrites=True)) as client:
        first = await asked_then_approved_once(
            client, tenant, "update_contact", {"contact_id": contact["id"], "notes": notes}
        )
    assert first["preview"]["details"]["notes"].endswith(f'-> "{notes}"')  # 908 characters, whole
    assert tenant.contacts[contact["id"]]["notes"] == notes


async def test_ticket_writes_record_what_they_wrote_in_the_audit() -> None:
    tenant = SandboxTenant.seeded()
    ticket_id = next(t["id"] for t in tenant.tickets.values() if t["status"] == "open")
    server = make_server(tenant, confirm="token")
    async with Client(server) as client:
        done = sc(await client.call_tool("update_ticket", {"ticket_id": ticket_id, "priority": "urgent"}))
        assert done["status"] == "done"
        moved = sc(
            await client.call_tool("update_ticket_status", {"ticket_id": ticket_id, "status": "pending"})
        )
        assert moved["status"] == "done"
    audit = server.klink_state.guard.audit  # type: ignore[attr-defined]
    changes = [(e["tool"], e["change"]) for e in audit.recent() if e["decision"] == "executed"]
    assert sorted(changes) == [
        ("update_ticket", {"priority": {"before": None, "after": "urgent"}}),
        ("update_ticket_status", {"status": {"before": None, "after": "pending"}}),
    ]
