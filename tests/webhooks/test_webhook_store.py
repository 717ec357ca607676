"""The SQLite event store: durable, deduplicated, bounded, shared safely by threads and processes."""

from __future__ import annotations

import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from klink_mcp.config import load_settings
from klink_mcp.webhooks.events import parse_event
from klink_mcp.webhooks.store import (
    MEMORY,
    EventStore,
    StoreError,
    default_events_db_path,
    events_db_path,
)

from ._support import event_dict, wait_until

pytestmark = pytest.mark.anyio


async def test_a_new_event_is_stored_and_a_redelivery_returns_the_first_row(store: EventStore) -> None:
    stored, first = await store.add(event_dict(n=1))
    again, second = await store.add(event_dict(n=1))
    assert (stored, again) == (True, False)
    assert second == first
    assert await store.count() == 1


async def test_redeliveries_do_not_burn_ids(store: EventStore) -> None:
    await store.add(event_dict(n=1))
    await store.add(event_dict(n=1))
    _, row = await store.add(event_dict(n=2))
    assert row.id == 2


async def test_recent_lists_newest_first_with_type_contact_and_since_filters(store: EventStore) -> None:
    await store.add(event_dict("message.inbound", n=1, timestamp="2026-01-01T00:00:00Z"))
    await store.add(event_dict("message.inbound", n=2, timestamp="2026-01-02T00:00:00Z"))
    await store.add(event_dict("contact.create", n=1, timestamp="2026-01-03T00:00:00Z"))
    await store.add(event_dict("message.outbound", n=1, timestamp="2026-01-04T00:00:00Z"))

    assert [e.id for e in await store.recent()] == [4, 3, 2, 1]
    assert [e.id for e in await store.recent(event_type="message.inbound")] == [2, 1]
    assert [e.id for e in await store.recent(contact_id="contact-1")] == [4, 3, 1]
    since = datetime(2026, 1, 2, tzinfo=UTC)
    assert [e.id for e in await store.recent(since=since)] == [4, 3, 2]
    assert [e.id for e in await store.recent(since=datetime(2026, 1, 2, 7, 0))] == [4, 3]  # naive = UTC
    assert [e.id for e in await store.recent(limit=2, offset=1)] == [3, 2]
    assert await store.count(event_type="message.inbound", since=since) == 1


async def test_stored_rows_carry_the_derived_fields_and_the_data(store: EventStore) -> None:
    _, row = await store.add(event_dict("room.solved", n=5))
    assert row.event == "room.solved"
    assert row.contact_id == "contact-5"
    assert row.data["ticketNumber"] == 1005
    assert row.received_at.tzinfo is UTC
    assert row.to_dict()["timestamp"] == "2026-01-09T03:42:38.000000Z"
    [listed] = await store.recent()
    assert listed == row


async def test_events_survive_closing_and_reopening_the_store(db_path: Path) -> None:
    async with await EventStore.open(db_path) as first:
        await first.add(event_dict(n=1))
        await first.add(event_dict(n=2))
    async with await EventStore.open(db_path) as reopened:
        assert await reopened.count() == 2
        stored, _ = await reopened.add(event_dict(n=1))
        assert not stored  # dedupe survives the restart too
        _, row = await reopened.add(event_dict(n=3))
        assert row.id == 3


async def test_retention_keeps_only_the_newest_rows_and_ids_are_never_reused(tmp_path: Path) -> None:
    async with await EventStore.open(tmp_path / "e.sqlite3", retention=10) as store:
        for n in range(25):
            await store.add(event_dict(n=n))
        assert await store.count() == 10
        assert [e.id for e in await store.recent(limit=100)] == list(range(25, 15, -1))
        _, row = await store.add(event_dict(n=99))
        assert row.id == 26


async def test_reopening_with_a_smaller_retention_prunes_at_once(db_path: Path) -> None:
    async with await EventStore.open(db_path) as store:
        for n in range(30):
            await store.add(event_dict(n=n))
    async with await EventStore.open(db_path, retention=12) as store:
        assert await store.count() == 12


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
async def test_the_database_file_and_its_new_directory_are_private(db_path: Path, store: EventStore) -> None:
    await store.add(event_dict())
    assert (await anyio.Path(db_path).stat()).st_mode & 0o777 == 0o600
    assert (await anyio.Path(db_path.parent).stat()).st_mode & 0o777 == 0o700


async def test_the_database_uses_wal_mode_and_full_sync(db_path: Path, store: EventStore) -> None:
    await store.add(event_dict())
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_memory_store_needs_no_file() -> None:
    async with await EventStore.open(MEMORY) as store:
        await store.add(event_dict(n=1))
        assert [e.event for e in await store.recent()] == ["message.inbound"]
        assert store.path == ":memory:"


async def test_the_store_opens_lazily_on_first_use(db_path: Path) -> None:
    store = EventStore(db_path)
    assert not await anyio.Path(db_path).exists()
    await store.add(event_dict())
    assert await anyio.Path(db_path).exists()
    await store.close()


async def test_a_closed_store_refuses_calls(store: EventStore) -> None:
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError):
        await store.add(event_dict())
    with pytest.raises(StoreError):
        await store.recent()


async def test_an_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        await EventStore.open(blocker / "events.sqlite3")


async def test_a_database_from_a_newer_version_is_refused(db_path: Path) -> None:
    async with await EventStore.open(db_path):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        await EventStore.open(db_path)


async def test_after_and_max_id_give_a_cursor_over_new_events(store: EventStore) -> None:
    assert await store.max_id() == 0
    for n in range(5):
        await store.add(event_dict(n=n))
    assert await store.max_id() == 5
    assert [e.id for e in await store.after(2)] == [3, 4, 5]
    assert [e.id for e in await store.after(2, limit=1)] == [3]


