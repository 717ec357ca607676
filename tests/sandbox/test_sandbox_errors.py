"""Auth, validation (400), not-found (404) and conflict (409) answers, over both frontends."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Sandbox

pytestmark = pytest.mark.anyio


def any_contact_id(sb: Sandbox) -> str:
    return next(c["id"] for c in sb.tenant.contacts.values() if not c["deletedAt"])


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": ""}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic c2FuZGJveA=="}],
)
async def test_a_request_without_the_right_bearer_token_is_401(
    sandbox: Sandbox, headers: dict[str, str]
) -> None:
    r = await sandbox.client.get("/api/v1/contacts", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"statusCode": 401, "error": "Unauthorized", "message": "Unauthorized"}
    assert sandbox.tenant.requests[-1].status == 401


async def test_the_token_never_appears_in_recorded_requests(sandbox: Sandbox) -> None:
    await sandbox.client.get("/api/v1/tags")
    recorded = sandbox.tenant.requests[-1]
    assert recorded.headers["authorization"] == "[redacted]"
    assert "sandbox-token" not in repr(recorded) and "sandbox-token" not in str(recorded.headers)


async def test_an_unknown_path_or_method_is_404(sandbox: Sandbox) -> None:
    for method, path in (
        ("GET", "/api/v1/nothing"),
        ("PUT", "/api/v1/contacts"),
        ("GET", "/api/v2/contacts"),
    ):
        r = await sandbox.client.request(method, path)
        assert r.status_code == 404, path
        assert r.json()["message"] == f"Cannot {method} {path}"


async def test_unknown_ids_are_404_with_a_resource_message(sandbox: Sandbox) -> None:
    cases = [
        ("GET", "/api/v1/contacts/00000000-0000-4000-8000-000000000000", None, "Contact not found"),
        ("PATCH", "/api/v1/contacts/nope", {"notes": "x"}, "Contact not found"),
        ("DELETE", "/api/v1/contacts/nope", None, "Contact not found"),
        (
            "PATCH",
            "/api/v1/contacts/nope/tags",
            {"actionType": "MERGE", "tags": ["vip"]},
            "Contact not found",
        ),
        ("PATCH", "/api/v1/tickets/nope", {"title": "x"}, "Ticket not found"),
        ("PUT", "/api/v1/tickets/nope/status", {"status": "open"}, "Ticket not found"),
    ]
    for method, path, body, message in cases:
        r = await sandbox.client.request(method, path, json=body)
        assert r.status_code == 404, path
        assert r.json() == {"statusCode": 404, "error": "Not Found", "message": message}


async def test_an_id_holding_an_encoded_slash_stays_one_path_segment(sandbox: Sandbox) -> None:
    r = await sandbox.client.get("/api/v1/contacts/a%2Fb")
    assert r.status_code == 404 and r.json()["message"] == "Contact not found"
    assert sandbox.tenant.requests[-1].path == "/api/v1/contacts/a/b"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pageSize": 101}, "pageSize must not be greater than 100"),
        ({"pageSize": 0}, "pageSize must not be less than 1"),
        ({"page": 0}, "page must not be less than 1"),
        ({"page": "two"}, "page must be an integer number"),
    ],
)
async def test_paging_parameters_out_of_range_are_400(
    sandbox: Sandbox, params: dict[str, Any], message: str
) -> None:
    for path in ("/api/v1/contacts", "/api/v1/tickets", "/api/v1/contacts/fields", "/api/v1/tickets/fields"):
        r = await sandbox.client.get(path, params=params)
        assert r.status_code == 400, path
        body = r.json()
        assert body["statusCode"] == 400 and body["error"] == "Bad Request"
        assert message in body["message"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"status": "done"}, "status must be one of"),
        ({"priority": "p1"}, "priority"),
        ({"ticketNumber": "x"}, "integer"),
    ],
)
async def test_invalid_ticket_filters_are_400(sandbox: Sandbox, params: dict[str, str], needle: str) -> None:
    r = await sandbox.client.get("/api/v1/tickets", params=params)
    assert r.status_code == 400
    assert any(needle in m for m in r.json()["message"])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "name should not be empty"),
        ({"name": "   "}, "name should not be empty"),
        ({"name": 42}, "name must be a string"),
        ({"name": "A", "emails": "a@b.c"}, "emails must be an array"),
        ({"name": "A", "emails": ["not-an-email"]}, "emails.0 must be an email"),
        ({"name": "A", "phones": ["call me"]}, "phones.0 must be a valid phone number"),
        ({"name": "A", "channel": "pigeon"}, "channel must be one of"),
        ({"name": "A", "customFields": {"cf_unknown": 1}}, "customFields.cf_unknown is not a known field"),
        (
            {"name": "A", "customFields": {"cf_loyalty_tier": "diamond"}},
            "customFields.cf_loyalty_tier must be one of",
        ),
        ({"name": "A", "customFields": {"cf_date_of_birth": "2020-02-30"}}, "valid date"),
        ({"name": "A", "customFields": {"cf_loyalty_points": "12"}}, "must be a number"),
        ({"name": "A", "customFields": {"cf_vip": "yes"}}, "boolean"),
        (
            {"name": "A", "customFields": {"cf_interests": ["music", "opera"]}},
            "each value in customFields.cf_interests",
        ),
        ({"name": "A", "customFields": {"cf_website": "not a url"}}, "URL"),
        ({"name": "A", "customFields": {"cf_last_purchase_at": "yesterday"}}, "ISO 8601"),
        ({"name": "A", "customFields": {"cf_legacy_code": "L-1"}}, "archived"),
        ({"name": "A", "customFields": []}, "customFields must be an object"),
        ({"name": "A", "nickname": "B"}, "property nickname should not exist"),
    ],
)
async def test_invalid_contact_bodies_are_400_with_a_list_of_messages(
    sandbox: Sandbox, body: dict[str, Any], needle: str
) -> None:
    before = len(sandbox.tenant.contacts)
    r = await sandbox.client.post("/api/v1/contacts", json=body)
    assert r.status_code == 400
    messages = r.json()["message"]
    assert isinstance(messages, list) and any(needle in m for m in messages), messages
    assert len(sandbox.tenant.contacts) == before


async def test_a_body_that_is_not_json_or_not_an_object_is_400(sandbox: Sandbox) -> None:
    broken = await sandbox.client.post(
        "/api/v1/contacts", content=b"{name:", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["message"] == ["request body must be valid JSON"]
    listed = await sandbox.client.post("/api/v1/contacts", json=[{"name": "A"}])
    assert listed.status_code == 400 and listed.json()["message"] == ["request body must be a JSON object"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"contact_id": "X"}, "title should not be empty"),
        ({"title": "T"}, "contact_id should not be empty"),
        ({"title": "T", "contactId": "X"}, "property contactId should not exist"),
        ({"title": "T", "contact_id": "X", "status": "done"}, "status must be one of"),
        ({"title": "T", "contact_id": "X", "priority": "p0"}, "priority must be one of"),
        ({"title": "T", "contact_id": "X", "tags": ["vip"]}, "tags must be ids of existing tags"),
        ({"title": "T", "contact_id": "X", "assigneeId": "nobody"}, "assigneeId"),
        (
            {"title": "T", "contact_id": "X", "customFields": {"cf_product": "toaster"}},
            "cf_product must be one of",
        ),
        ({"title": "T", "contact_id": "X", "customFields": {"cf_order_value": "1"}}, "must be a number"),
    ],
)
async def test_invalid_ticket_bodies_are_400(sandbox: Sandbox, body: dict[str, Any], needle: str) -> None:
    r = await sandbox.client.post("/api/v1/tickets", json=body)
    assert r.status_code == 400
    assert any(needle in m for m in r.json()["message"]), r.json()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"tags": ["vip"]}, "actionType should not be empty"),
        ({"actionType": "ADD", "tags": ["vip"]}, "actionType must be one of"),
        ({"actionType": "MERGE"}, "tags should not be empty"),
        ({"actionType": "MERGE", "tags": [""]}, "non-empty string"),
    ],
)
async def test_invalid_tag_updates_are_400(sandbox: Sandbox, body: dict[str, Any], needle: str) -> None:
    r = await sandbox.client.patch(f"/api/v1/contacts/{any_contact_id(sandbox)}/tags", json=body)
    assert r.status_code == 400
    assert any(needle in m for m in r.json()["message"])


async def test_invalid_channel_and_message_bodies_are_400(sandbox: Sandbox) -> None:
    channel = await sandbox.client.post("/api/v1/channels", json={"name": "X", "type": "carrier-pigeon"})
    assert channel.status_code == 400
    message = await sandbox.client.post("/api/v1/messages/send", json={"contactId": any_contact_id(sandbox)})
    assert message.status_code == 400
    assert {"messageType should not be empty", "message should not be empty"} <= set(
        message.json()["message"]
    )


async def test_a_unique_custom_field_value_already_used_is_409(sandbox: Sandbox) -> None:
    taken = next(
        c["customFields"]["cf_customer_code"]
        for c in sandbox.tenant.contacts.values()
        if "cf_customer_code" in c["customFields"] and not c["deletedAt"]
    )
    r = await sandbox.client.post(
        "/api/v1/contacts", json={"name": "Copy", "customFields": {"cf_customer_code": taken}}
    )
    assert r.status_code == 409 and r.json()["error"] == "Conflict"
