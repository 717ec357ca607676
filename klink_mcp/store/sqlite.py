"""The SQLite store: the embedded default, in today's events file (one machine, any number of processes).

Webhook events are the existing `webhooks.store.EventStore` (its table, its `user_version`);
nonces, approvals and audit are tables in the same file, created by versioned migrations
(`migrations.SQLITE_MIGRATIONS`). Single use is decided by SQLite itself:
`INSERT ... ON CONFLICT DO NOTHING` and `UPDATE ... WHERE state = ... RETURNING`, each one
statement, so processes sharing the file cannot both win.

Fan-out is in-process: stores opened on the same file in one process share one bus. Another
process on the same file is not notified (events reach it through `EventHub.follow()` polling;
`wait_approval` re-reads every `approval_poll_s`). Every SQLite call runs in a worker thread.
This module must not log record bodies or import `mcp`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

from klink_mcp.store.base import (
    ApprovalExists,
    ApprovalRecord,
    AuditRecord,
    EventLog,
    LocalBus,
    Notification,
    Store,
    Subscription,
    Topic,
    as_utc,
    check_payload,
    utcnow,
)
from klink_mcp.store.migrations import migrate_sqlite
from klink_mcp.webhooks.events import format_timestamp
from klink_mcp.webhooks.store import DEFAULT_RETENTION, MEMORY, EventStore, StoreError

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")
_APPROVAL_COLUMNS: Final = (
    "id, state, body, created_at, expires_at, decided_at, decided_by, extra, consumed_at"
)
_NONCE_PURGE_EVERY: Final = 500

# One bus per database file in this process, alive while a store on that file is.
_BUSES: weakref.WeakValueDictionary[str, LocalBus] = weakref.WeakValueDictionary()
_BUSES_LOCK = threading.Lock()


def _bus_for(path: str) -> LocalBus:
    key = os.path.realpath(path)
    with _BUSES_LOCK:
        bus = _BUSES.get(key)
        if bus is None:
            bus = LocalBus()
            _BUSES[key] = bus
        return bus


def _text(value: datetime) -> str:
    return format_timestamp(value)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def _dumps(value: Mapping[str, Any] | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


def _approval(row: tuple[Any, ...], now: datetime) -> ApprovalRecord:
    id_, state, body, created_at, expires_at, decided_at, decided_by, extra, consumed_at = row
    expires = _time(expires_at)
    assert expires is not None
    if state in ("pending", "approved") and expires <= now:
        state = "expired"
    created = _time(created_at)
    assert created is not None
    return ApprovalRecord(
        id=id_,
        state=state,
        body=json.loads(body),
        created_at=created,
        expires_at=expires,
        decided_at=_time(decided_at),
        decided_by=None if decided_by is None else json.loads(decided_by),
        extra=None if extra is None else json.loads(extra),
        consumed_at=_time(consumed_at),
    )


class _SQLiteState:
    """Synchronous core for nonces, approvals and audit: one connection, one lock. Runs in threads."""

    def __init__(self, path: str, busy_timeout_s: float) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA synchronous = FULL")
            migrate_sqlite(self._conn)
        except BaseException:
            self._conn.close()
            raise
        self.closed = False
        self._nonces_since_purge = 0

    def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self.closed:
                raise StoreError("the store is closed")
            return fn(self._conn)

    def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """`fn` inside BEGIN IMMEDIATE ... COMMIT (one writer across processes)."""

        def in_transaction(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self.run(in_transaction)

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._conn.close()


class SQLiteStore(Store):
    """`Store` in one SQLite file (the events database), shared safely by threads and processes."""

    kind = "sqlite"
    approval_poll_s = 0.25  # another process on the file decides without reaching our bus

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: int = DEFAULT_RETENTION,
        busy_timeout_s: float = 10.0,
    ) -> None:
        """Raises:
        ValueError: `path` is `":memory:"` (use `MemoryStore`), `retention` < 1 or `busy_timeout_s` <= 0.
        """
        super().__init__()
        self.path = os.fspath(path)
        if self.path == MEMORY:
            raise ValueError("SQLiteStore needs a file; use MemoryStore for an in-memory store")
        self._events = EventStore(self.path, retention=retention, busy_timeout_s=busy_timeout_s)
        self._busy_timeout_s = busy_timeout_s
        self._state: _SQLiteState | None = None
        self._open_lock = anyio.Lock()
        self._closed = False
        self._bus = _bus_for(self.path)
        self._limiter = anyio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def open(self) -> None:
        await self._ready()

    async def _ready(self) -> _SQLiteState:
        if self._state is not None:
            return self._state
        async with self._open_lock:
            if self._closed:
                raise StoreError("the store is closed")
            if self._state is None:
                await self._events.connect()  # creates the file (0600), WAL mode, events schema
                try:
                    self._state = await anyio.to_thread.run_sync(
                        _SQLiteState, self.path, self._busy_timeout_s
                    )
                except (sqlite3.Error, OSError) as exc:
                    raise StoreError(f"cannot open the store database: {exc}") from exc
            return self._state

    async def _call(self, fn: Callable[[_SQLiteState], _T]) -> _T:
        state = await self._ready()
        try:
            return await anyio.to_thread.run_sync(fn, state, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise StoreError(f"store database error: {exc}") from exc

    async def close(self) -> None:
        async with self._open_lock:
            self._closed = True
            state, self._state = self._state, None
        await self._events.close()
        if state is not None:
            await anyio.to_thread.run_sync(state.close)

    async def ping(self) -> None:
        await self._call(lambda s: s.run(lambda c: c.execute("SELECT 1").fetchone()))

    @property
    def events(self) -> EventLog:
        return self._events

    # -- nonces ------------------------------------------------------------------------------

    async def consume_nonce(self, nonce: str, expires_at: datetime) -> bool:
        if not nonce:
            raise ValueError("nonce must not be empty")
        now = utcnow()
        expires_at = as_utc(expires_at)
        if expires_at <= now:
            return False

        def consume(state: _SQLiteState) -> bool:
            def insert(conn: sqlite3.Connection) -> bool:
                cur = conn.execute(
                    "INSERT INTO klink_nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
                    (nonce, _text(expires_at)),
                )
                won = cur.rowcount == 1
                state._nonces_since_purge += 1
                if state._nonces_since_purge >= _NONCE_PURGE_EVERY:
                    state._nonces_since_purge = 0
                    conn.execute("DELETE FROM klink_nonces WHERE expires_at < ?", (_text(now),))
                return won

            return state.write(insert)

        return await self._call(consume)

    # -- approvals ---------------------------------------------------------------------------

    async def create_approval(self, id: str, body: dict[str, Any], expires_at: datetime) -> ApprovalRecord:
        if not id:
            raise ValueError("approval id must not be empty")
        now = utcnow()
        text = _dumps(body, "approval body")

        def create(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(
                "INSERT INTO klink_approvals (id, state, body, created_at, expires_at)"  # noqa: S608 - constant SQL, values bound
                " VALUES (?, 'pending', ?, ?, ?)"
                f" ON CONFLICT (id) DO NOTHING RETURNING {_APPROVAL_COLUMNS}",
                (id, text, _text(now), _text(as_utc(expires_at))),
            ).fetchone()
            return row

        row = await self._call(lambda s: s.write(create))
        if row is None:
            raise ApprovalExists(f"approval {id!r} already exists")
        return _approval(row, now)

    async def get_approval(self, id: str) -> ApprovalRecord | None:
        def get(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM klink_approvals WHERE id = ?",  # noqa: S608 - constant SQL
                (id,),
            ).fetchone()
            return row

        row = await self._call(lambda s: s.run(get))
        return None if row is None else _approval(row, utcnow())

    async def _transition(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        def update(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row

        return await self._call(lambda s: s.write(update))

    async def decide_approval(
        self, id: str, approve: bool, decided_by: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> ApprovalRecord | None:
        now = utcnow()
        state = "approved" if approve else "declined"
        row = await self._transition(
            "UPDATE klink_approvals SET state = ?, decided_at = ?, decided_by = ?, extra = ?"  # noqa: S608 - constant SQL, values bound
            f" WHERE id = ? AND state = 'pending' AND expires_at > ? RETURNING {_APPROVAL_COLUMNS}",
            (state, _text(now), _dumps(decided_by, "decided_by"), _dumps(extra, "extra"), id, _text(now)),
        )
        if row is None:
            return None
        self._bus.deliver(Notification("approvals", {"id": id, "state": state}, self.instance_id))
        return _approval(row, now)

    async def consume_approval(self, id: str) -> ApprovalRecord | None:
        now = utcnow()
        row = await self._transition(
            "UPDATE klink_approvals SET state = 'consumed', consumed_at = ?"  # noqa: S608 - constant SQL, values bound
            f" WHERE id = ? AND state = 'approved' AND expires_at > ? RETURNING {_APPROVAL_COLUMNS}",
            (_text(now), id, _text(now)),
        )
        return None if row is None else _approval(row, now)

    async def purge(self, *, keep_s: float = 86_400.0) -> int:
        now = utcnow()
        cutoff = now - timedelta(seconds=keep_s)

        def delete(conn: sqlite3.Connection) -> int:
            gone = conn.execute("DELETE FROM klink_nonces WHERE expires_at <= ?", (_text(now),)).rowcount
            gone += conn.execute(
                "DELETE FROM klink_approvals WHERE expires_at < ?", (_text(cutoff),)
            ).rowcount
            return int(gone)

        return await self._call(lambda s: s.write(delete))

    # -- audit -------------------------------------------------------------------------------

    async def append_audit(self, record: Mapping[str, Any]) -> AuditRecord:
        text = _dumps(record, "audit record")
        now = utcnow()

        def append(conn: sqlite3.Connection) -> int:
            cur = conn.execute("INSERT INTO klink_audit (at, record) VALUES (?, ?)", (_text(now), text))
            assert cur.lastrowid is not None
            return cur.lastrowid

        new_id = await self._call(lambda s: s.write(append))
        return AuditRecord(id=new_id, at=now, record=json.loads(text or "{}"))

    async def recent_audit(self, limit: int = 50) -> list[AuditRecord]:
        if limit < 1:
            raise ValueError("limit must be >= 1")

        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT id, at, record FROM klink_audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()

        rows = await self._call(lambda s: s.run(read))
        out = []
        for id_, at, record in rows:
            when = _time(at)
            assert when is not None
            out.append(AuditRecord(id=int(id_), at=when, record=json.loads(record)))
        return out

    # -- fan-out -----------------------------------------------------------------------------

    async def publish(self, topic: Topic, payload: Mapping[str, Any]) -> None:
        check_payload(topic, payload)
        await self._ready()
        text = _dumps(payload, "payload")
        self._bus.deliver(Notification(topic, json.loads(text or "{}"), self.instance_id))

    def subscribe(self, topic: Topic) -> AbstractAsyncContextManager[Subscription]:
        return self._bus.subscribe(topic)