async def test_bad_arguments_are_refused(store: EventStore) -> None:
    with pytest.raises(ValueError):
        await store.recent(limit=0)
    with pytest.raises(ValueError):
        EventStore(MEMORY, retention=0)


def test_default_path_lives_in_the_user_data_dir(tmp_path: Path) -> None:
    if sys.platform not in ("win32", "darwin"):
        path = default_events_db_path({"XDG_DATA_HOME": str(tmp_path)})
        assert path == tmp_path / "klink-mcp" / "events.sqlite3"
    assert default_events_db_path().name == "events.sqlite3"
    assert events_db_path(load_settings(env={}, events_db=tmp_path / "x.db")) == str(tmp_path / "x.db")


def test_many_threads_with_their_own_stores_lose_and_duplicate_nothing(db_path: Path) -> None:
    threads_n, per_thread = 8, 40

    async def writer(worker: int) -> None:
        async with EventStore(db_path) as store:
            for n in range(per_thread):
                await store.add(event_dict(n=worker * 1000 + n))
                # every thread also redelivers events of its neighbour: they must be recognised
                await store.add(event_dict(n=((worker + 1) % threads_n) * 1000 + n))

    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            anyio.run(writer, worker)
        except BaseException as exc:  # surface failures in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors

    async def check() -> None:
        async with EventStore(db_path) as store:
            assert await store.count() == threads_n * per_thread
            ids = sorted(e.id for e in await store.recent(limit=10_000))
            assert ids == list(range(1, threads_n * per_thread + 1))

    anyio.run(check)


_WRITER = """
import sys, anyio
from klink_mcp.webhooks.store import EventStore

async def main(path, worker, count):
    async with EventStore(path) as store:
        for n in range(count):
            for w in (worker, (worker + 1) % 3):  # own events and a neighbour's (duplicates)
                await store.add({"event": "contact.update", "timestamp": "2026-01-09T00:00:00Z",
                                 "data": {"id": f"c-{w}-{n}"}})

anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


@pytest.mark.slow
async def test_several_processes_can_write_one_database_concurrently(db_path: Path) -> None:
    count = 60
    codes: list[int] = []

    async def writer(worker: int) -> None:
        result = await anyio.run_process(
            [sys.executable, "-c", _WRITER, str(db_path), str(worker), str(count)], check=False
        )
        codes.append(result.returncode)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for worker in range(3):
                tg.start_soon(writer, worker)
    assert codes == [0, 0, 0]
    async with EventStore(db_path) as store:
        assert await store.count() == 3 * count
        contacts = {e.contact_id for e in await store.recent(limit=1000)}
        assert contacts == {f"c-{w}-{n}" for w in range(3) for n in range(count)}


async def test_a_parsed_event_and_its_mapping_are_the_same_event(store: EventStore) -> None:
    raw = event_dict(n=3)
    await store.add(parse_event(raw))
    stored, _ = await store.add(raw)
    assert not stored


async def test_concurrent_adds_are_group_committed_and_each_caller_gets_its_own_answer(
    store: EventStore,
) -> None:
    answers: dict[tuple[int, int], tuple[bool, int]] = {}

    async def add(n: int, copy: int) -> None:
        stored, row = await store.add(event_dict(n=n))
        answers[(n, copy)] = (stored, row.id)

    async with anyio.create_task_group() as tg:
        for n in range(60):
            for copy in range(2):  # each event twice, concurrently: the pair may land in one batch
                tg.start_soon(add, n, copy)
    for n in range(60):
        first, second = answers[(n, 0)], answers[(n, 1)]
        assert sorted([first[0], second[0]]) == [False, True]
        assert first[1] == second[1]
    assert await store.count() == 60
    assert sorted({row_id for _, row_id in answers.values()}) == list(range(1, 61))


async def test_a_failing_batch_fails_every_caller_and_stores_nothing(store: EventStore) -> None:
    await store.close()
    failures: list[BaseException] = []

    async def add(n: int) -> None:
        try:
            await store.add(event_dict(n=n))
        except StoreError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(add, n)
    assert len(failures) == 10


async def test_a_caller_whose_event_is_not_in_the_first_batch_still_waits_for_its_commit(
    tmp_path: Path,
) -> None:
    async with await EventStore.open(tmp_path / "e.sqlite3") as store:
        store._max_batch = 7
        results: dict[int, bool] = {}

        async def add(n: int) -> None:
            results[n] = (await store.add(event_dict(n=n)))[0]

        # Queue 20 callers behind the flush lock, then reorder them as a re-queued batch would: the
        # next lock holder's event is then not in the first batch it writes.
        async with anyio.create_task_group() as tg, store._flush_lock:
            for n in range(20):
                tg.start_soon(add, n)
            await wait_until(lambda: len(store._pending) == 20)
            store._pending.reverse()
        assert results == dict.fromkeys(range(20), True)
        assert await store.count() == 20


def _open_together(path: Path, threads_n: int) -> list[BaseException]:
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def run() -> None:
        async def open_and_close() -> None:
            barrier.wait()
            store = await EventStore.open(path)
            await store.close()

        try:
            anyio.run(open_and_close)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_many_threads_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    # Switching a new database to WAL needs an exclusive lock that SQLite's busy handler does not
    # always wait for; without a retry about one trial in eight failed with "database is locked".
    for trial in range(20):
        errors = _open_together(tmp_path / f"fresh-{trial}.sqlite3", 8)
        assert errors == [], f"trial {trial}: {errors!r}"
