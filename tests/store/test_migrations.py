"""Migrations: applied once however many replicas start at once; a newer schema is refused."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from klink_mcp.store import SQLiteStore, StoreError
from klink_mcp.store.migrations import (
    POSTGRES_MIGRATIONS,
    SQLITE_MIGRATIONS,
    Migration,
    migrate_postgres,
    migrate_sqlite,
)

pytestmark = pytest.mark.anyio

# A migration that is NOT idempotent: applied twice, it would insert two rows (or fail on the
# CREATE). Each starter also sleeps inside its migration so the starters really overlap.
_PROBE = (
    Migration(1, "probe table", ("CREATE TABLE probe (n INTEGER NOT NULL)",)),
    Migration(2, "slow step", ("SELECT pg_sleep(0.2)", "INSERT INTO probe VALUES (1)")),
    Migration(3, "another row", ("INSERT INTO probe VALUES (2)",)),
)


async def test_concurrent_migrators_on_a_fresh_postgresql_apply_each_migration_exactly_once(
    postgres_url: str,
) -> None:
    import psycopg

    applied: list[list[int]] = []

    async def starter() -> None:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            applied.append(await migrate_postgres(conn, _PROBE))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(starter)

    assert len(applied) == 8
    assert sorted(v for run in applied for v in run) == [1, 2, 3]  # one starter did all the work
    assert [run for run in applied if run] == [[1, 2, 3]]
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        rows = await (await conn.execute("SELECT n FROM probe ORDER BY n")).fetchall()
        versions = await (
            await conn.execute("SELECT version FROM klink_schema_migrations ORDER BY version")
        ).fetchall()
    assert rows == [(1,), (2,)]
    assert versions == [(1,), (2,), (3,)]


async def test_replicas_starting_together_on_postgresql_all_open_and_the_schema_is_applied_once(
    postgres_url: str,
) -> None:
    import psycopg

    from klink_mcp.store.postgres import PostgresStore

    stores = [PostgresStore(postgres_url, max_size=2) for _ in range(6)]
    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for store in stores:
                    tg.start_soon(store.open)
        for store in stores:
            await store.ping()
    finally:
        for store in stores:
            await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        versions = await (await conn.execute("SELECT version FROM klink_schema_migrations")).fetchall()
    assert sorted(v for (v,) in versions) == [m.version for m in POSTGRES_MIGRATIONS]


async def test_a_postgresql_schema_newer_than_this_program_is_refused(postgres_url: str) -> None:
    import psycopg

    from klink_mcp.store.postgres import PostgresStore

    async with PostgresStore(postgres_url):
        pass
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO klink_schema_migrations VALUES (999, 'future', now()::text)")
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreError, match="newer release"):
        await store.open()
    await store.close()


async def test_an_unreachable_postgresql_fails_fast_without_showing_the_password() -> None:
    from klink_mcp.store.postgres import PostgresStore

    # Port 1 on loopback: nothing listens there.
    store = PostgresStore("postgresql://agent:s3cr3t-pw@127.0.0.1:1/klink", connect_timeout_s=2)
    with anyio.fail_after(20), pytest.raises(StoreError) as caught:
        await store.open()
    assert "s3cr3t-pw" not in str(caught.value)
    assert "s3cr3t-pw" not in repr(store)
    assert "agent:***@127.0.0.1:1" in str(caught.value)


def test_concurrent_sqlite_migrators_apply_each_migration_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    applied: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def starter() -> None:
        try:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            try:
                barrier.wait()
                applied.append(migrate_sqlite(conn))
            finally:
                conn.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=starter) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(v for run in applied for v in run) == [m.version for m in SQLITE_MIGRATIONS]
    conn = sqlite3.connect(path)
    try:
        versions = [
            v for (v,) in conn.execute("SELECT version FROM klink_schema_migrations ORDER BY version")
        ]
    finally:
        conn.close()
    assert versions == [m.version for m in SQLITE_MIGRATIONS]


async def test_a_sqlite_store_opens_on_todays_events_file_and_keeps_its_events(tmp_path: Path) -> None:
    from klink_mcp.webhooks.store import EventStore
    from tests.webhooks._support import event_dict

    path = tmp_path / "events.sqlite3"
    async with await EventStore.open(path) as old:  # a file written by the previous release
        await old.add(event_dict(n=1))
    async with SQLiteStore(path) as store:
        assert await store.events.count() == 1
        assert await store.consume_nonce("n-1", datetime.now(UTC) + timedelta(minutes=5))
    conn = sqlite3.connect(path)
    try:
        conn.execute("INSERT INTO klink_schema_migrations VALUES (99, 'future', 'now')")
        conn.commit()
    finally:
        conn.close()
    newer = SQLiteStore(path)
    with pytest.raises(StoreError, match="newer release"):
        await newer.open()
    await newer.close()
