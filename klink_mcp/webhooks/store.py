"""Durable storage of received webhook events: one SQLite file shared by every klink-mcp process.

What it guarantees:

- **Durable before acknowledged**: `add` returns only after the row is committed with
  `synchronous=FULL` in WAL mode (the WAL is fsynced on every commit), so a 2xx sent after it
  survives a crash or power loss.
- **Deduplicated**: a UNIQUE constraint on the event's dedupe key (see `events.py`) makes a redelivery
  a no-op, also across processes; `add` then returns the row stored the first time.
- **Safe under concurrent writers**: WAL mode (readers never block the writer), a busy timeout,
  `BEGIN IMMEDIATE` transactions (no lock-upgrade deadlocks between processes) and, inside a
  process, one lock per connection so threads share connections safely.
- **Bounded**: `retention` rows are kept; the oldest are pruned. Pruning runs inside an insert every
  `max(1, min(100, retention // 100))` inserts of a process, so the table can briefly hold up to
  that many rows (minus one) more than `retention`. A redelivery of an event that has already been
  pruned is stored again: dedupe covers the retention window, not all time.
- **Ids only grow** (AUTOINCREMENT): they are never reused after pruning, so an id is a safe cursor.
- **Never blocks the event loop**: every SQLite call runs in a worker thread (`anyio.to_thread`).
  Concurrent `add` calls are group-committed (one transaction and one thread hop per batch): per-call
  threads convoyed on the GIL behind a busy event loop and capped a loaded receiver at ~160 events/s.

`EventStore` is the SQLite implementation of `klink_mcp.store.base.EventLog` (the shared store's
event API; `SQLiteStore.events` is one); the memory and PostgreSQL stores offer the same API.

The file is created `0600` in a `0700` directory: it holds customer data. `":memory:"` keeps
everything in one private connection (tests). This module must not log event data or import `mcp`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

from klink_mcp.config import Settings
from klink_mcp.webhooks.events import KlinkEvent, format_timestamp, parse_event

__all__ = [
    "DEFAULT_RETENTION",
    "MEMORY",
    "EventStore",
    "StoreError",
    "StoredEvent",
    "default_events_db_path",
    "events_db_path",
]

MEMORY: Final = ":memory:"
DEFAULT_RETENTION: Final = 10_000
_SCHEMA_VERSION: Final = 1
_COLUMNS = "id, event, timestamp, contact_id, received_at, data"
_T = TypeVar("_T")


class StoreError(RuntimeError):
    """The event store cannot be opened, read or written (locked too long, disk full, closed...)."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as stored: `id` grows with arrival order and is never reused."""

    id: int
    event: str
    timestamp: datetime  # when K-LINK says it happened (aware, UTC)
    contact_id: str | None
    received_at: datetime  # when this store first committed it (aware, UTC)
    data: dict[str, Any] = field(repr=False)  # customer data: kept out of reprs and logs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as `YYYY-MM-DDTHH:MM:SS.ffffffZ`)."""
        return {
            "id": self.id,
            "event": self.event,
            "timestamp": format_timestamp(self.timestamp),
            "contact_id": self.contact_id,
            "received_at": format_timestamp(self.received_at),
            "data": self.data,
        }


