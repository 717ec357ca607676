"""Seeded data (deterministic, realistic, consistent with its form fields), fixtures and listener events."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from klink_mcp.sandbox import DEFAULT_TOKEN, SandboxTenant, SandboxTransport
from klink_mcp.sandbox._common import REFERENCE_NOW, parse_iso
from klink_mcp.sandbox.fields import KNOWN_TYPES, TICKET_PRIORITIES, TICKET_STATUSES, check_value

from .conftest import AUTH, FIXTURES

ACME = FIXTURES / "tenant_acme.json"


def client_for(tenant: SandboxTenant) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=SandboxTransport(tenant, token=DEFAULT_TOKEN), base_url="http://s", headers=AUTH
    )


# ------------------------------------------------------------------------------------- seeded data


def test_the_same_seed_gives_the_same_tenant_and_another_seed_another() -> None:
    a, b, c = SandboxTenant.seeded(7), SandboxTenant.seeded(7), SandboxTenant.seeded(8)
    for attr in (
        "contacts",
        "tickets",
        "tags",
        "channels",
        "groups",
        "categories",
        "cx_logs",
        "contact_fields",
    ):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert a.contacts != c.contacts and a.tickets != c.tickets


def test_generation_is_deterministic_across_a_fresh_build() -> None:
    from klink_mcp.sandbox.seed import build_dataset

    assert build_dataset(5).contacts == build_dataset(5).contacts == SandboxTenant.seeded(5).contacts


def test_the_seeded_tenant_is_big_enough_to_need_paging() -> None:
    t = SandboxTenant.seeded()
    assert len(t.contacts) >= 200 and len(t.tickets) >= 500 and len(t.cx_logs) >= 300
    assert 15 <= len(t.tags) <= 25 and 6 <= len(t.channels) <= 10 and len(t.groups) >= 6
    assert {c["level"] for c in t.categories.values()} == {1, 2, 3}


def test_contacts_span_channels_and_carry_emails_phones_platform_ids_tags_and_companies() -> None:
    contacts = list(SandboxTenant.seeded().contacts.values())
    channels = Counter(c["channel"] for c in contacts)
    assert {"whatsapp", "messenger", "line", "email", "phone", "webchat"} <= set(channels)
    assert sum(bool(c["contactEmails"]) for c in contacts) > 150
    assert sum(bool(c["contactPhones"]) for c in contacts) > 150
    assert all(p["socialPlatformId"] for c in contacts for p in c["platformContacts"])
    assert sum(bool(c["tags"]) for c in contacts) > 80
    assert sum(c["company"] is not None for c in contacts) > 30
    assert len({c["contactNumber"] for c in contacts}) == len(contacts)


def test_tickets_cover_every_status_and_priority_with_nested_people() -> None:
    t = SandboxTenant.seeded()
    tickets = list(t.tickets.values())
    assert {x["status"] for x in tickets} == set(TICKET_STATUSES)
    assert {x["priority"] for x in tickets} == set(TICKET_PRIORITIES)
    assert len({x["contactId"] for x in tickets}) > 100
    assert sorted(x["ticketNumber"] for x in tickets) == list(range(1001, 1001 + len(tickets)))
    for ticket in tickets:
        assert ticket["contact"]["id"] == ticket["contactId"] in t.contacts
        assert ticket["creator"]["id"] == ticket["creatorId"]
        assert (ticket["assignee"] or {}).get("id") == ticket["assigneeId"]


def test_cx_logs_fall_within_the_sixty_days_before_the_reference_date() -> None:
    logs = SandboxTenant.seeded().cx_logs.values()
    started = [parse_iso(lg["startedDate"]) for lg in logs]
    assert min(started) >= REFERENCE_NOW - timedelta(days=60) and max(started) < REFERENCE_NOW
    assert {lg["direction"] for lg in logs} == {"inbound", "outbound"}


def test_contact_form_covers_every_type_with_one_archived_and_one_unknown_type() -> None:
    fields = SandboxTenant.seeded().contact_fields
    assert len(fields) >= 40
    custom = [f for f in fields if not f["is_default"]]
    assert {f["type"] for f in custom} >= KNOWN_TYPES
    assert all(f["system_name"].startswith("cf_") for f in custom)
    assert sum(f["is_archived"] for f in fields) == 1
    assert [f["type"] for f in fields if f["type"] not in KNOWN_TYPES] == ["rating"]
    assert [f["system_name"] for f in fields if f["is_required"]] == ["name"]
    assert {"name", "address", "channel", "notes", "email", "phone", "company"} <= {
        f["system_name"] for f in fields if f["is_default"]
    }


def test_seeded_custom_values_fit_their_field_definitions() -> None:
    t = SandboxTenant.seeded()
    for kind, records in (("contact", t.contacts.values()), ("ticket", t.tickets.values())):
        fields = {f["system_name"]: f for f in (t.contact_fields if kind == "contact" else t.ticket_fields)}
        for record in records:
            for key, value in record["customFields"].items():
                assert key in fields, key
                assert check_value(fields[key], value, key) is None, (key, value)


def test_some_customer_text_tries_prompt_injection_with_invisible_characters() -> None:
    t = SandboxTenant.seeded()
    newest = max(t.tickets.values(), key=lambda x: x["ticketNumber"])
    injected = [x for x in t.tickets.values() if "IGNORE PREVIOUS INSTRUCTIONS" in (x["description"] or "")]
    assert newest in injected and len(injected) >= 3
    text = "".join(x["description"] for x in injected)
    assert any(ch in text for ch in "\u200b\u200d\ufeff") and any(ch in text for ch in "\u202e\u2066")
    assert any("IGNORE PREVIOUS" in (c["notes"] or "") for c in t.contacts.values())


# ----------------------------------------------------------------------------------------- fixture


def test_the_acme_fixture_is_a_different_small_tenant() -> None:
    acme, default = SandboxTenant.from_fixture(ACME), SandboxTenant.seeded()
    assert len(acme.contacts) == 6 and len(acme.tickets) == 5
    acme_custom = {f["system_name"] for f in acme.contact_fields if not f["is_default"]}
    default_custom = {f["system_name"] for f in default.contact_fields if not f["is_default"]}
    assert acme_custom.isdisjoint(default_custom)
    assert max(len(f["options"]) for f in acme.contact_fields) == 300
    assert [f["system_name"] for f in acme.ticket_fields if f["is_required"] and not f["is_default"]] == [
        "cf_severity"
    ]


def test_sections_absent_from_a_fixture_are_generated_around_its_contacts() -> None:
    acme = SandboxTenant.from_fixture(ACME)
    assert acme.cx_logs and all(lg["contactId"] in acme.contacts for lg in acme.cx_logs.values())
    assert acme.groups and acme.categories


def test_a_fixture_with_fields_only_generates_contacts_consistent_with_those_fields(tmp_path: Path) -> None:
    fields = json.loads(ACME.read_text())["contact_fields"]
    path = tmp_path / "fields_only.json"
    path.write_text(json.dumps({"contact_fields": fields, "seed": 3}))
    tenant = SandboxTenant.from_fixture(path)
    defs = {f["system_name"]: f for f in tenant.contact_fields}
    assert len(tenant.contacts) >= 200
    values = [(k, v) for c in tenant.contacts.values() for k, v in c["customFields"].items()]
    assert values and all(check_value(defs[k], v, k) is None for k, v in values)
    codes = [c["customFields"]["cf_vat_number"] for c in tenant.contacts.values()]
    assert len(set(codes)) == len(codes)  # the unique field stays unique


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[1, 2]", "JSON object"),
        ("{not json", "not valid JSON"),
        ('{"contactz": []}', "unknown fixture keys"),
        ('{"contact_fields": [{"system_name": "shoe_size", "type": "number"}]}', "must start with 'cf_'"),
        ('{"contacts": [{"name": "A", "tags": ["ghost"]}]}', "unknown tag"),
        (
            '{"contacts": [{"id": "c1", "name": "A"}], "tickets": [{"title": "T", "contactId": "c2"}]}',
            "contactId",
        ),
    ],
)
def test_a_malformed_fixture_is_refused_with_a_clear_error(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=needle):
        SandboxTenant.from_fixture(path)


@pytest.mark.anyio
async def test_the_acme_required_ticket_field_and_300_option_select_are_enforced() -> None:
    acme = SandboxTenant.from_fixture(ACME)
    cid = next(iter(acme.contacts))
    async with client_for(acme) as client:
        missing = await client.post("/api/v1/tickets", json={"title": "T", "contact_id": cid})
        assert missing.status_code == 400
        assert "customFields.cf_severity should not be empty" in missing.json()["message"]
        ok = await client.post(
            "/api/v1/tickets", json={"title": "T", "contact_id": cid, "customFields": {"cf_severity": "sev2"}}
        )
        assert ok.status_code == 201 and ok.json()["data"]["ticketNumber"] == 1006
        branch = await client.patch(f"/api/v1/contacts/{cid}", json={"customFields": {"cf_branch": "BR-299"}})
        assert branch.status_code == 200
        bad = await client.patch(f"/api/v1/contacts/{cid}", json={"customFields": {"cf_branch": "BR-301"}})
        assert bad.status_code == 400 and "(300 values)" in bad.json()["message"][0]


@pytest.mark.anyio
async def test_set_form_fields_replaces_the_definitions_a_client_sees() -> None:
    tenant = SandboxTenant.seeded()
    tenant.set_form_fields(
        "ticket", [{"system_name": "title", "type": "text", "is_default": True, "is_required": True}]
    )
    async with client_for(tenant) as client:
        body = (await client.get("/api/v1/tickets/fields")).json()
    assert body["total"] == 1 and body["data"][0]["is_unique"] is False
    with pytest.raises(ValueError):
        tenant.set_form_fields("ticket", [{"system_name": "loose", "type": "text"}])


# ---------------------------------------------------------------------------------------- listeners


@pytest.mark.anyio
async def test_listeners_hear_contact_create_update_messages_and_room_solved() -> None:
    tenant = SandboxTenant.seeded()
    events: list[tuple[str, dict[str, Any]]] = []
    tenant.add_listener(lambda name, data: events.append((name, data)))
    async with client_for(tenant) as client:
        created = (await client.post("/api/v1/contacts", json={"name": "Listener"})).json()["data"]
        await client.patch(f"/api/v1/contacts/{created['id']}", json={"notes": "n"})
        await client.patch(
            f"/api/v1/contacts/{created['id']}/tags", json={"actionType": "MERGE", "tags": ["vip"]}
        )
        sent = (
            await client.post(
                "/api/v1/messages/send",
                json={"contactId": created["id"], "messageType": "text", "message": "Hi"},
            )
        ).json()["data"]
        ticket = next(t for t in tenant.tickets.values() if t["status"] == "open")
        await client.put(f"/api/v1/tickets/{ticket['id']}/status", json={"status": "resolved"})
        await client.put(
            f"/api/v1/tickets/{ticket['id']}/status", json={"status": "resolved"}
        )  # no second event
        detail = (await client.get(f"/api/v1/contacts/{created['id']}")).json()["data"]
    inbound = tenant.simulate_inbound_message(created["id"], "Where is my parcel?")

    names = [name for name, _ in events]
    assert names == [
        "contact.create",
        "contact.update",
        "contact.update",
        "message.outbound",
        "room.solved",
        "message.inbound",
    ]
    assert events[0][1]["id"] == created["id"] and events[0][1]["name"] == "Listener"
    assert events[2][1] == detail  # the full contact, as the detail endpoint renders it
    assert events[3][1] == {
        k: sent[k] for k in ("id", "contactId", "channel", "messageType", "message", "createdAt")
    }
    assert events[4][1]["id"] == ticket["id"] and events[4][1]["status"] == "resolved"
    assert (
        events[5][1] == inbound
        and inbound["message"] == "Where is my parcel?"
        and inbound["messageType"] == "text"
    )
    assert tenant.messages[inbound["id"]]["direction"] == "inbound"


def test_listener_data_is_a_copy_and_a_failing_listener_does_not_break_the_tenant() -> None:
    tenant = SandboxTenant.seeded()
    cid = next(iter(tenant.contacts))
    seen: list[dict[str, Any]] = []

    def broken(name: str, data: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    def mutating(name: str, data: dict[str, Any]) -> None:
        data["message"] = "tampered"
        seen.append(data)

    tenant.add_listener(broken)
    tenant.add_listener(mutating)
    payload = tenant.simulate_inbound_message(cid, "hello", channel="line")
    assert payload["channel"] == "line" and seen[0]["message"] == "tampered"
    assert tenant.messages[payload["id"]]["message"] == "hello"
    tenant.remove_listener(mutating)
    tenant.simulate_inbound_message(cid, "again")
    assert len(seen) == 1


def test_simulating_a_message_from_an_unknown_contact_raises_key_error() -> None:
    with pytest.raises(KeyError):
        SandboxTenant.seeded().simulate_inbound_message("ghost", "hi")


@pytest.mark.anyio
async def test_requests_are_recorded_with_method_path_query_body_and_status_and_can_be_reset() -> None:
    tenant = SandboxTenant.seeded()
    async with client_for(tenant) as client:
        await client.get("/api/v1/contacts", params={"keyword": "tan", "page": 2})
        await client.post("/api/v1/channels", json={"name": "New", "type": "custom"})
    first, second = tenant.requests
    assert (first.method, first.path, first.query, first.json, first.status) == (
        "GET",
        "/api/v1/contacts",
        {"keyword": "tan", "page": "2"},
        None,
        200,
    )
    assert (second.method, second.json, second.status) == ("POST", {"name": "New", "type": "custom"}, 201)
    tenant.reset_requests()
    assert tenant.requests == []
