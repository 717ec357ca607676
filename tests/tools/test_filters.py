"""Honest filters (issue 11, item 2) and zoned times (item 3), through the MCP client.

Every filter of every list tool is compared with the same filter applied here to the tenant's full
data set (items in order, `total`, `has_more`), on the seeded sandbox and on the fixture tenant
(tests/fixtures/tenant_acme.json), each time with a tenant that honours the [inferred] list filters
and with one that ignores them (`SandboxTenant.ignore_ticket_filters` / `ignore_contact_keyword`),
in both protocol eras. The oracles below read the tenant's records directly; they do not call any
code of the server.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mcp import Client

from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import FIXTURES, MODES, make_server, sc

pytestmark = pytest.mark.anyio

PAGE_SIZE = 4
BANGKOK = "Asia/Bangkok"
RANGE = {"start": "2026-09-01T00:00:00", "end": "2026-11-02T00:00:00", "timezone": BANGKOK}


def _build(kind: str, ignore: bool) -> SandboxTenant:
    tenant = (
        SandboxTenant.seeded()
        if kind == "seeded"
        else SandboxTenant.from_fixture(FIXTURES / "tenant_acme.json")
    )
    tenant.ignore_ticket_filters = ignore
    tenant.ignore_contact_keyword = ignore
    return tenant


@pytest.fixture(params=["seeded", "acme"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["honours-filters", "ignores-filters"])
def ignore(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tenant(kind: str, ignore: bool) -> SandboxTenant:
    return _build(kind, ignore)


@pytest.fixture
async def client(tenant: SandboxTenant, mode: str) -> AsyncIterator[Client]:
    async with Client(make_server(tenant), mode=mode) as c:  # type: ignore[arg-type]
        yield c


# -- oracles: the filter applied to the full data set -------------------------------------------------


def _live_tickets(tenant: SandboxTenant) -> list[dict[str, Any]]:
    tickets = [t for t in tenant.tickets.values() if not t.get("deletedAt")]
    return sorted(tickets, key=lambda t: t["ticketNumber"], reverse=True)


def _ticket_oracle(tenant: SandboxTenant, **filters: str) -> list[str]:
    out = []
    for t in _live_tickets(tenant):
        if any(
            str(t.get(key) or "").lower() != str(filters[key]).lower()
            for key in ("status", "priority", "channel")
            if key in filters
        ):
            continue
        if "contact_id" in filters and t.get("contactId") != filters["contact_id"]:
            continue
        if "keyword" in filters:
            needle = filters["keyword"].lower()
            text = f"{t.get('title') or ''}\n{t.get('description') or ''}".lower()
            if needle not in text:
                continue
        out.append(t["id"])
    return out


def _contact_oracle(tenant: SandboxTenant, keyword: str) -> list[str]:
    needle = keyword.lower()
    live = [c for c in tenant.contacts.values() if not c.get("deletedAt")]
    live.sort(key=lambda c: (c["createdAt"], c["id"]), reverse=True)
    out = []
    for c in live:
        texts = [c.get("name"), c.get("contactNumber")]
        texts += [e.get("email") for e in c.get("contactEmails") or []]
        texts += [p.get("phone") for p in c.get("contactPhones") or []]
        if any(needle in str(t or "").lower() for t in texts):
            out.append(c["id"])
    return out


def _cx_oracle(tenant: SandboxTenant, contact_id: str) -> list[str]:
    zone = ZoneInfo(BANGKOK)
    start = datetime.fromisoformat(RANGE["start"]).replace(tzinfo=zone)
    end = datetime.fromisoformat(RANGE["end"]).replace(tzinfo=zone)
    logs = [
        log
        for log in tenant.cx_logs.values()
        if log.get("contactId") == contact_id and start <= tenant.cx_started(log) <= end
    ]
    logs.sort(key=lambda log: (log["startedDate"], log["id"]), reverse=True)
    return [log["id"] for log in logs]


def _ticket_filter_cases(tenant: SandboxTenant) -> list[dict[str, str]]:
    """One case per filter (plus a combination), with values taken from the data set."""
    tickets = _live_tickets(tenant)
    busiest = Counter(t["contactId"] for t in tickets).most_common(1)[0][0]
    word = next(w for t in tickets for w in re.findall(r"[A-Za-z]{5,}", t["title"]))
    oldest = tickets[-1]
    return [
        {"status": oldest["status"]},
        {"priority": oldest["priority"]},
        {"channel": oldest["channel"]},
        {"keyword": word.upper()},
        {"contact_id": busiest},
        {"status": oldest["status"], "channel": oldest["channel"]},
    ]


async def _pages(client: Client, tool: str, args: dict[str, Any], pages: int) -> list[dict[str, Any]]:
    out = []
    for number in range(1, pages + 1):
        out.append(sc(await client.call_tool(tool, {**args, "page": number, "page_size": PAGE_SIZE})))
    return out


def _assert_matches_oracle(results: list[dict[str, Any]], expected: list[str]) -> None:
    for number, result in enumerate(results, start=1):
        start = (number - 1) * PAGE_SIZE
        assert [i["id"] for i in result["items"]] == expected[start : start + PAGE_SIZE], number
        assert result["total"] == len(expected), number
        assert result["has_more"] is (len(expected) > start + PAGE_SIZE), number
        assert result.get("complete", True) is True


# -- list_tickets --------------------------------------------------------------------------------------


async def test_every_list_tickets_filter_matches_the_filtered_data_set(
    client: Client, tenant: SandboxTenant, ignore: bool
) -> None:
    for case in _ticket_filter_cases(tenant):
        expected = _ticket_oracle(tenant, **case)
        assert expected, case  # a case that matches nothing would prove little
        pages = max(2, math.ceil(len(expected) / PAGE_SIZE) if len(expected) <= 3 * PAGE_SIZE else 2)
        tenant.reset_requests()
        results = await _pages(client, "list_tickets", case, pages)
        _assert_matches_oracle(results, expected)
        unfiltered = [r for r in tenant.requests if r.path == "/api/v1/tickets" and "status" not in r.query]
        if ignore:
            # The tenant answered the unfiltered listing: the server read it and filtered here.
            assert any(r.query.get("pageSize") == "100" for r in unfiltered), case


async def test_without_filters_list_tickets_is_one_upstream_page(
    client: Client, tenant: SandboxTenant
) -> None:
    tenant.reset_requests()
    result = sc(await client.call_tool("list_tickets", {"page_size": PAGE_SIZE}))
    assert [i["id"] for i in result["items"]] == [t["id"] for t in _live_tickets(tenant)[:PAGE_SIZE]]
    assert result["total"] == len(tenant.tickets)
    assert len(tenant.requests) == 1


async def test_an_ignored_filter_is_caught_even_when_the_page_happens_to_match(mode: str) -> None:
    """The tenant ignores `status`; the newest tickets all have one status: the page looks right, but
    K-LINK's total counts every ticket. The server must notice and count the filtered tickets."""
    tenant = _build("seeded", ignore=True)
    newest = _live_tickets(tenant)[:PAGE_SIZE]
    for t in newest:
        t["status"] = newest[0]["status"]
    expected = _ticket_oracle(tenant, status=newest[0]["status"])
    async with Client(make_server(tenant), mode=mode) as client:  # type: ignore[arg-type]
        [result] = await _pages(client, "list_tickets", {"status": newest[0]["status"]}, 1)
    _assert_matches_oracle([result], expected)
    assert result["total"] < len(tenant.tickets)