def default_events_db_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the events database lives when `settings.events_db` is not set: the user's data directory.

    Linux/BSD: `$XDG_DATA_HOME/klink-mcp/events.sqlite3` (default `~/.local/share/...`);
    macOS: `~/Library/Application Support/klink-mcp/...`; Windows: `%LOCALAPPDATA%\\klink-mcp\\...`.
    """
    env = os.environ if env is None else env
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "klink-mcp" / "events.sqlite3"


def events_db_path(settings: Settings) -> str:
    """The database path the settings select (`settings.events_db`, else the default); may be `":memory:"`.

    Without `events_db`, sandbox mode uses `events-sandbox.sqlite3` beside the default database.
    """
    if settings.events_db is not None:
        return str(settings.events_db)
    default = default_events_db_path()
    # Sandbox (demo) events never mix with a real tenant's events.
    return str(default.with_name("events-sandbox.sqlite3") if settings.uses_sandbox else default)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _parse_stored_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _row_to_event(row: tuple[Any, ...]) -> StoredEvent:
    event_id, event, timestamp, contact_id, received_at, data = row
    return StoredEvent(
        id=int(event_id),
        event=str(event),
        timestamp=_parse_stored_time(timestamp),
        contact_id=contact_id,
        received_at=_parse_stored_time(received_at),
        data=json.loads(data),
    )


def _filters(event_type: str | None, contact_id: str | None, since: datetime | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if event_type is not None:
        clauses.append("event = ?")
        params.append(event_type)
    if contact_id is not None:
        clauses.append("contact_id = ?")
        params.append(contact_id)
    if since is not None:
        # Normalised timestamps sort lexicographically in time order (see events.format_timestamp).
        clauses.append("timestamp >= ?")
        params.append(format_timestamp(since))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class _SQLiteEvents:
    """The synchronous core. Every method may block; `EventStore` calls them from worker threads."""

    def __init__(self, path: str, retention: int, busy_timeout_s: float) -> None:
        self.path = path
        self._retention = retention
        self._prune_every = max(1, min(100, retention // 100))
        self._since_prune = 0
        self._busy_timeout_s = busy_timeout_s
        self._memory = path == MEMORY
        if not self._memory:
            _prepare_file(Path(path))
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        try:
            self._init_schema()
            if self._memory:
                # One private database: reads must use the same connection (and therefore its lock).
                self._read_lock = self._write_lock
                self._reader = self._writer
            else:
                self._read_lock = threading.Lock()
                self._reader = self._connect()
                self._reader.execute("PRAGMA query_only = ON")
        except BaseException:
            self._writer.close()
            raise
        self.closed = False

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _init_schema(self) -> None:
        conn = self._writer
        if not self._memory:
            mode = self._switch_to_wal(conn)
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot switch the events database to WAL mode (got {mode!r})")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > _SCHEMA_VERSION:
                raise StoreError(
                    f"the events database was created by a newer klink-mcp (schema {version}); upgrade"
                )
            conn.execute(
                """CREATE TABLE IF NOT EXISTS events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    dedupe_key TEXT NOT NULL UNIQUE,
                    event TEXT NOT NULL,
                    timestamp TEXT NOT NULL,
                    contact_id TEXT,
                    received_at TEXT NOT NULL,
                    data TEXT NOT NULL
                )"""
            )
            conn.execute("CREATE INDEX IF NOT EXISTS events_by_type ON events (event, id)")
            conn.execute("CREATE INDEX IF NOT EXISTS events_by_contact ON events (contact_id, id)")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            self._prune(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _switch_to_wal(self, conn: sqlite3.Connection) -> str:
        # Changing the journal mode needs an exclusive lock, and SQLite does not always run the busy
        # handler for it: several processes (or threads) opening a new database at once can get
        # "database is locked" at once. Retry within the busy timeout. (Runs in a worker thread.)
        deadline = time.monotonic() + self._busy_timeout_s
        delay = 0.005
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _prune(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (self._retention,),
        )

    def add_many(self, events: list[KlinkEvent]) -> list[tuple[bool, StoredEvent]]:
        """Store a batch in ONE transaction (one fsync); each result as for a single add, in order."""
        with self._write_lock:
            self._check_open()
            conn = self._writer
            received_at = _utcnow()
            results: list[tuple[bool, StoredEvent]] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for event in events:
                    results.append(self._add_in_transaction(conn, event, received_at))
                if self._since_prune >= self._prune_every:
                    self._prune(conn)
                    self._since_prune = 0
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return results

    def _add_in_transaction(
        self, conn: sqlite3.Connection, event: KlinkEvent, received_at: datetime
    ) -> tuple[bool, StoredEvent]:
        # Look first, insert second: BEGIN IMMEDIATE holds the write lock across both, so no other
        # writer can slip in between (the UNIQUE constraint stays as the safety net). Unlike
        # INSERT ... ON CONFLICT DO NOTHING, a redelivery burns no AUTOINCREMENT id. The SELECT also
        # sees rows inserted earlier in the same batch.
        existing = conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE dedupe_key = ?",  # noqa: S608 - constant SQL
            (event.dedupe_key,),
        ).fetchone()
        if existing is not None:
            return False, _row_to_event(existing)
        cursor = conn.execute(
            "INSERT INTO events (dedupe_key, event, timestamp, contact_id, received_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.dedupe_key,
                event.event,
                event.timestamp_text,
                event.contact_id,
                format_timestamp(received_at),
                json.dumps(event.data, ensure_ascii=False, separators=(",", ":")),
            ),
        )
        new_id = cursor.lastrowid
        if new_id is None:  # cannot happen after a successful INSERT; keeps the type honest
            raise StoreError("the events database returned no id for an insert")
        self._since_prune += 1
        stored = StoredEvent(
            id=new_id,
            event=event.event,
            timestamp=event.timestamp,
            contact_id=event.contact_id,
            received_at=received_at,
            data=event.data,
        )
        return True, stored

    def _read(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self._read_lock:
            self._check_open()
            return self._reader.execute(sql, params).fetchall()

    def recent(
        self,
        event_type: str | None,
        contact_id: str | None,
        since: datetime | None,
        limit: int,
        offset: int,
    ) -> list[StoredEvent]:
        where, params = _filters(event_type, contact_id, since)
        rows = self._read(
            # `where` is built from constant clauses only; every value is a bound parameter.
            f"SELECT {_COLUMNS} FROM events{where} ORDER BY id DESC LIMIT ? OFFSET ?",  # noqa: S608
            [*params, limit, offset],
        )
        return [_row_to_event(row) for row in rows]

    def count(self, event_type: str | None, contact_id: str | None, since: datetime | None) -> int:
        where, params = _filters(event_type, contact_id, since)
        return int(self._read(f"SELECT COUNT(*) FROM events{where}", params)[0][0])  # noqa: S608 - as recent()

    def after(self, last_id: int, limit: int) -> list[StoredEvent]:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM events WHERE id > ? ORDER BY id ASC LIMIT ?",  # noqa: S608 - constant SQL
            [last_id, limit],
        )
        return [_row_to_event(row) for row in rows]

    def max_id(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM events", [])[0][0])

    def _check_open(self) -> None:
        if self.closed:
            raise StoreError("the event store is closed")

    def close(self) -> None:
        with self._write_lock:
            if self._read_lock is not self._write_lock:
                self._read_lock.acquire()
            try:
                if self.closed:
                    return
                self.closed = True
                if self._reader is not self._writer:
                    self._reader.close()
                self._writer.close()
            finally:
                if self._read_lock is not self._write_lock:
                    self._read_lock.release()


def _prepare_file(path: Path) -> None:
    """Create the parent directory (0700) and the database file (0600) if missing: it holds customer data."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


