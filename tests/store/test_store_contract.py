"""The store contract, run against memory, SQLite and a real PostgreSQL.

"Replicas" are separate store objects on one database: for PostgreSQL each has its own pool and
LISTEN connection (as separate processes would); for SQLite each has its own connections to the
file; for memory they share one `MemoryDatabase`.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from klink_mcp.store import ApprovalExists, MemoryDatabase, MemoryStore, SQLiteStore, Store, StoreError
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.store import StoredEvent
from tests.webhooks._support import event_dict

pytestmark = pytest.mark.anyio

Replicas = Callable[..., Awaitable[Store]]
_ids = itertools.count(1)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def replicas(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Replicas]:
    """`await replicas()` opens one more store on the test's database (`retention=` optional)."""
    opened: list[Store] = []
    memory = MemoryDatabase()
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else ""

    async def make(retention: int = 10_000) -> Store:
        store: Store
        if backend == "memory":
            memory.retention = retention
            store = MemoryStore(memory)
        elif backend == "sqlite":
            store = SQLiteStore(tmp_path / "shared.sqlite3", retention=retention)
        else:
            from klink_mcp.store.postgres import PostgresStore

            store = PostgresStore(url, retention=retention, max_size=5)
        await store.open()
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.close()


def later(seconds: float = 60) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def new_id() -> str:
    return f"appr-{next(_ids)}"


async def race(n: int, stores: list[Store], call: Callable[[Store, int], Awaitable[Any]]) -> list[Any]:
    """Run `call` n times at once, spread over `stores`; results in call order."""
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        results[i] = await call(stores[i % len(stores)], i)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
    return results


# -- nonces ---------------------------------------------------------------------------------


async def test_fifty_concurrent_consumers_of_one_nonce_on_two_replicas_have_exactly_one_winner(
    replicas: Replicas,
) -> None:
    stores = [await replicas(), await replicas()]
    expires = later()
    results = await race(50, stores, lambda s, _: s.consume_nonce("nonce-1", expires))
    assert results.count(True) == 1
    assert results.count(False) == 49
    # a replay later, on either replica, is refused; another nonce is still free
    assert not await stores[0].consume_nonce("nonce-1", expires)
    assert not await stores[1].consume_nonce("nonce-1", expires)
    assert await stores[1].consume_nonce("nonce-2", expires)


async def test_an_expired_or_empty_nonce_is_refused(replicas: Replicas) -> None:
    store = await replicas()
    assert not await store.consume_nonce("old", datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ValueError, match="empty"):
        await store.consume_nonce("", later())


# -- approvals ------------------------------------------------------------------------------


async def test_an_approval_is_decided_once_and_consumed_once(replicas: Replicas) -> None:
    first, second = await replicas(), await replicas()
    approval = new_id()
    body = {"tool": "delete_contact", "arguments": {"id": "c-1"}, "text": "Zoë ✓"}
    created = await first.create_approval(approval, body, later())
    assert created.state == "pending"
    assert created.body == body

    seen = await second.get_approval(approval)
    assert seen is not None and seen.state == "pending" and seen.body == body

    person = {"sub": "agent-7", "name": "Ana"}
    decided = await second.decide_approval(approval, True, person, {"note": "ok"})
    assert decided is not None
    assert decided.state == "approved"
    assert decided.decided_by == person
    assert decided.extra == {"note": "ok"}
    assert decided.decided_at is not None
    # a second decision (either way, any replica) loses
    assert await first.decide_approval(approval, False, {"sub": "other"}) is None
    assert await second.decide_approval(approval, True, person) is None

    consumed = await first.consume_approval(approval)
    assert consumed is not None and consumed.state == "consumed" and consumed.consumed_at is not None
    assert consumed.decided_by == person
    assert await second.consume_approval(approval) is None
    assert await first.consume_approval(approval) is None
    final = await second.get_approval(approval)
    assert final is not None and final.state == "consumed"


