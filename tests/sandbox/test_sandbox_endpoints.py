"""Every endpoint and envelope of the contract, over the in-process transport and a loopback socket."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from .conftest import Sandbox

pytestmark = pytest.mark.anyio

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
PAGED_KEYS = {"total", "page", "pageSize", "lastPage", "data"}


def live_contact(sb: Sandbox, index: int = 0) -> dict[str, Any]:
    live = sorted((c for c in sb.tenant.contacts.values() if not c["deletedAt"]), key=lambda c: c["id"])
    return live[index]


# ------------------------------------------------------------------------------------------ contacts


async def test_contact_list_is_a_paged_envelope_whose_last_page_is_the_page_count(sandbox: Sandbox) -> None:
    r = await sandbox.client.get("/api/v1/contacts", params={"pageSize": 25})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == PAGED_KEYS
    assert body["total"] == len(sandbox.tenant.contacts)
    assert (body["page"], body["pageSize"]) == (1, 25)
    assert body["lastPage"] == math.ceil(body["total"] / 25)
    assert len(body["data"]) == 25


async def test_paging_to_the_last_page_returns_every_contact_exactly_once(sandbox: Sandbox) -> None:
    first = (await sandbox.client.get("/api/v1/contacts", params={"pageSize": 100})).json()
    seen = [c["id"] for c in first["data"]]
    for page in range(2, first["lastPage"] + 1):
        body = (await sandbox.client.get("/api/v1/contacts", params={"pageSize": 100, "page": page})).json()
        seen += [c["id"] for c in body["data"]]
    assert len(seen) == len(set(seen)) == first["total"]
    beyond = (
        await sandbox.client.get("/api/v1/contacts", params={"pageSize": 100, "page": first["lastPage"] + 1})
    ).json()
    assert beyond["data"] == [] and beyond["total"] == first["total"]


async def test_an_empty_result_has_total_zero_and_one_empty_last_page(sandbox: Sandbox) -> None:
    body = (await sandbox.client.get("/api/v1/contacts", params={"keyword": "no-such-person-xyz"})).json()
    assert body == {"total": 0, "page": 1, "pageSize": 10, "lastPage": 1, "data": []}


async def test_contact_keyword_searches_names_emails_phones_and_numbers_case_insensitively(
    sandbox: Sandbox,
) -> None:
    contact = next(
        c
        for c in sandbox.tenant.contacts.values()
        if c["contactEmails"] and c["contactPhones"] and c["name"].isascii()
    )
    probes = [
        contact["name"].upper(),
        contact["contactEmails"][0]["email"].upper(),
        contact["contactPhones"][0]["phone"][-7:],
        contact["contactNumber"].lower(),
    ]
    for probe in probes:
        body = (
            await sandbox.client.get("/api/v1/contacts", params={"keyword": probe, "pageSize": 100})
        ).json()
        assert contact["id"] in [c["id"] for c in body["data"]], probe


async def test_contact_detail_uses_the_status_message_data_envelope(sandbox: Sandbox) -> None:
    contact = live_contact(sandbox)
    r = await sandbox.client.get(f"/api/v1/contacts/{contact['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success" and body["message"] == "contact"
    data = body["data"]
    for key in ("id", "name", "contactEmails", "contactPhones", "tags", "customFields", "platformContacts"):
        assert key in data
    assert isinstance(data["customFields"], dict)
    assert ISO.match(data["createdAt"]) and ISO.match(data["updatedAt"]) and data["deletedAt"] is None


async def test_fields_and_groups_paths_are_routes_not_contact_ids(sandbox: Sandbox) -> None:
    fields = (await sandbox.client.get("/api/v1/contacts/fields")).json()
    assert set(fields) == PAGED_KEYS and fields["pageSize"] == 10
    groups = (await sandbox.client.get("/api/v1/contacts/groups")).json()
    assert groups["status"] == "success" and len(groups["data"]) >= 6


async def test_contact_form_fields_are_snake_case_and_paged_so_every_page_must_be_fetched(
    sandbox: Sandbox,
) -> None:
    first = (await sandbox.client.get("/api/v1/contacts/fields")).json()
    assert first["total"] >= 40 and first["lastPage"] == math.ceil(first["total"] / 10)
    definitions = list(first["data"])
    for page in range(2, first["lastPage"] + 1):
        definitions += (await sandbox.client.get("/api/v1/contacts/fields", params={"page": page})).json()[
            "data"
        ]
    assert len(definitions) == first["total"]
    assert set(definitions[0]) == {
        "id",
        "system_name",
        "display_name",
        "type",
        "is_default",
        "is_archived",
        "is_required",
        "is_unique",
        "options",
    }
    select = next(d for d in definitions if d["type"] == "select")
    assert set(select["options"][0]) == {"value", "label", "is_default"}


async def test_ticket_form_fields_are_served_paged_as_well(sandbox: Sandbox) -> None:
    body = (await sandbox.client.get("/api/v1/tickets/fields", params={"pageSize": 100})).json()
    names = {d["system_name"] for d in body["data"]}
    assert body["total"] >= 15
    assert {
        "title",
        "description",
        "status",
        "priority",
        "cf_trackingid",
        "cf_date",
        "cf_order_value",
    } <= names


async def test_contact_create_answers_201_and_the_contact_is_then_readable(sandbox: Sandbox) -> None:
    body = {
        "name": "Ma Hnin Si",
        "address": "14 Pyay Road, Yangon",
        "channel": "whatsapp",
        "notes": "Met at the trade fair",
        "emails": ["hnin.si@example.com"],
        "phones": ["+959250001234"],
        "tags": ["vip", "brand-new-tag"],
        "customFields": {
            "cf_loyalty_tier": "gold",
            "cf_date_of_birth": "1990-02-28",
            "cf_interests": ["music"],
        },
    }
    r = await sandbox.client.post("/api/v1/contacts", json=body)
    assert r.status_code == 201
    created = r.json()["data"]
    assert r.json()["status"] == "success"
    assert created["contactEmails"][0] == {
        **created["contactEmails"][0],
        "email": "hnin.si@example.com",
        "isPrimary": True,
    }
    assert [t["name"] for t in created["tags"]] == ["vip", "brand-new-tag"]
    assert any(t["name"] == "brand-new-tag" for t in sandbox.tenant.tags.values())
    detail = (await sandbox.client.get(f"/api/v1/contacts/{created['id']}")).json()["data"]
    assert detail == created


async def test_contact_create_takes_singular_builtin_email_phone_and_company(sandbox: Sandbox) -> None:
    r = await sandbox.client.post(
        "/api/v1/contacts",
        json={"name": "Solo", "email": "solo@example.com", "phone": "+6590001111", "company": "Acme"},
    )
    data = r.json()["data"]
    assert r.status_code == 201
    assert data["contactEmails"][0]["email"] == "solo@example.com"
    assert data["contactPhones"][0]["phone"] == "+6590001111"
    assert data["company"]["name"] == "Acme" and data["companyId"] == data["company"]["id"]


async def test_contact_update_changes_only_the_given_keys_and_bumps_updated_at(sandbox: Sandbox) -> None:
    contact = live_contact(sandbox)
    before = dict(contact)
    r = await sandbox.client.patch(f"/api/v1/contacts/{contact['id']}", json={"notes": "call after 5pm"})
    assert r.status_code == 200 and r.json()["message"] == "contact updated"
    after = r.json()["data"]
    assert after["notes"] == "call after 5pm"
    assert after["name"] == before["name"] and after["contactEmails"] == before["contactEmails"]
    assert after["updatedAt"] > before["updatedAt"]


async def test_custom_fields_merge_on_update_and_null_clears_a_value(sandbox: Sandbox) -> None:
    contact = live_contact(sandbox)
    cid = contact["id"]
    await sandbox.client.patch(
        f"/api/v1/contacts/{cid}", json={"customFields": {"cf_vip": True, "cf_nickname": "Bee"}}
    )
    r = await sandbox.client.patch(f"/api/v1/contacts/{cid}", json={"customFields": {"cf_nickname": None}})
    custom = r.json()["data"]["customFields"]
    assert custom["cf_vip"] is True and "cf_nickname" not in custom


async def test_every_write_gives_a_strictly_greater_updated_at(sandbox: Sandbox) -> None:
    cid = live_contact(sandbox)["id"]
    stamps = []
    for i in range(5):
        r = await sandbox.client.patch(f"/api/v1/contacts/{cid}", json={"notes": f"n{i}"})
        stamps.append(r.json()["data"]["updatedAt"])
    assert all(ISO.match(s) for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


async def test_delete_is_soft_the_contact_vanishes_but_its_data_is_kept(sandbox: Sandbox) -> None:
    contact = live_contact(sandbox)
    cid = contact["id"]
    r = await sandbox.client.delete(f"/api/v1/contacts/{cid}")
    assert r.status_code == 200 and r.json()["data"]["deletedAt"]
    assert (await sandbox.client.get(f"/api/v1/contacts/{cid}")).status_code == 404
    assert (await sandbox.client.delete(f"/api/v1/contacts/{cid}")).status_code == 404
    listed = (
        await sandbox.client.get("/api/v1/contacts", params={"pageSize": 100, "keyword": contact["name"]})
    ).json()
    assert cid not in [c["id"] for c in listed["data"]]
    assert (
        sandbox.tenant.contacts[cid]["deletedAt"] and sandbox.tenant.contacts[cid]["name"] == contact["name"]
    )
    ticket = await sandbox.client.post("/api/v1/tickets", json={"title": "t", "contact_id": cid})
    assert ticket.status_code == 404 and ticket.json()["message"] == "Contact not found"


async def test_tag_update_takes_names_and_merges_replaces_or_removes(sandbox: Sandbox) -> None:
    cid = live_contact(sandbox)["id"]
    url = f"/api/v1/contacts/{cid}/tags"
    r = await sandbox.client.patch(url, json={"actionType": "REPLACE", "tags": ["vip"]})
    assert r.status_code == 200
    assert r.json() == {"status": "success", "message": "Contact tags updated successfully", "data": None}

    async def names() -> list[str]:
        data = (await sandbox.client.get(f"/api/v1/contacts/{cid}")).json()["data"]
        return [t["name"] for t in data["tags"]]

    assert await names() == ["vip"]
    await sandbox.client.patch(url, json={"actionType": "MERGE", "tags": ["new", "VIP", "made-up"]})
    assert await names() == ["vip", "new", "made-up"]
    await sandbox.client.patch(url, json={"actionType": "REMOVE", "tags": ["vip", "not-there"]})
    assert await names() == ["new", "made-up"]


async def test_social_platform_lookup_lists_every_contact_holding_that_id(sandbox: Sandbox) -> None:
    counts: dict[str, int] = {}
    for contact in sandbox.tenant.contacts.values():
        for platform in contact["platformContacts"]:
            counts[platform["socialPlatformId"]] = counts.get(platform["socialPlatformId"], 0) + 1
    shared = next(pid for pid, n in counts.items() if n == 2)
    body = (await sandbox.client.get(f"/api/v1/contacts/social-platform/{shared}")).json()
    assert body["status"] == "success" and len(body["data"]) == 2
    none = (await sandbox.client.get("/api/v1/contacts/social-platform/000000")).json()
    assert none["data"] == []


# ------------------------------------------------------------------------------ tags, channels, ...


async def test_tags_channels_and_categories_use_the_bare_data_envelope(sandbox: Sandbox) -> None:
    for path, minimum in (("/api/v1/tags", 20), ("/api/v1/channels", 8), ("/api/v1/categories", 3)):
        body = (await sandbox.client.get(path)).json()
        assert set(body) == {"data"}, path
        assert len(body["data"]) >= minimum, path


async def test_categories_form_a_three_level_tree(sandbox: Sandbox) -> None:
    roots = (await sandbox.client.get("/api/v1/categories")).json()["data"]
    leaf = roots[0]["childCategoryList"][0]["childCategoryList"][0]
    assert roots[0]["level"] == 1 and roots[0]["parentId"] is None
    assert leaf["level"] == 3 and leaf["childCategoryList"] == []
    assert {"id", "value", "parentId", "level", "sortOrder", "createdAt", "updatedAt"} <= set(leaf)


async def test_channel_create_answers_201_and_lists_the_new_channel(sandbox: Sandbox) -> None:
    r = await sandbox.client.post("/api/v1/channels", json={"name": "Viber Support", "type": "viber"})
    assert r.status_code == 201 and r.json()["status"] == "success"
    listed = (await sandbox.client.get("/api/v1/channels")).json()["data"]
    assert r.json()["data"]["id"] in [c["id"] for c in listed]
    again = await sandbox.client.post("/api/v1/channels", json={"name": "viber support", "type": "viber"})
    assert again.status_code == 409


# ------------------------------------------------------------------------------------------ tickets


async def test_ticket_create_takes_snake_contact_id_and_answers_201_with_camel_contact_id(
    sandbox: Sandbox,
) -> None:
    contact = live_contact(sandbox)
    tag_id = next(iter(sandbox.tenant.tags))
    body = {
        "title": "Parcel missing",
        "description": "Box never came",
        "status": "open",
        "priority": "high",
        "contact_id": contact["id"],
        "channel": "email",
        "tags": [tag_id],
        "customFields": {"cf_trackingid": "Id-1001", "cf_date": "2025-10-23"},
    }
    r = await sandbox.client.post("/api/v1/tickets", json=body)
    assert r.status_code == 201
    payload = r.json()
    assert payload["success"] is True and set(payload) == {"success", "data"}
    ticket = payload["data"]
    assert ticket["contactId"] == contact["id"] and "contact_id" not in ticket
    assert ticket["contact"]["id"] == contact["id"] and ticket["creator"]["id"]
    assert ticket["tags"][0]["id"] == tag_id
    assert ticket["ticketNumber"] == max(t["ticketNumber"] for t in sandbox.tenant.tickets.values())
    newest = (await sandbox.client.get("/api/v1/tickets", params={"pageSize": 1})).json()["data"][0]
    assert newest["id"] == ticket["id"]


async def test_ticket_create_for_an_unknown_contact_is_404_contact_not_found(sandbox: Sandbox) -> None:
    r = await sandbox.client.post("/api/v1/tickets", json={"title": "x", "contact_id": "nope"})
    assert r.status_code == 404
    assert r.json() == {"statusCode": 404, "error": "Not Found", "message": "Contact not found"}


async def test_ticket_list_is_sorted_by_ticket_number_descending(sandbox: Sandbox) -> None:
    body = (await sandbox.client.get("/api/v1/tickets", params={"pageSize": 100})).json()
    numbers = [t["ticketNumber"] for t in body["data"]]
    assert numbers == sorted(numbers, reverse=True) and body["total"] >= 500


@pytest.mark.parametrize(
    ("param", "value", "key"),
    [
        ("status", "in progress", "status"),
        ("priority", "urgent", "priority"),
        ("channel", "line", "channel"),
    ],
)
async def test_ticket_list_filters_by_status_priority_and_channel(
    sandbox: Sandbox, param: str, value: str, key: str
) -> None:
    body = (await sandbox.client.get("/api/v1/tickets", params={param: value, "pageSize": 100})).json()
    expected = [t for t in sandbox.tenant.tickets.values() if t[key] == value]
    assert body["total"] == len(expected) > 0
    assert all(t[key] == value for t in body["data"])


async def test_ticket_list_filters_by_keyword_number_contact_and_assignee(sandbox: Sandbox) -> None:
    tickets = sandbox.tenant.tickets.values()
    some = next(t for t in tickets if t["assigneeId"])
    by_number = (
        await sandbox.client.get("/api/v1/tickets", params={"ticketNumber": some["ticketNumber"]})
    ).json()
    assert [t["id"] for t in by_number["data"]] == [some["id"]]
    by_contact = (await sandbox.client.get("/api/v1/tickets", params={"contactId": some["contactId"]})).json()
    assert by_contact["total"] == sum(1 for t in tickets if t["contactId"] == some["contactId"])
    by_assignee = (
        await sandbox.client.get("/api/v1/tickets", params={"assigneeId": some["assigneeId"]})
    ).json()
    assert by_assignee["total"] == sum(1 for t in tickets if t["assigneeId"] == some["assigneeId"])
    injected = (
        await sandbox.client.get("/api/v1/tickets", params={"keyword": "ignore previous instructions"})
    ).json()
    assert injected["total"] >= 3


async def test_tickets_by_contact_are_paged_and_404_for_an_unknown_contact(sandbox: Sandbox) -> None:
    cid = max(sandbox.tenant.tickets.values(), key=lambda t: t["ticketNumber"])["contactId"]
    body = (await sandbox.client.get(f"/api/v1/tickets/contact/{cid}")).json()
    assert set(body) == PAGED_KEYS and body["total"] >= 1
    assert all(t["contactId"] == cid for t in body["data"])
    missing = await sandbox.client.get("/api/v1/tickets/contact/unknown-id")
    assert missing.status_code == 404 and missing.json()["message"] == "Contact not found"


async def test_ticket_update_patches_fields_and_answers_the_success_envelope(sandbox: Sandbox) -> None:
    ticket = next(iter(sandbox.tenant.tickets.values()))
    agent = next(iter(sandbox.tenant.agents))
    r = await sandbox.client.patch(
        f"/api/v1/tickets/{ticket['id']}",
        json={"priority": "urgent", "assigneeId": agent, "customFields": {"cf_refund": True}},
    )
    assert r.status_code == 200 and r.json()["success"] is True
    data = r.json()["data"]
    assert (
        data["priority"] == "urgent" and data["assignee"]["id"] == agent and data["customFields"]["cf_refund"]
    )
    status_in_patch = await sandbox.client.patch(f"/api/v1/tickets/{ticket['id']}", json={"status": "closed"})
    assert status_in_patch.status_code == 400
    assert (await sandbox.client.patch("/api/v1/tickets/nope", json={"priority": "low"})).json()[
        "message"
    ] == ("Ticket not found")


async def test_ticket_status_update_is_a_put_with_a_status_body(sandbox: Sandbox) -> None:
    ticket = next(t for t in sandbox.tenant.tickets.values() if t["status"] == "open")
    r = await sandbox.client.put(f"/api/v1/tickets/{ticket['id']}/status", json={"status": "pending"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "pending"
    bad = await sandbox.client.put(f"/api/v1/tickets/{ticket['id']}/status", json={"status": "done"})
    assert bad.status_code == 400 and isinstance(bad.json()["message"], list)


# ------------------------------------------------------------------------------------------ CX logs


async def test_cx_logs_use_their_own_envelope_and_filter_on_started_date(sandbox: Sandbox) -> None:
    r = await sandbox.client.get(
        "/api/v1/cx-logs",
        params={"selectedDate": "2026/10/01 00:00:00-2026/10/31 23:59:59", "pageSize": 100},
        headers={"x-client-timezone": "UTC"},
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"requestId", "cxLogs"} and set(body["cxLogs"]) == PAGED_KEYS
    expected = [lg for lg in sandbox.tenant.cx_logs.values() if lg["startedDate"].startswith("2026-10")]
    assert body["cxLogs"]["total"] == len(expected) > 0
    assert all(lg["startedDate"].startswith("2026-10") for lg in body["cxLogs"]["data"])


async def test_cx_log_range_is_read_in_the_client_time_zone(sandbox: Sandbox) -> None:
    log = next(iter(sandbox.tenant.cx_logs.values()))
    # 2026-10-10T20:00:00Z is 2026-10-11 04:00 in Singapore (UTC+8): pick a one-minute window around a log.
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    started = datetime.fromisoformat(log["startedDate"].replace("Z", "+00:00")).astimezone(
        ZoneInfo("Asia/Singapore")
    )
    window = f"{started:%Y/%m/%d %H:%M:%S}-{started + timedelta(seconds=1):%Y/%m/%d %H:%M:%S}"

    async def ids(zone: str) -> list[str]:
        r = await sandbox.client.get(
            "/api/v1/cx-logs", params={"selectedDate": window}, headers={"x-client-timezone": zone}
        )
        return [lg["id"] for lg in r.json()["cxLogs"]["data"]]

    assert log["id"] in await ids("Asia/Singapore")
    assert log["id"] not in await ids("UTC")
    assert started.astimezone(UTC).tzinfo is UTC


@pytest.mark.parametrize(
    ("params", "headers", "needle"),
    [
        ({}, {"x-client-timezone": "UTC"}, "selectedDate"),
        ({"selectedDate": "2026/10/01 00:00:00-2026/10/31 23:59:59"}, {}, "x-client-timezone"),
        (
            {"selectedDate": "2026/10/01 00:00:00-2026/10/31 23:59:59"},
            {"x-client-timezone": "Mars/Base"},
            "IANA",
        ),
        ({"selectedDate": "2026-10-01 to 2026-10-31"}, {"x-client-timezone": "UTC"}, "selectedDate"),
        ({"selectedDate": "2026/10/31 00:00:00-2026/10/01 00:00:00"}, {"x-client-timezone": "UTC"}, "before"),
        (
            {"selectedDate": "2026/13/01 00:00:00-2026/10/01 00:00:00"},
            {"x-client-timezone": "UTC"},
            "invalid date",
        ),
    ],
)
async def test_cx_logs_answer_400_without_a_valid_range_or_time_zone(
    sandbox: Sandbox, params: dict[str, str], headers: dict[str, str], needle: str
) -> None:
    r = await sandbox.client.get("/api/v1/cx-logs", params=params, headers=headers)
    assert r.status_code == 400
    assert any(needle in m for m in r.json()["message"])


# ------------------------------------------------------------------------------------------ messages


async def test_send_message_answers_a_numeric_status_in_its_envelope(sandbox: Sandbox) -> None:
    contact = live_contact(sandbox)
    r = await sandbox.client.post(
        "/api/v1/messages/send",
        json={
            "contactId": contact["id"],
            "messageType": "text",
            "message": "Hello!",
            "createdAt": "2026-01-08T16:03:39.923Z",
        },
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == 200 and body["message"] == "Message sent successfully"
    data = body["data"]
    assert {"id", "createdAt", "clientRequestId", "partition_key"} <= set(data)
    assert data["partition_key"] == "2026_01" and data["clientRequestId"] == ""
    assert sandbox.tenant.messages[data["id"]]["message"] == "Hello!"


async def test_send_message_rejects_unknown_message_types_and_unknown_contacts(sandbox: Sandbox) -> None:
    cid = live_contact(sandbox)["id"]
    bad_type = await sandbox.client.post(
        "/api/v1/messages/send", json={"contactId": cid, "messageType": "image", "message": "x"}
    )
    assert bad_type.status_code == 400
    unknown = await sandbox.client.post(
        "/api/v1/messages/send", json={"contactId": "ghost", "messageType": "text", "message": "x"}
    )
    assert unknown.status_code == 404
    assert sandbox.tenant.messages == {}
