"""The SDK against the sandbox tenant: every operation over a real loopback socket and in process,
paging to the last page, injected faults (5xx/429, connection resets) and input that must send nothing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import pytest

from klink_mcp.api import errors
from klink_mcp.api._http import Attempt
from klink_mcp.api.catalog import DEFAULT_OPERATIONS
from klink_mcp.api.client import KlinkClient
from klink_mcp.sandbox import DEFAULT_TOKEN, FaultConfig, SandboxTenant, SandboxTransport, serve_sandbox

from .conftest import FakeTime

pytestmark = pytest.mark.anyio


@dataclass
class Sandbox:
    tenant: SandboxTenant
    client: KlinkClient
    kind: str
    url: str


@pytest.fixture(scope="module")
def pristine_tenant() -> SandboxTenant:
    return SandboxTenant.seeded()


@pytest.fixture(params=["loopback", "in_process"])
async def sandbox(request: pytest.FixtureRequest, pristine_tenant: SandboxTenant) -> AsyncIterator[Sandbox]:
    """A fresh seeded tenant and a client to it, over a real socket or the in-process transport."""
    tenant = copy.deepcopy(pristine_tenant)  # seeding is the slow part; a copy is as fresh
    fake = FakeTime()
    if request.param == "loopback":
        async with (
            serve_sandbox(tenant) as server,
            KlinkClient(server.url, DEFAULT_TOKEN, sleep=fake.sleep) as client,
        ):
            yield Sandbox(tenant, client, "loopback", server.url)
    else:
        transport = SandboxTransport(tenant, token=DEFAULT_TOKEN)
        async with KlinkClient(
            "http://sandbox.test", DEFAULT_TOKEN, transport=transport, sleep=fake.sleep
        ) as client:
            yield Sandbox(tenant, client, "in_process", "http://sandbox.test")


def live_contacts(tenant: SandboxTenant) -> list[dict[str, Any]]:
    return [c for c in tenant.contacts.values() if not c.get("deletedAt")]


# ---------------------------------------------------------------------------------------- every operation


async def test_contacts_page_to_the_last_page(sandbox: Sandbox) -> None:
    client, expected = sandbox.client, len(live_contacts(sandbox.tenant))
    first = await client.list_contacts(page_size=100)
    assert first.total == expected
    assert first.last_page == -(-expected // 100)
    assert first.has_more
    last = await client.list_contacts(page=first.last_page, page_size=100)
    assert not last.has_more
    assert len(last.items) == expected - 100 * (first.last_page - 1)
    everyone = await client.fetch_all_pages(
        lambda page, size: client.list_contacts(page=page, page_size=size)
    )
    assert len({c.id for c in everyone}) == expected
    assert all(c.contact_emails or c.contact_phones or c.name for c in everyone)


async def test_contacts_are_found_by_keyword_and_by_social_platform_id(sandbox: Sandbox) -> None:
    target = next(c for c in live_contacts(sandbox.tenant) if c["contactEmails"] and c["platformContacts"])
    email = target["contactEmails"][0]["email"]
    found = await sandbox.client.list_contacts(keyword=email.upper())
    assert target["id"] in {c.id for c in found.items}
    platform_id = target["platformContacts"][0]["socialPlatformId"]
    matches = await sandbox.client.find_contacts_by_social_platform_id(platform_id)
    assert target["id"] in {c.id for c in matches}
    assert await sandbox.client.find_contacts_by_social_platform_id("no-such-platform-id") == []


async def test_a_contact_is_created_read_updated_tagged_and_deleted(sandbox: Sandbox) -> None:
    client = sandbox.client
    created = await client.create_contact(
        {"name": "Ann Example", "emails": ["ann@example.com"], "tags": ["vip"]}
    )
    assert created.id in sandbox.tenant.contacts
    assert created.contact_emails[0].email == "ann@example.com"
    read = await client.get_contact(created.id)
    assert read.name == "Ann Example"
    updated = await client.update_contact(created.id, {"notes": "prefers LINE"})
    assert updated.notes == "prefers LINE"
    assert updated.updated_at and read.updated_at and updated.updated_at > read.updated_at
    await client.update_contact_tags(created.id, action="MERGE", tags=["new", "vip"])
    assert {t.name for t in (await client.get_contact(created.id)).tags} == {"vip", "new"}
    await client.update_contact_tags(created.id, action="REMOVE", tags=["vip"])
    assert {t.name for t in (await client.get_contact(created.id)).tags} == {"new"}
    await client.update_contact_tags(created.id, action="REPLACE", tags=["gold"])
    assert {t.name for t in (await client.get_contact(created.id)).tags} == {"gold"}
    await client.delete_contact(created.id)
    with pytest.raises(errors.NotFound):
        await client.get_contact(created.id)
    assert sandbox.tenant.contacts[created.id]["deletedAt"]


async def test_form_fields_of_both_kinds_are_read_across_every_page(sandbox: Sandbox) -> None:
    contact_fields = await sandbox.client.all_contact_form_fields()
    ticket_fields = await sandbox.client.all_ticket_form_fields()
    assert [f.id for f in contact_fields] == [f["id"] for f in sandbox.tenant.contact_fields]
    assert [f.id for f in ticket_fields] == [f["id"] for f in sandbox.tenant.ticket_fields]
    assert len(contact_fields) >= 40
    small_pages = await sandbox.client.get_contact_form_fields(page=5, page_size=10)
    assert small_pages.last_page == -(-len(contact_fields) // 10)
    assert not small_pages.has_more
    assert any(f.type == "select" and f.options for f in contact_fields)
    assert any(f.system_name and f.system_name.startswith("cf_") for f in contact_fields)


async def test_groups_tags_channels_and_categories_are_listed(sandbox: Sandbox) -> None:
    client, tenant = sandbox.client, sandbox.tenant
    assert {g.id for g in await client.list_contact_groups()} == set(tenant.groups)
    assert {t.id for t in await client.list_tags()} == set(tenant.tags)
    assert {c.id for c in await client.list_channels()} == set(tenant.channels)
    channel = await client.create_channel(name="Support WhatsApp 2", type="whatsapp")
    assert channel.id in tenant.channels
    assert channel.type == "whatsapp"
    roots = await client.list_categories()
    assert roots and all(c.parent_id is None for c in roots)

    def depth(nodes: list[Any]) -> int:
        return 1 + max((depth(n.child_category_list) for n in nodes), default=0) if nodes else 0

    assert depth(roots) == 3


async def test_tickets_are_listed_filtered_and_paged_to_the_last_page(sandbox: Sandbox) -> None:
    client, tenant = sandbox.client, sandbox.tenant
    everything = await client.list_tickets(page_size=100)
    assert everything.total == len([t for t in tenant.tickets.values() if not t.get("deletedAt")])
    last = await client.list_tickets(page=everything.last_page, page_size=100)
    assert not last.has_more and last.items
    numbers = [t.ticket_number for t in everything.items]
    assert numbers == sorted(numbers, reverse=True)
    resolved = await client.list_tickets(status="resolved", priority="high", page_size=100)
    assert resolved.items and all(t.status == "resolved" and t.priority == "high" for t in resolved.items)
    one = everything.items[3]
    assert one.ticket_number is not None
    exact = await client.list_tickets(ticket_number=one.ticket_number)
    assert [t.id for t in exact.items] == [one.id]
    assert one.contact_id
    by_contact = await client.list_tickets(contact_id=one.contact_id, page_size=100)
    assert one.id in {t.id for t in by_contact.items}
    assert exact.items[0].contact is not None and exact.items[0].contact.id == one.contact_id


async def test_a_ticket_is_created_listed_for_its_contact_updated_and_resolved(sandbox: Sandbox) -> None:
    client = sandbox.client
    contact_id = live_contacts(sandbox.tenant)[0]["id"]
    created = await client.create_ticket(
        {"title": "Parcel lost", "description": "Order 1001", "priority": "high", "contact_id": contact_id}
    )
    assert created.contact_id == contact_id
    assert created.id in sandbox.tenant.tickets
    mine = await client.list_contact_tickets(contact_id, page_size=100)
    assert created.id in {t.id for t in mine.items}
    changed = await client.update_ticket(created.id, {"priority": "low", "title": "Parcel found"})
    assert (changed.priority, changed.title) == ("low", "Parcel found")
    resolved = await client.update_ticket_status(created.id, "resolved")
    assert resolved.status == "resolved"
    with pytest.raises(errors.NotFound, match="Contact not found"):
        await client.create_ticket({"title": "x", "contact_id": "00000000-0000-0000-0000-000000000000"})
    with pytest.raises(errors.BadRequest) as caught:
        await client.create_ticket({"contact_id": contact_id})
    assert any("title" in message for message in caught.value.messages)


async def test_cx_logs_are_read_for_a_range_in_a_time_zone_to_the_last_page(sandbox: Sandbox) -> None:
    client = sandbox.client
    start, end = datetime(2026, 9, 1), datetime(2026, 11, 1)
    first = await client.list_cx_logs(start=start, end=end, timezone="Asia/Singapore", page_size=100)
    assert first.total > 100 and first.has_more
    every = await client.fetch_all_pages(
        lambda page, size: client.list_cx_logs(
            start=start, end=end, timezone="Asia/Singapore", page=page, page_size=size
        )
    )
    assert len(every) == first.total
    recorded = sandbox.tenant.requests[-1]
    assert recorded.query["selectedDate"] == "2026/09/01 00:00:00-2026/11/01 00:00:00"
    narrow = await client.list_cx_logs(start=datetime(2026, 10, 1), end=datetime(2026, 10, 2), timezone="UTC")
    assert narrow.total < first.total


async def test_a_message_is_sent_to_a_contact(sandbox: Sandbox) -> None:
    contact_id = live_contacts(sandbox.tenant)[0]["id"]
    sent = await sandbox.client.send_message(contact_id=contact_id, message="Your parcel is on its way")
    assert sent.id
    assert sandbox.tenant.messages[sent.id]["message"] == "Your parcel is on its way"


async def test_every_catalogued_operation_reached_the_tenant_at_its_contract_path(sandbox: Sandbox) -> None:
    # Run the whole tour once, then match every recorded request to a catalogue template.
    for test in (
        test_contacts_page_to_the_last_page,
        test_contacts_are_found_by_keyword_and_by_social_platform_id,
        test_a_contact_is_created_read_updated_tagged_and_deleted,
        test_form_fields_of_both_kinds_are_read_across_every_page,
        test_groups_tags_channels_and_categories_are_listed,
        test_tickets_are_listed_filtered_and_paged_to_the_last_page,
        test_a_ticket_is_created_listed_for_its_contact_updated_and_resolved,
        test_cx_logs_are_read_for_a_range_in_a_time_zone_to_the_last_page,
        test_a_message_is_sent_to_a_contact,
    ):
        await test(sandbox)

    def matches(template: str, path: str) -> bool:
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
        return re.fullmatch(pattern, path) is not None

    # Fixed paths (contacts/fields, contacts/groups) must win over the {id} template.
    templates = sorted(DEFAULT_OPERATIONS, key=lambda op: len(op.placeholders))
    seen = set()
    for recorded in sandbox.tenant.requests:
        for op in templates:
            if op.method == recorded.method and matches(op.path, recorded.path):
                seen.add(op.name)
                break
    assert seen == {op.name for op in DEFAULT_OPERATIONS}


async def test_a_wrong_token_is_unauthorized(sandbox: Sandbox) -> None:
    transport = (
        SandboxTransport(sandbox.tenant, token=DEFAULT_TOKEN) if sandbox.kind == "in_process" else None
    )
    async with KlinkClient(sandbox.url, "kpt_wrong", transport=transport) as client:
        with pytest.raises(errors.Unauthorized) as caught:
            await client.list_tags()
    assert "kpt_wrong" not in str(caught.value)


# ---------------------------------------------------------------------------------------- faults


async def test_reads_succeed_through_thirty_percent_injected_5xx_and_429(sandbox: Sandbox) -> None:
    attempts: list[Attempt] = []
    fake = FakeTime()
    transport = (
        SandboxTransport(sandbox.tenant, token=DEFAULT_TOKEN) if sandbox.kind == "in_process" else None
    )
    contact_ids = [c["id"] for c in live_contacts(sandbox.tenant)][:200]
    sandbox.tenant.faults = FaultConfig(error_rate=0.15, rate_limit_rate=0.15, retry_after_s=0, seed=11)
    outcomes: list[str] = []
    async with KlinkClient(
        sandbox.url,
        DEFAULT_TOKEN,
        transport=transport,
        sleep=fake.sleep,
        on_attempt=attempts.append,
        max_attempts=3,  # the figures below are worked out for 3 attempts (the default is 5)
    ) as client:
        for contact_id in contact_ids:
            try:
                await client.get_contact(contact_id)
                outcomes.append("ok")
            except (errors.ServerError, errors.RateLimited) as exc:
                outcomes.append(type(exc).__name__)
    # One attempt fails with p = 0.3, so a call fails only if all 3 do: p = 0.027, i.e. 97.3 % succeed
    # on average; 95 % leaves room for the seeded sequence (about 2.3 standard deviations).
    assert len(outcomes) == 200
    assert outcomes.count("ok") / len(outcomes) >= 0.95
    assert max(a.attempt for a in attempts) <= 3
    assert client.stats.max_attempts_per_call <= 3
    assert len(sandbox.tenant.requests) == len(attempts) == client.stats.attempts
    assert client.stats.retries > 20  # the faults really happened
    assert 0.0 in fake.sleeps  # the 429s' "Retry-After: 0" was honoured


async def test_a_create_reset_after_it_was_applied_is_not_repeated(sandbox: Sandbox) -> None:
    tenant = sandbox.tenant
    before = set(tenant.contacts)
    tenant.faults = FaultConfig(reset_after_rate=1.0, only_methods=frozenset({"POST"}))
    with (
        anyio.fail_after(10),
        pytest.raises(errors.AmbiguousWriteError, match="may or may not have been applied"),
    ):
        await sandbox.client.create_contact({"name": "Exactly Once"})
    new = [tenant.contacts[i] for i in set(tenant.contacts) - before]
    assert [c["name"] for c in new] == ["Exactly Once"]
    assert [r.method for r in tenant.requests] == ["POST"]
    tenant.faults = FaultConfig()
    found = await sandbox.client.list_contacts(keyword="Exactly Once")
    assert found.total == 1  # "check before retrying" works


async def test_a_send_reset_after_it_was_applied_is_not_repeated(sandbox: Sandbox) -> None:
    tenant = sandbox.tenant
    contact_id = live_contacts(tenant)[0]["id"]
    count = len(tenant.messages)
    tenant.faults = FaultConfig(reset_after_rate=1.0, only_methods=frozenset({"POST"}))
    with anyio.fail_after(10), pytest.raises(errors.AmbiguousWriteError):
        await sandbox.client.send_message(contact_id=contact_id, message="once only")
    assert len(tenant.messages) == count + 1
    assert len(tenant.requests) == 1


async def test_an_idempotent_update_reset_after_it_was_applied_is_retried_safely(sandbox: Sandbox) -> None:
    tenant = sandbox.tenant
    ticket_id = next(iter(tenant.tickets))
    tenant.faults = FaultConfig(reset_after_rate=0.5, only_methods=frozenset({"PUT"}), seed=3)
    with anyio.fail_after(10):
        ticket = await sandbox.client.update_ticket_status(ticket_id, "pending")
    assert ticket.status == "pending"
    assert len(tenant.requests) >= 2  # at least one reset, then a repeat that did no harm


async def test_a_create_dropped_before_it_was_read_creates_nothing(sandbox: Sandbox) -> None:
    tenant = sandbox.tenant
    before = set(tenant.contacts)
    tenant.faults = FaultConfig(reset_before_rate=1.0, only_methods=frozenset({"POST"}))
    with anyio.fail_after(10), pytest.raises(errors.KlinkConnectionError) as caught:
        await sandbox.client.create_contact({"name": "Never"})
    assert set(tenant.contacts) == before
    if sandbox.kind == "in_process":
        # ConnectError proves nothing was sent: the SDK may try again, up to max_attempts.
        assert not isinstance(caught.value, errors.AmbiguousWriteError)
    else:
        # On a socket the request bytes had left before the drop: the client cannot tell, so it is
        # reported as ambiguous and not resent.
        assert isinstance(caught.value, errors.AmbiguousWriteError)


async def test_a_slow_body_times_out_a_read_within_its_attempts(sandbox: Sandbox) -> None:
    transport = (
        SandboxTransport(sandbox.tenant, token=DEFAULT_TOKEN) if sandbox.kind == "in_process" else None
    )
    sandbox.tenant.faults = FaultConfig(slow_body_s=30.0)
    fake = FakeTime()
    async with KlinkClient(
        sandbox.url, DEFAULT_TOKEN, transport=transport, read_timeout_s=0.05, max_attempts=2, sleep=fake.sleep
    ) as client:
        with anyio.fail_after(10), pytest.raises(errors.KlinkTimeout):
            await client.list_tags()
    assert client.stats.attempts == 2


async def test_a_body_trickling_in_cannot_outlive_the_call_deadline(sandbox: Sandbox) -> None:
    transport = (
        SandboxTransport(sandbox.tenant, token=DEFAULT_TOKEN) if sandbox.kind == "in_process" else None
    )
    sandbox.tenant.faults = FaultConfig(slow_body_s=30.0)
    # 1 s, not less: the second call below must fit in it on a busy CI machine.
    async with KlinkClient(sandbox.url, DEFAULT_TOKEN, transport=transport, call_deadline_s=1.0) as client:
        with anyio.fail_after(10), pytest.raises(errors.KlinkTimeout, match="call deadline"):
            await client.list_tags()
        sandbox.tenant.faults = FaultConfig()
        assert await client.list_tags()  # the abandoned connection did not poison the pool


# ---------------------------------------------------------------------------------------- input

BAD_CALLS: list[tuple[str, Callable[[KlinkClient], Awaitable[object]]]] = [
    *[
        (f"get_contact({bad!r})", lambda c, bad=bad: c.get_contact(bad))
        for bad in ("", " ", "../x", "a?b=c", "a/b", "%2e%2e")
    ],
    *[
        (f"update_ticket({bad!r})", lambda c, bad=bad: c.update_ticket(bad, {"title": "x"}))
        for bad in ("", "../x", "a/b")
    ],
    *[
        (f"delete_contact({bad!r})", lambda c, bad=bad: c.delete_contact(bad))
        for bad in (" ", "%2e%2e", "a?b=c")
    ],
    ("get_contact(42)", lambda c: c.get_contact(42)),  # type: ignore[arg-type]
    ("list_contacts(page='1')", lambda c: c.list_contacts(page="1")),  # type: ignore[arg-type]
    ("list_tickets(page_size=0)", lambda c: c.list_tickets(page_size=0)),
    ("create_contact(list)", lambda c: c.create_contact(["Ann"])),  # type: ignore[arg-type]
    ("send_message(empty)", lambda c: c.send_message(contact_id="c1", message="")),
    (
        "cx range end before start",
        lambda c: c.list_cx_logs(start=datetime(2026, 10, 2), end=datetime(2026, 10, 1), timezone="UTC"),
    ),
    (
        "cx unknown timezone",
        lambda c: c.list_cx_logs(
            start=datetime(2026, 10, 1), end=datetime(2026, 10, 2), timezone="Asia/Atlantis"
        ),
    ),
]


async def test_bad_input_gets_a_clear_error_and_sends_nothing(sandbox: Sandbox) -> None:
    # One tenant for all cases (each would otherwise pay for its own): every case must be refused
    # with a KlinkInputError naming a field, and the tenant must not have seen a single request.
    wrong: list[str] = []
    for case, call in BAD_CALLS:
        try:
            await call(sandbox.client)
        except errors.KlinkInputError as exc:
            if not exc.field or exc.field not in str(exc):
                wrong.append(f"{case}: unclear error {exc}")
        else:
            wrong.append(f"{case}: accepted")
    assert wrong == []
    assert sandbox.tenant.requests == []