async def test_a_declined_or_pending_approval_cannot_be_consumed(replicas: Replicas) -> None:
    store = await replicas()
    pending, declined = new_id(), new_id()
    await store.create_approval(pending, {"n": 1}, later())
    await store.create_approval(declined, {"n": 2}, later())
    assert await store.consume_approval(pending) is None
    result = await store.decide_approval(declined, False, {"sub": "ana"})
    assert result is not None and result.state == "declined"
    assert await store.consume_approval(declined) is None
    assert await store.consume_approval("no-such-approval") is None
    assert await store.decide_approval("no-such-approval", True, {"sub": "ana"}) is None
    assert await store.get_approval("no-such-approval") is None


async def test_fifty_concurrent_consumers_of_one_approval_have_exactly_one_winner(replicas: Replicas) -> None:
    stores = [await replicas(), await replicas(), await replicas()]
    approval = new_id()
    await stores[0].create_approval(approval, {"tool": "send_message"}, later())
    assert await stores[1].decide_approval(approval, True, {"sub": "ana"}) is not None
    results = await race(50, stores, lambda s, _: s.consume_approval(approval))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].state == "consumed"


async def test_concurrent_deciders_have_exactly_one_winner_and_the_record_says_which(
    replicas: Replicas,
) -> None:
    stores = [await replicas(), await replicas()]
    approval = new_id()
    await stores[0].create_approval(approval, {}, later())
    results = await race(30, stores, lambda s, i: s.decide_approval(approval, i % 2 == 0, {"sub": f"p{i}"}))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    final = await stores[1].get_approval(approval)
    assert final is not None
    assert (final.state, final.decided_by) == (winners[0].state, winners[0].decided_by)


async def test_an_approval_id_is_created_once(replicas: Replicas) -> None:
    first, second = await replicas(), await replicas()
    approval = new_id()
    await first.create_approval(approval, {"n": 1}, later())
    with pytest.raises(ApprovalExists):
        await second.create_approval(approval, {"n": 2}, later())
    kept = await first.get_approval(approval)
    assert kept is not None and kept.body == {"n": 1}
    with pytest.raises(ValueError, match="JSON"):
        await first.create_approval(new_id(), {"bad": object()}, later())


async def test_past_its_expiry_an_approval_reads_expired_and_can_be_neither_decided_nor_consumed(
    replicas: Replicas,
) -> None:
    store, other = await replicas(), await replicas()
    stale = new_id()
    await store.create_approval(stale, {}, datetime.now(UTC) - timedelta(seconds=1))
    record = await other.get_approval(stale)
    assert record is not None and record.state == "expired"
    assert await other.decide_approval(stale, True, {"sub": "ana"}) is None

    # approved in time, consumed too late: two records with one expiry; waiting on the pending
    # one returns when that expiry has passed (no sleep in the test).
    expires = datetime.now(UTC) + timedelta(seconds=0.4)
    approved, pending = new_id(), new_id()
    await store.create_approval(approved, {}, expires)
    await store.create_approval(pending, {}, expires)
    assert await other.decide_approval(approved, True, {"sub": "ana"}) is not None
    with anyio.fail_after(10):
        waited = await other.wait_approval(pending, timeout_s=30)
    assert waited is not None and waited.state == "expired"
    assert await store.consume_approval(approved) is None
    late = await store.get_approval(approved)
    assert late is not None and late.state == "expired"


async def test_a_waiter_on_one_replica_hears_a_decision_made_on_another(replicas: Replicas) -> None:
    waiter_side, decider_side = await replicas(), await replicas()
    approval = new_id()
    await waiter_side.create_approval(approval, {}, later())
    got: list[Any] = []

    async def wait() -> None:
        got.append(await waiter_side.wait_approval(approval, timeout_s=20))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert await decider_side.decide_approval(approval, False, {"sub": "lead"}) is not None
    [record] = got
    assert record is not None and record.state == "declined" and record.decided_by == {"sub": "lead"}


async def test_waiting_on_an_undecided_approval_returns_it_pending_at_the_timeout(replicas: Replicas) -> None:
    store = await replicas()
    approval = new_id()
    await store.create_approval(approval, {}, later())
    with anyio.fail_after(10):
        record = await store.wait_approval(approval, timeout_s=0.05)
        unknown = await store.wait_approval("no-such-approval", timeout_s=5)
    assert record is not None and record.state == "pending"
    assert unknown is None