@dataclass(eq=False)
class _Waiter:
    """One `add` call waiting for its event to be committed (group commit)."""

    event: KlinkEvent
    done: bool = False
    result: tuple[bool, StoredEvent] | None = None
    error: str | None = None


class EventStore:
    """Async facade over the SQLite event log.

    `EventStore(path)` does no I/O: the database is opened (in a worker thread) on first use, so a
    server can be assembled synchronously. `await EventStore.open(path)` opens at once, surfacing a
    bad path or a locked file immediately; `await store.connect()` does the same for an existing
    instance. Usable as `async with`; `close()` is idempotent and final.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention: int = DEFAULT_RETENTION,
        busy_timeout_s: float = 10.0,
    ) -> None:
        """Raises:
        ValueError: `retention` < 1 or `busy_timeout_s` <= 0.
        """
        if retention < 1:
            raise ValueError("retention must be at least 1")
        if busy_timeout_s <= 0:
            raise ValueError("busy_timeout_s must be positive")
        self._path = os.fspath(path)
        self._retention = retention
        self._busy_timeout_s = busy_timeout_s
        self._core: _SQLiteEvents | None = None
        self._closed = False
        self._open_lock = anyio.Lock()
        self._flush_lock = anyio.Lock()  # FIFO: the next holder writes everything pending by then
        self._pending: list[_Waiter] = []
        self._max_batch = 500
        # Writes are serialised by the core's lock anyway; a limiter of 1 keeps waiting writers as
        # tasks instead of parked threads. Reads get their own small pool.
        self._write_limiter = anyio.CapacityLimiter(1)
        self._read_limiter = anyio.CapacityLimiter(2)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        retention: int = DEFAULT_RETENTION,
        busy_timeout_s: float = 10.0,
    ) -> EventStore:
        """Open (creating if needed) the events database at `path`, or a private one for `":memory:"`.

        Raises:
            StoreError: the file cannot be created or opened, is not an events database, or is locked
                for longer than `busy_timeout_s`.
            ValueError: `retention` < 1 or `busy_timeout_s` <= 0.
        """
        store = cls(path, retention=retention, busy_timeout_s=busy_timeout_s)
        await store.connect()
        return store

    @classmethod
    def from_settings(cls, settings: Settings) -> EventStore:
        """The store `settings` select (`events_db`, `events_retention`), opened on first use."""
        return cls(events_db_path(settings), retention=settings.events_retention)

    @property
    def path(self) -> str:
        """The database path (or `":memory:"`)."""
        return self._path

    async def connect(self) -> None:
        """Open the database now if it is not open yet.

        Raises:
            StoreError: as `open`, or the store was closed.
        """
        await self._ready()

    async def _ready(self) -> _SQLiteEvents:
        if self._core is not None:
            return self._core
        async with self._open_lock:
            if self._closed:
                raise StoreError("the event store is closed")
            if self._core is None:
                try:
                    self._core = await anyio.to_thread.run_sync(
                        _SQLiteEvents, self._path, self._retention, self._busy_timeout_s
                    )
                except (sqlite3.Error, OSError) as exc:
                    raise StoreError(f"cannot open the events database: {exc}") from exc
            return self._core

    async def _call(self, limiter: anyio.CapacityLimiter, fn: Callable[[_SQLiteEvents], _T]) -> _T:
        core = await self._ready()
        try:
            return await anyio.to_thread.run_sync(fn, core, limiter=limiter)
        except sqlite3.Error as exc:
            raise StoreError(f"events database error: {exc}") from exc

    async def add(self, event: KlinkEvent | Mapping[str, Any]) -> tuple[bool, StoredEvent]:
        """Store `event` unless an identical one is already stored; returns once it is committed.

        Returns `(True, new_row)` for a new event, `(False, first_row)` for a redelivery.

        Concurrent calls are group-committed: whoever holds the flush lock writes every pending event
        in one transaction (one fsync, one thread hop), so throughput grows with concurrency instead
        of collapsing under thread hand-offs. A caller returns only after its own event committed.

        Raises:
            InvalidEvent: `event` is a mapping that is not a valid event.
            StoreError: the database cannot be written (locked too long, disk full, closed).
        """
        parsed = event if isinstance(event, KlinkEvent) else parse_event(event)
        waiter = _Waiter(parsed)
        self._pending.append(waiter)
        try:
            async with self._flush_lock:
                while not waiter.done:  # more than one batch may be pending ahead of us
                    await self._flush()
        except BaseException:
            if not waiter.done and waiter in self._pending:
                self._pending.remove(waiter)  # cancelled before anyone wrote it: nothing was stored
            raise
        if waiter.error is not None:
            raise StoreError(waiter.error)
        assert waiter.result is not None
        return waiter.result

    async def _flush(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        try:
            core = await self._ready()
            # Shielded: once the batch is in the thread it will commit, and its callers must learn it.
            with anyio.CancelScope(shield=True):
                results = await anyio.to_thread.run_sync(
                    core.add_many, [w.event for w in batch], limiter=self._write_limiter
                )
        except (sqlite3.Error, StoreError) as exc:
            message = f"events database error: {exc}" if isinstance(exc, sqlite3.Error) else str(exc)
            for w in batch:
                w.error, w.done = message, True
            return
        except BaseException:
            # Not written (cancelled before the thread started): put them back, in order, for the next flush.
            self._pending[:0] = [w for w in batch if not w.done]
            raise
        for w, result in zip(batch, results, strict=True):
            w.result, w.done = result, True

    async def recent(
        self,
        *,
        event_type: str | None = None,
        contact_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[StoredEvent]:
        """The newest events first, optionally filtered.

        `since` (naive = UTC) keeps events whose own timestamp is at or after it.

        Raises:
            ValueError: `limit` < 1 or `offset` < 0.
            StoreError: the database cannot be read.
        """
        if limit < 1 or offset < 0:
            raise ValueError("limit must be >= 1 and offset >= 0")
        return await self._call(
            self._read_limiter, lambda core: core.recent(event_type, contact_id, since, limit, offset)
        )

    async def count(
        self, *, event_type: str | None = None, contact_id: str | None = None, since: datetime | None = None
    ) -> int:
        """How many stored events match the filters (all events without filters).

        Raises:
            StoreError: the database cannot be read.
        """
        return await self._call(self._read_limiter, lambda core: core.count(event_type, contact_id, since))

    async def after(self, last_id: int, *, limit: int = 500) -> list[StoredEvent]:
        """Events with `id > last_id`, oldest first (a cursor for followers in other processes).

        Raises:
            StoreError: the database cannot be read.
        """
        return await self._call(self._read_limiter, lambda core: core.after(last_id, limit))

    async def max_id(self) -> int:
        """The highest id stored so far (0 when empty).

        Raises:
            StoreError: the database cannot be read.
        """
        return await self._call(self._read_limiter, lambda core: core.max_id())

    async def close(self) -> None:
        """Close the database; later calls raise `StoreError`. Waits for a running call to finish."""
        async with self._open_lock:
            self._closed = True
            core, self._core = self._core, None
        if core is not None:
            await anyio.to_thread.run_sync(core.close)

    async def __aenter__(self) -> EventStore:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"EventStore(path={self.path!r})"
