"""The PostgreSQL store: what several klink-mcp replicas share (psycopg 3, async pool).

- Writes go through `psycopg_pool.AsyncConnectionPool` (autocommit connections; explicit
  transactions where two statements must commit together).
- Single use is decided by PostgreSQL: `INSERT ... ON CONFLICT DO NOTHING` for nonces and events,
  `UPDATE ... WHERE state = ... RETURNING` for approvals. Never read-then-write.
- Fan-out: `publish` is `pg_notify('klink_<topic>', json)`; one dedicated connection per store
  LISTENs on every topic and hands notifications to local subscribers. A decision on an approval
  notifies in the same transaction (delivered at commit, never before). If that connection drops
  it reconnects with backoff; notifications sent meanwhile are lost (they are cues: the rows hold
  the truth, and `wait_approval` re-reads on a slow poll as a safety net).
- Migrations are applied at open under an advisory lock (see `migrations.py`).

The connection URL may hold a password: it is never logged or put in an error; `redact_url` gives
the printable form. This module must not log record bodies or import `mcp`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from klink_mcp.store.base import (
    TOPICS,
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
from klink_mcp.store.migrations import migrate_postgres
from klink_mcp.webhooks.events import KlinkEvent, parse_event
from klink_mcp.webhooks.store import DEFAULT_RETENTION, StoredEvent, StoreError

__all__ = ["PostgresEventLog", "PostgresStore", "redact_url"]

logger = logging.getLogger(__name__)

_CHANNEL_PREFIX: Final = "klink_"
_EVENT_COLUMNS: Final = "id, event, ts, contact_id, received_at, data"
_APPROVAL_COLUMNS: Final = (
    "id, state, body, created_at, expires_at, decided_at, decided_by, extra, consumed_at"
)
# Expired nonces are deleted this long after expiry, every _NONCE_PURGE_EVERY consumptions.
_NONCE_GRACE: Final = timedelta(minutes=1)
_NONCE_PURGE_EVERY: Final = 500


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***` (safe to log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _event_row(row: tuple[Any, ...]) -> StoredEvent:
    event_id, event, ts, contact_id, received_at, data = row
    return StoredEvent(
        id=int(event_id),
        event=str(event),
        timestamp=ts.astimezone(UTC),
        contact_id=contact_id,
        received_at=received_at.astimezone(UTC),
        data=data,
    )


def _approval_row(row: tuple[Any, ...], now: datetime) -> ApprovalRecord:
    id_, state, body, created_at, expires_at, decided_at, decided_by, extra, consumed_at = row
    expires = expires_at.astimezone(UTC)
    if state in ("pending", "approved") and expires <= now:
        state = "expired"
    return ApprovalRecord(
        id=id_,
        state=state,
        body=body,
        created_at=created_at.astimezone(UTC),
        expires_at=expires,
        decided_at=_utc(decided_at),
        decided_by=decided_by,
        extra=extra,
        consumed_at=_utc(consumed_at),
    )


def _jsonb(value: Mapping[str, Any] | None, what: str) -> Jsonb | None:
    if value is None:
        return None
    try:
        json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None
    return Jsonb(dict(value))


@dataclass(eq=False)
class _Waiter:
    """One `add` call waiting for its event to be committed (group commit)."""

    event: KlinkEvent
    taken: bool = False  # in a batch being written
    done: bool = False
    result: tuple[bool, StoredEvent] | None = None
    error: str | None = None
    finished: anyio.Event = field(default_factory=anyio.Event)


_MAX_BATCH: Final = 500
_SELECT_BY_KEYS: Final = (
    f"SELECT dedupe_key, {_EVENT_COLUMNS} FROM klink_events WHERE dedupe_key = ANY(%s)"  # noqa: S608 - constant SQL
).encode()
_INSERT_MANY: Final = (
    "INSERT INTO klink_events (dedupe_key, event, ts, contact_id, received_at, data)"  # noqa: S608 - constant SQL
    " SELECT k, e, t, c, r, d::jsonb FROM unnest("
    "%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::timestamptz[], %s::text[])"
    " WITH ORDINALITY AS u(k, e, t, c, r, d, n) ORDER BY n"
    f" ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, {_EVENT_COLUMNS}"
).encode()
_PRUNE: Final = (
    b"DELETE FROM klink_events WHERE id <= (SELECT id FROM klink_events ORDER BY id DESC LIMIT 1 OFFSET %s)"
)


class PostgresEventLog:
    """`EventLog` in PostgreSQL: deduplicated by a UNIQUE key, bounded by retention.

    Ids come from an identity column: they only grow, but concurrent writers may commit them out
    of order, so `after(cursor)` can miss a row that commits late. Replicas learn about new events
    from the `events` notification instead (see `EventHub(..., fanout=store)`).
    """

    def __init__(self, store: PostgresStore, retention: int, flushers: int) -> None:
        self._store = store
        self._retention = retention
        self._prune_every = max(1, min(100, retention // 100))
        self._since_prune = 0
        self._pending: list[_Waiter] = []
        self._flushers = anyio.Semaphore(flushers)
        self.batches = 0  # transactions written by add (with `batched`: the mean batch size, for benchmarks)
        self.batched = 0

    @property
    def path(self) -> str:
        return redact_url(self._store.url)

    async def connect(self) -> None:
        await self._store.open()

    async def add(self, event: KlinkEvent | Mapping[str, Any]) -> tuple[bool, StoredEvent]:
        """Store `event` unless already stored (by any replica); returns once it is committed.

        Concurrent calls are group-committed: a free flusher (at most half the pool) writes every
        pending event in one transaction of three statements, so throughput grows with
        concurrency instead of paying two round trips per event.

        Raises:
            InvalidEvent: `event` is a mapping that is not a valid event.
            StoreError: the database cannot be written.
        """
        parsed = event if isinstance(event, KlinkEvent) else parse_event(event)
        await self._store.ready_pool()  # open on first use; fail now if closed or unreachable
        waiter = _Waiter(parsed)
        self._pending.append(waiter)
        try:
            while not waiter.done:
                if waiter.taken:
                    await waiter.finished.wait()
                    break
                async with self._flushers:
                    if not waiter.taken:
                        await self._flush()
        except BaseException:
            if not waiter.taken and waiter in self._pending:
                self._pending.remove(waiter)  # cancelled before anyone wrote it: nothing was stored
            raise
        if waiter.error is not None:
            raise StoreError(waiter.error)
        assert waiter.result is not None
        return waiter.result

    async def _flush(self) -> None:
        batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
        for w in batch:
            w.taken = True
        self.batches += 1
        self.batched += len(batch)
        try:
            # Shielded: once the batch is sent it may commit, and its callers must learn the outcome.
            with anyio.CancelScope(shield=True):
                results = await self._write_batch([w.event for w in batch])
            seen: set[str] = set()
            for w in batch:
                stored, row = results[w.event.dedupe_key]
                # The same event twice in one batch: the first in arrival order stored it.
                w.result = (stored and w.event.dedupe_key not in seen, row)
                seen.add(w.event.dedupe_key)
        except (psycopg.Error, StoreError) as exc:
            message = (
                str(exc) if isinstance(exc, StoreError) else f"events database error: {type(exc).__name__}"
            )
            for w in batch:
                w.error = message
        finally:
            for w in batch:
                if w.result is None and w.error is None:  # an unexpected failure: still answer everyone
                    w.error = "the events store failed while storing this batch"
                w.done = True
                w.finished.set()

    async def _write_batch(self, events: list[KlinkEvent]) -> dict[str, tuple[bool, StoredEvent]]:
        # Sorted by key: two replicas inserting overlapping batches then take the unique-index
        # locks in the same order and cannot deadlock. Order within one batch is arbitrary anyway:
        # its events arrived concurrently.
        unique = sorted({e.dedupe_key: e for e in events}.values(), key=lambda e: e.dedupe_key)
        keys = [e.dedupe_key for e in unique]
        results: dict[str, tuple[bool, StoredEvent]] = {}
        pool = await self._store.ready_pool()
        for attempt in range(3):
            try:
                async with pool.connection() as conn, conn.transaction():
                    # Look first: a redelivery (the common duplicate) then burns no identity value.
                    cur = await conn.execute(_SELECT_BY_KEYS, (keys,))
                    for row in await cur.fetchall():
                        results[row[0]] = (False, _event_row(row[1:]))
                    fresh = [e for e in unique if e.dedupe_key not in results]
                    if fresh:
                        now = utcnow()
                        cur = await conn.execute(
                            _INSERT_MANY,
                            (
                                [e.dedupe_key for e in fresh],
                                [e.event for e in fresh],
                                [e.timestamp for e in fresh],
                                [e.contact_id for e in fresh],
                                [now] * len(fresh),
                                [
                                    json.dumps(e.data, ensure_ascii=False, separators=(",", ":"))
                                    for e in fresh
                                ],
                            ),
                        )
                        for row in await cur.fetchall():
                            results[row[0]] = (True, _event_row(row[1:]))
                        self._since_prune += len(fresh)
                        lost = [e.dedupe_key for e in fresh if e.dedupe_key not in results]
                        if lost:
                            # Another replica committed them between our look and our insert.
                            cur = await conn.execute(_SELECT_BY_KEYS, (lost,))
                            for row in await cur.fetchall():
                                results[row[0]] = (False, _event_row(row[1:]))
                    if self._since_prune >= self._prune_every:
                        self._since_prune = 0
                        await conn.execute(_PRUNE, (self._retention,))
                break
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                results.clear()
                if attempt == 2:
                    raise
        missing = [k for k in keys if k not in results]
        if missing:  # inserted elsewhere and pruned again at once: retention far too small
            raise StoreError("events were pruned while being stored; raise the retention")
        return results

    async def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        try:
            async with (await self._store.ready_pool()).connection() as conn:
                return await (await conn.execute(sql.encode(), params)).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"events database error: {type(exc).__name__}") from exc

    @staticmethod
    def _where(
        event_type: str | None, contact_id: str | None, since: datetime | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if event_type is not None:
            clauses.append("event = %s")
            params.append(event_type)
        if contact_id is not None:
            clauses.append("contact_id = %s")
            params.append(contact_id)
        if since is not None:
            clauses.append("ts >= %s")
            params.append(as_utc(since))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    async def recent(
        self,
        *,
        event_type: str | None = None,
        contact_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[StoredEvent]:
        if limit < 1 or offset < 0:
            raise ValueError("limit must be >= 1 and offset >= 0")
        where, params = self._where(event_type, contact_id, since)
        rows = await self._fetch(
            f"SELECT {_EVENT_COLUMNS} FROM klink_events{where} ORDER BY id DESC LIMIT %s OFFSET %s",  # noqa: S608
            [*params, limit, offset],
        )
        return [_event_row(r) for r in rows]

    async def count(
        self, *, event_type: str | None = None, contact_id: str | None = None, since: datetime | None = None
    ) -> int:
        where, params = self._where(event_type, contact_id, since)
        rows = await self._fetch(f"SELECT COUNT(*) FROM klink_events{where}", params)  # noqa: S608
        return int(rows[0][0])

    async def after(self, last_id: int, *, limit: int = 500) -> list[StoredEvent]:
        rows = await self._fetch(
            f"SELECT {_EVENT_COLUMNS} FROM klink_events WHERE id > %s ORDER BY id ASC LIMIT %s",  # noqa: S608
            [last_id, limit],
        )
        return [_event_row(r) for r in rows]

    async def max_id(self) -> int:
        rows = await self._fetch("SELECT COALESCE(MAX(id), 0) FROM klink_events", [])
        return int(rows[0][0])

    async def close(self) -> None:
        await self._store.close()


class PostgresStore(Store):
    """`Store` on PostgreSQL. Each instance is one replica's view: a pool plus one LISTEN connection."""

    kind = "postgresql"
    approval_poll_s = 5.0  # safety net for notifications lost while the listener reconnects
    shares_across_processes = True

    def __init__(
        self,
        url: str,
        *,
        retention: int = DEFAULT_RETENTION,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 10.0,
    ) -> None:
        """Raises:
        ValueError: `retention` < 1 or pool sizes out of order.
        """
        super().__init__()
        if retention < 1:
            raise ValueError("retention must be at least 1")
        if not 1 <= min_size <= max_size:
            raise ValueError("need 1 <= min_size <= max_size")
        self.url = url
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout_s = connect_timeout_s
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._bus = LocalBus()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._events = PostgresEventLog(self, retention, flushers=max(1, max_size // 2))
        self._open_lock = asyncio.Lock()
        self._closed = False
        self._nonces_since_purge = 0

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url)!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    def pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """The open pool.

        Raises:
            StoreError: the store is not open (or closed).
        """
        if self._pool is None or self._closed:
            raise StoreError("the store is not open" if not self._closed else "the store is closed")
        return self._pool

    async def ready_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        """The pool, opening the store first if needed (like `EventStore`, opened on first use).

        Raises:
            StoreError: closed, or cannot be opened.
        """
        if self._pool is None or self._closed:
            await self.open()
        return self.pool()

    async def open(self) -> None:
        async with self._open_lock:
            if self._closed:
                raise StoreError("the store is closed")
            if self._pool is not None:
                return
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                self.url,
                min_size=self._min_size,
                max_size=self._max_size,
                kwargs={"autocommit": True},
                open=False,
                timeout=self._connect_timeout_s,
                name="klink-store",
            )
            try:
                await pool.open(wait=True, timeout=self._connect_timeout_s)
                async with pool.connection() as conn:
                    await migrate_postgres(conn)
            except (PoolTimeout, psycopg.Error) as exc:
                await pool.close()
                raise StoreError(
                    f"cannot open the store at {redact_url(self.url)}: {type(exc).__name__}"
                    " (is PostgreSQL running and the URL right?)"
                ) from exc
            except BaseException:
                await pool.close()
                raise
            self._pool = pool
            self._listener = asyncio.create_task(self._listen(), name="klink-store-listener")
            try:
                await asyncio.wait_for(self._listening.wait(), self._connect_timeout_s)
            except TimeoutError:
                await self._shutdown()
                raise StoreError(
                    f"cannot LISTEN on {redact_url(self.url)} within {self._connect_timeout_s:g}s"
                ) from None

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=max(1, int(self._connect_timeout_s)),
                    application_name=f"klink-listener-{self.instance_id}",
                )
                async with conn:
                    for topic in TOPICS:
                        await conn.execute(f"LISTEN {_CHANNEL_PREFIX}{topic}".encode())
                    self._listening.set()
                    delay = 0.1
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep listening: a restart of PostgreSQL must not end fan-out
                self._listening.clear()
                logger.warning(
                    "store notifications: connection to %s lost (%s); reconnecting in %.1fs",
                    redact_url(self.url),
                    type(exc).__name__,
                    delay,
                )
            self._listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _dispatch(self, channel: str, payload: str) -> None:
        topic = channel.removeprefix(_CHANNEL_PREFIX)
        if topic not in TOPICS:
            return
        try:
            message = json.loads(payload)
            note = Notification(topic, dict(message["p"]), str(message["o"]))  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed notification on %s", channel)
            return
        self._bus.deliver(note)

    async def _shutdown(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            try:
                await listener
            except asyncio.CancelledError:
                pass
        self._bus.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def close(self) -> None:
        async with self._open_lock:
            self._closed = True
            await self._shutdown()

    async def ping(self) -> None:
        try:
            async with (await self.ready_pool()).connection() as conn:
                await conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise StoreError(
                f"the store at {redact_url(self.url)} does not answer: {type(exc).__name__}"
            ) from exc
        if not self._listening.is_set():
            raise StoreError("the store's notification connection is reconnecting")

    @property
    def events(self) -> EventLog:
        return self._events

    # -- helpers -----------------------------------------------------------------------------

    async def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        try:
            async with (await self.ready_pool()).connection() as conn:
                return await (await conn.execute(sql.encode(), params)).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"store database error: {type(exc).__name__}") from exc

    # -- nonces ------------------------------------------------------------------------------

    async def consume_nonce(self, nonce: str, expires_at: datetime) -> bool:
        if not nonce:
            raise ValueError("nonce must not be empty")
        now = utcnow()
        expires_at = as_utc(expires_at)
        if expires_at <= now:
            return False
        row = await self._one(
            "INSERT INTO klink_nonces (nonce, expires_at) VALUES (%s, %s)"
            " ON CONFLICT (nonce) DO NOTHING RETURNING 1",
            (nonce, expires_at),
        )
        self._nonces_since_purge += 1
        if self._nonces_since_purge >= _NONCE_PURGE_EVERY:
            self._nonces_since_purge = 0
            await self._one(
                "WITH gone AS (DELETE FROM klink_nonces WHERE expires_at < %s RETURNING 1)"
                " SELECT COUNT(*) FROM gone",
                (now - _NONCE_GRACE,),
            )
        return row is not None

    # -- approvals ---------------------------------------------------------------------------

    async def create_approval(self, id: str, body: dict[str, Any], expires_at: datetime) -> ApprovalRecord:
        if not id:
            raise ValueError("approval id must not be empty")
        now = utcnow()
        row = await self._one(
            "INSERT INTO klink_approvals (id, state, body, created_at, expires_at)"  # noqa: S608 - constant SQL, values bound
            " VALUES (%s, 'pending', %s, %s, %s)"
            f" ON CONFLICT (id) DO NOTHING RETURNING {_APPROVAL_COLUMNS}",
            (id, _jsonb(body, "approval body"), now, as_utc(expires_at)),
        )
        if row is None:
            raise ApprovalExists(f"approval {id!r} already exists")
        return _approval_row(row, now)

    async def get_approval(self, id: str) -> ApprovalRecord | None:
        row = await self._one(f"SELECT {_APPROVAL_COLUMNS} FROM klink_approvals WHERE id = %s", (id,))  # noqa: S608
        return None if row is None else _approval_row(row, utcnow())

    async def decide_approval(
        self, id: str, approve: bool, decided_by: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> ApprovalRecord | None:
        now = utcnow()
        state = "approved" if approve else "declined"
        who, more = _jsonb(decided_by, "decided_by"), _jsonb(extra, "extra")
        message = json.dumps({"o": self.instance_id, "p": {"id": id, "state": state}})
        try:
            async with (await self.ready_pool()).connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "UPDATE klink_approvals SET state = %s, decided_at = %s, decided_by = %s, extra = %s"  # noqa: S608 - constant SQL, values bound
                    " WHERE id = %s AND state = 'pending' AND expires_at > %s"
                    f" RETURNING {_APPROVAL_COLUMNS}".encode(),
                    (state, now, who, more, id, now),
                )
                row = await cur.fetchone()
                if row is not None:
                    # Same transaction: waiters hear it only once the decision is committed.
                    await conn.execute("SELECT pg_notify(%s, %s)", (f"{_CHANNEL_PREFIX}approvals", message))
        except psycopg.Error as exc:
            raise StoreError(f"store database error: {type(exc).__name__}") from exc
        return None if row is None else _approval_row(row, now)

    async def consume_approval(self, id: str) -> ApprovalRecord | None:
        now = utcnow()
        row = await self._one(
            "UPDATE klink_approvals SET state = 'consumed', consumed_at = %s"  # noqa: S608 - constant SQL, values bound
            f" WHERE id = %s AND state = 'approved' AND expires_at > %s RETURNING {_APPROVAL_COLUMNS}",
            (now, id, now),
        )
        return None if row is None else _approval_row(row, now)

    async def purge(self, *, keep_s: float = 86_400.0) -> int:
        now = utcnow()
        row = await self._one(
            "WITH n AS (DELETE FROM klink_nonces WHERE expires_at <= %s RETURNING 1),"
            " a AS (DELETE FROM klink_approvals WHERE expires_at < %s RETURNING 1)"
            " SELECT (SELECT COUNT(*) FROM n) + (SELECT COUNT(*) FROM a)",
            (now, now - timedelta(seconds=keep_s)),
        )
        return 0 if row is None else int(row[0])

    # -- audit -------------------------------------------------------------------------------

    async def append_audit(self, record: Mapping[str, Any]) -> AuditRecord:
        body = _jsonb(record, "audit record")
        row = await self._one(
            "INSERT INTO klink_audit (at, record) VALUES (%s, %s) RETURNING id, at, record",
            (utcnow(), body),
        )
        assert row is not None  # an INSERT ... RETURNING always returns its row
        return AuditRecord(id=int(row[0]), at=row[1].astimezone(UTC), record=row[2])

    async def recent_audit(self, limit: int = 50) -> list[AuditRecord]:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        try:
            async with (await self.ready_pool()).connection() as conn:
                cur = await conn.execute(
                    "SELECT id, at, record FROM klink_audit ORDER BY id DESC LIMIT %s", (limit,)
                )
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"store database error: {type(exc).__name__}") from exc
        return [AuditRecord(id=int(r[0]), at=r[1].astimezone(UTC), record=r[2]) for r in rows]

    # -- fan-out -----------------------------------------------------------------------------

    async def publish(self, topic: Topic, payload: Mapping[str, Any]) -> None:
        check_payload(topic, payload)
        message = json.dumps({"o": self.instance_id, "p": dict(payload)}, separators=(",", ":"))
        await self._one("SELECT pg_notify(%s, %s)", (f"{_CHANNEL_PREFIX}{topic}", message))

    def subscribe(self, topic: Topic) -> AbstractAsyncContextManager[Subscription]:
        return self._bus.subscribe(topic)