# -- webhook events -------------------------------------------------------------------------


async def test_a_redelivery_is_deduplicated_and_returns_the_first_row(replicas: Replicas) -> None:
    first, second = await replicas(), await replicas()
    stored, row = await first.events.add(event_dict(n=1))
    again, same = await second.events.add(event_dict(n=1))
    assert (stored, again) == (True, False)
    assert same == row
    assert await second.events.count() == 1


async def test_concurrent_redeliveries_on_several_replicas_store_one_row(replicas: Replicas) -> None:
    stores = [await replicas(), await replicas()]
    results = await race(20, stores, lambda s, _: s.events.add(event_dict(n=9)))
    assert sum(1 for stored, _ in results if stored) == 1
    assert len({row.id for _, row in results}) == 1
    assert await stores[0].events.count() == 1


async def test_events_list_newest_first_with_type_contact_and_since_filters(replicas: Replicas) -> None:
    store = await replicas()
    rows: list[StoredEvent] = []
    for kind, n, day in [
        ("message.inbound", 1, 1),
        ("message.inbound", 2, 2),
        ("contact.create", 1, 3),
        ("message.outbound", 1, 4),
    ]:
        _, row = await store.events.add(event_dict(kind, n=n, timestamp=f"2026-01-0{day}T00:00:00Z"))
        rows.append(row)
    ids = [r.id for r in rows]
    assert ids == sorted(ids)
    events = store.events
    assert [e.id for e in await events.recent()] == ids[::-1]
    assert [e.id for e in await events.recent(event_type="message.inbound")] == [ids[1], ids[0]]
    assert [e.id for e in await events.recent(contact_id="contact-1")] == [ids[3], ids[2], ids[0]]
    since = datetime(2026, 1, 2, tzinfo=UTC)
    assert [e.id for e in await events.recent(since=since)] == [ids[3], ids[2], ids[1]]
    assert [e.id for e in await events.recent(since=datetime(2026, 1, 2, 7, 0))] == [ids[3], ids[2]]
    assert [e.id for e in await events.recent(limit=2, offset=1)] == [ids[2], ids[1]]
    assert await events.count(event_type="message.inbound", since=since) == 1
    assert await events.count(contact_id="contact-1") == 3
    assert [e.id for e in await events.after(ids[1])] == ids[2:]
    assert await events.max_id() == ids[-1]
    [newest] = await events.recent(limit=1)
    assert newest == rows[-1]
    assert newest.data == rows[-1].data and newest.received_at.tzinfo is not None
    with pytest.raises(ValueError):
        await events.recent(limit=0)


async def test_only_the_retention_window_is_kept_and_ids_keep_growing(replicas: Replicas) -> None:
    store = await replicas(retention=10)
    ids = [(await store.events.add(event_dict(n=n)))[1].id for n in range(30)]
    assert await store.events.count() == 10
    assert [e.id for e in await store.events.recent(limit=100)] == ids[-10:][::-1]
    _, row = await store.events.add(event_dict(n=100))
    assert row.id > ids[-1]


# -- audit ----------------------------------------------------------------------------------


async def test_audit_records_from_all_replicas_read_back_newest_first(replicas: Replicas) -> None:
    first, second = await replicas(), await replicas()
    a = await first.append_audit({"tool": "delete_contact", "decision": "executed", "by": {"sub": "ana"}})
    b = await second.append_audit({"tool": "send_message", "decision": "declined"})
    c = await first.append_audit({"tool": "list_tags", "decision": "not_guarded"})
    assert a.id < b.id < c.id
    recent = await second.recent_audit(limit=2)
    assert [r.record["tool"] for r in recent] == ["list_tags", "send_message"]
    everything = await first.recent_audit()
    assert [r.id for r in everything] == [c.id, b.id, a.id]
    assert everything[2].record == {"tool": "delete_contact", "decision": "executed", "by": {"sub": "ana"}}
    assert everything[2].at.tzinfo is not None