async def test_a_filtered_scan_stops_at_its_cap_and_says_so(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from klink_mcp.tools import filtering

    monkeypatch.setattr(filtering, "MAX_SCAN_PAGES", 2)
    tenant = _build("seeded", ignore=True)
    expected = _ticket_oracle(tenant, status="open")
    async with Client(make_server(tenant), mode=mode) as client:  # type: ignore[arg-type]
        result = sc(await client.call_tool("list_tickets", {"status": "open", "page_size": PAGE_SIZE}))
    upstream_pages = math.ceil(len(tenant.tickets) / 100)
    assert result["complete"] is False
    assert result["scanned_pages"] == 2
    assert "total" not in result  # unknown: never a partial count passed off as the whole
    assert f"2 of {upstream_pages}" in result["note"]
    assert [i["id"] for i in result["items"]] == expected[:PAGE_SIZE]


# -- get_ticket_by_number ------------------------------------------------------------------------------


async def test_get_ticket_by_number_finds_the_oldest_ticket(client: Client, tenant: SandboxTenant) -> None:
    oldest = _live_tickets(tenant)[-1]
    result = sc(await client.call_tool("get_ticket_by_number", {"ticket_number": oldest["ticketNumber"]}))
    assert result["id"] == oldest["id"]
    missing = await client.call_tool("get_ticket_by_number", {"ticket_number": 987654})
    assert missing.is_error
    assert "987654" in missing.content[0].text  # type: ignore[union-attr]


# -- list_contact_tickets ------------------------------------------------------------------------------


async def test_list_contact_tickets_matches_the_contacts_tickets(
    client: Client, tenant: SandboxTenant
) -> None:
    busiest = Counter(t["contactId"] for t in _live_tickets(tenant)).most_common(1)[0][0]
    expected = _ticket_oracle(tenant, contact_id=busiest)
    tenant.reset_requests()
    results = await _pages(client, "list_contact_tickets", {"contact_id": busiest}, 2)
    _assert_matches_oracle(results, expected)
    assert len(tenant.requests) == 2  # the contact is in the path: one request a page, no scan


async def test_list_contact_tickets_on_a_tenant_ignoring_the_contact_filters_here(mode: str) -> None:
    """A tenant whose contact-ticket path lists everyone's tickets: the server notices and filters."""
    tenant = _build("seeded", ignore=False)
    busiest = Counter(t["contactId"] for t in _live_tickets(tenant)).most_common(1)[0][0]
    expected = _ticket_oracle(tenant, contact_id=busiest)
    tenant.ignore_contact_path = True
    async with Client(make_server(tenant), mode=mode) as client:  # type: ignore[arg-type]
        results = await _pages(client, "list_contact_tickets", {"contact_id": busiest}, 2)
    _assert_matches_oracle(results, expected)


# -- list_contacts -------------------------------------------------------------------------------------


async def test_list_contacts_keyword_matches_the_filtered_data_set(
    client: Client, tenant: SandboxTenant, ignore: bool
) -> None:
    contacts = sorted(tenant.contacts.values(), key=lambda c: c["id"])
    email = contacts[0]["contactEmails"][0]["email"]
    name_part = Counter(
        w.lower() for c in contacts for w in re.findall(r"[A-Za-z]{3,}", str(c.get("name")))
    ).most_common(1)[0][0]
    for keyword in (email.upper(), name_part):
        expected = _contact_oracle(tenant, keyword)
        assert expected, keyword
        tenant.reset_requests()
        results = await _pages(client, "list_contacts", {"keyword": keyword}, 2)
        _assert_matches_oracle(results, expected)
        if ignore:
            assert any("keyword" not in r.query for r in tenant.requests), keyword


# -- list_cx_logs ---------------------------------------------------------------------------------------


async def test_list_cx_logs_by_contact_is_filtered_server_side_in_one_call(
    client: Client, tenant: SandboxTenant
) -> None:
    busiest = Counter(log.get("contactId") for log in tenant.cx_logs.values()).most_common(1)[0][0]
    assert busiest is not None
    expected = _cx_oracle(tenant, busiest)
    assert len(expected) > PAGE_SIZE
    results = await _pages(client, "list_cx_logs", {**RANGE, "contact_id": busiest}, 2)
    _assert_matches_oracle(results, expected)
    for result in results:
        assert all(i["contact_id"] == busiest for i in result["items"])


async def test_a_contact_without_cx_logs_is_an_empty_final_page_in_one_call(
    client: Client, tenant: SandboxTenant
) -> None:
    # A contact without logs in the range (the fixture tenant has none: a new contact's id then).
    nobody = next(
        (c["id"] for c in tenant.contacts.values() if not _cx_oracle(tenant, c["id"])),
        "0c0c0c0c-0000-4000-8000-000000000000",
    )
    zone = ZoneInfo(BANGKOK)
    start = datetime.fromisoformat(RANGE["start"]).replace(tzinfo=zone)
    end = datetime.fromisoformat(RANGE["end"]).replace(tzinfo=zone)
    in_range = len([log for log in tenant.cx_logs.values() if start <= tenant.cx_started(log) <= end])
    tenant.reset_requests()
    result = sc(await client.call_tool("list_cx_logs", {**RANGE, "contact_id": nobody}))
    assert (result["items"], result["total"], result["has_more"]) == ([], 0, False)
    # One tool call; the server read every page of the range (100 a page) to know there is nothing.
    cx_requests = [r for r in tenant.requests if r.path == "/api/v1/cx-logs"]
    assert len(cx_requests) == result["scanned_pages"] == max(1, math.ceil(in_range / 100))
    assert {r.query["pageSize"] for r in cx_requests} == {"100"}


async def test_list_cx_logs_reports_progress_while_it_scans(tenant: SandboxTenant) -> None:
    busiest = Counter(log.get("contactId") for log in tenant.cx_logs.values()).most_common(1)[0][0]
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with Client(make_server(tenant), mode="legacy") as client:
        result = await client.call_tool(
            "list_cx_logs", {**RANGE, "contact_id": busiest}, progress_callback=on_progress
        )
    assert not result.is_error
    pages = sc(result)["scanned_pages"]
    assert sorted(p for p, _ in seen) == [float(n) for n in range(1, pages + 1)]
    assert {t for _, t in seen} == {float(pages)}


async def test_list_cx_logs_times_are_in_the_zone_asked_for(client: Client, tenant: SandboxTenant) -> None:
    result = sc(await client.call_tool("list_cx_logs", {**RANGE, "page_size": 50}))
    assert result["items"]
    for item in result["items"]:
        log = tenant.cx_logs[item["id"]]
        assert item["started_at"].endswith("+07:00")
        assert datetime.fromisoformat(item["started_at"]) == tenant.cx_started(log)
        if "closed_at" in item:
            assert item["closed_at"].endswith("+07:00")
    utc = sc(await client.call_tool("list_cx_logs", {**RANGE, "timezone": "UTC", "page_size": 5}))
    assert all(i["started_at"].endswith("+00:00") for i in utc["items"])
