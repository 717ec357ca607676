"""`create_contact` does not create accidental duplicates (issue 11, item 5), in both protocol eras.

A contact with the same email (any case) or the same phone (any punctuation, international or
national spelling) is answered with `duplicate_found`, the existing contact and a next step, and
nothing is sent upstream to create; `allow_duplicate: true` creates one anyway. The check also
holds when the tenant ignores the contact-list keyword (it then reads the whole list).
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import a_contact, sc

pytestmark = pytest.mark.anyio


def _creates(tenant: SandboxTenant) -> int:
    return sum(1 for r in tenant.requests if r.method == "POST" and r.path == "/api/v1/contacts")


def _spaced(phone: str) -> str:
    """The same number with spaces and dashes ('+60100333952' -> '+60 100-333 952')."""
    head, digits = phone[:3], phone[3:]
    return f"{head} {digits[:3]}-{digits[3:6]} {digits[6:]}"


async def _create(client: Client, **arguments: Any) -> dict[str, Any]:
    return sc(await client.call_tool("create_contact", {"name": "Copy Cat", **arguments}))


@pytest.mark.parametrize("ignore_keyword", [False, True], ids=["keyword-honoured", "keyword-ignored"])
async def test_same_email_in_another_case_is_a_duplicate(
    client: Client, tenant: SandboxTenant, ignore_keyword: bool
) -> None:
    tenant.ignore_contact_keyword = ignore_keyword
    existing = a_contact(tenant)
    email = existing["contactEmails"][0]["email"]
    before = len(tenant.contacts)
    tenant.reset_requests()
    result = await _create(client, emails=[email.upper()])
    assert result["status"] == "duplicate_found"
    assert result["contact"]["id"] == existing["id"]
    assert "allow_duplicate" in result["next_step"]
    assert email in result["reason"]
    assert _creates(tenant) == 0 and len(tenant.contacts) == before


async def test_same_phone_in_another_format_is_a_duplicate(client: Client, tenant: SandboxTenant) -> None:
    existing = next(
        c
        for c in tenant.contacts.values()
        if not c.get("deletedAt")
        and str((c.get("contactPhones") or [{}])[0].get("phone", "")).startswith("+")
    )
    phone = existing["contactPhones"][0]["phone"]
    country_digits = 2  # the seeded numbers carry a two-digit country code (+60..., +66...)
    national = "0" + phone[1 + country_digits :]
    for spelling in (_spaced(phone), national):
        tenant.reset_requests()
        result = await _create(client, phones=[spelling])
        assert result["status"] == "duplicate_found", spelling
        assert result["contact"]["id"] == existing["id"], spelling
        assert _creates(tenant) == 0


async def test_allow_duplicate_creates_a_second_contact(client: Client, tenant: SandboxTenant) -> None:
    existing = a_contact(tenant)
    email = existing["contactEmails"][0]["email"]
    tenant.reset_requests()
    result = await _create(client, emails=[email], allow_duplicate=True)
    assert result["status"] == "done"
    assert result["contact"]["id"] != existing["id"]
    assert _creates(tenant) == 1
    holders = [
        c["id"]
        for c in tenant.contacts.values()
        if any(e["email"] == email for e in c.get("contactEmails") or [])
    ]
    assert len(holders) == 2


async def test_a_new_email_and_phone_create_the_contact(client: Client, tenant: SandboxTenant) -> None:
    tenant.reset_requests()
    result = await _create(client, emails=["nobody.yet@example.net"], phones=["+6598765432"])
    assert result["status"] == "done"
    assert _creates(tenant) == 1
    again = await _create(client, emails=["NOBODY.YET@example.net"])
    assert again["status"] == "duplicate_found"
    assert again["contact"]["id"] == result["contact"]["id"]


async def test_the_schema_offers_allow_duplicate(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    prop = tools["create_contact"].input_schema["properties"]["allow_duplicate"]
    assert prop["type"] == "boolean" and prop["default"] is False
    assert "duplicate_found" in (tools["create_contact"].description or "")