# -- fan-out --------------------------------------------------------------------------------


async def test_a_notification_published_by_one_replica_reaches_subscribers_of_both(
    replicas: Replicas,
) -> None:
    publisher, listener = await replicas(), await replicas()
    with anyio.fail_after(10):
        async with (
            listener.subscribe("tools") as tools,
            listener.subscribe("forms") as forms,
            publisher.subscribe("tools") as own,
        ):
            await publisher.publish("tools", {"changed": ["send_message"]})
            await publisher.publish("forms", {"entity": "contact"})
            note = await tools.receive()
            assert (note.topic, note.payload, note.origin) == (
                "tools",
                {"changed": ["send_message"]},
                publisher.instance_id,
            )
            assert (await forms.receive()).payload == {"entity": "contact"}
            assert (await own.receive()).origin == publisher.instance_id


async def test_unknown_topics_and_oversized_payloads_are_refused(replicas: Replicas) -> None:
    store = await replicas()
    with pytest.raises(ValueError, match="topic"):
        await store.publish("nope", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bytes"):
        await store.publish("events", {"blob": "x" * 9000})


async def test_an_event_ingested_on_one_replica_reaches_a_subscriber_of_another(replicas: Replicas) -> None:
    receiving, serving = await replicas(), await replicas()
    receiver_hub = EventHub(receiving.events, fanout=receiving)
    server_hub = EventHub(serving.events, fanout=serving)
    got: list[StoredEvent] = []
    arrived = anyio.Event()

    async def on_event(row: StoredEvent) -> None:
        got.append(row)
        arrived.set()

    server_hub.subscribe(on_event)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            if serving.shares_across_processes:
                tg.start_soon(server_hub.follow)
                await anyio.wait_all_tasks_blocked()
            _, row = await receiver_hub.ingest(event_dict(n=42))
            if not serving.shares_across_processes:
                # Embedded stores: another process's hub learns by polling the cursor.
                await server_hub.catch_up()  # sets the cursor at the newest row
                assert got == []
                _, row = await receiver_hub.ingest(event_dict(n=43))
                await server_hub.catch_up()
            await arrived.wait()
            tg.cancel_scope.cancel()
    assert [r.id for r in got] == [row.id]
    assert got[0].data == row.data


async def test_a_closed_store_refuses_calls(replicas: Replicas) -> None:
    store = await replicas()
    await store.close()
    with pytest.raises(StoreError):
        await store.consume_nonce("n", later())
    with pytest.raises(StoreError):
        await store.get_approval("x")


async def test_many_writers_on_two_replicas_store_each_event_exactly_once(replicas: Replicas) -> None:
    stores = [await replicas(), await replicas()]
    # 300 adds of 100 distinct events: every event delivered three times, to both replicas at once.
    results = await race(300, stores, lambda s, i: s.events.add(event_dict(n=i % 100)))
    firsts = [row for stored, row in results if stored]
    assert len(firsts) == 100
    assert len({row.id for row in firsts}) == 100
    by_contact = {row.contact_id: row.id for _, row in results if row.contact_id is not None}
    assert len(by_contact) == 100
    for _, row in results:
        assert by_contact[row.contact_id] == row.id  # every redelivery got the first row's id
    assert await stores[1].events.count() == 100


async def test_purge_drops_spent_nonces_and_long_expired_approvals_only(replicas: Replicas) -> None:
    store = await replicas()
    assert await store.consume_nonce("live", later())
    await store.create_approval("old", {}, datetime.now(UTC) - timedelta(hours=2))
    await store.create_approval("recent", {}, datetime.now(UTC) - timedelta(seconds=1))
    await store.create_approval("open", {}, later())
    assert await store.purge(keep_s=3600) == 1
    assert await store.get_approval("old") is None
    recent = await store.get_approval("recent")
    assert recent is not None and recent.state == "expired"
    assert await store.get_approval("open") is not None
    assert not await store.consume_nonce("live", later())  # still remembered: not expired
