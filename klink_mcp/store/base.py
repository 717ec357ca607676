"""The store interface shared by every replica: nonces, approvals, webhook events, audit, fan-out.

One abstract `Store` with three implementations (memory, SQLite, PostgreSQL). What every
implementation guarantees, and the contract suite (`tests/store/test_store_contract.py`) checks:

- **Single use is decided by the database**: `consume_nonce` is one `INSERT ... ON CONFLICT DO
  NOTHING` on a unique key and `consume_approval` one `UPDATE ... WHERE state = 'approved'`
  (compare-and-set); never a read followed by a write. Two replicas racing for the same nonce or
  approval: exactly one wins.
- **Approvals** are records keyed by an opaque id with a JSON body and a state:
  `pending -> approved | declined` (`decide_approval`, once) and `approved -> consumed`
  (`consume_approval`, once). A pending or approved record past `expires_at` reads as `expired`
  and can be neither decided nor consumed.
- **Fan-out**: `publish(topic, payload)` reaches every subscriber of that topic on the same
  database (this instance included) as a cue, best effort: a subscriber that is not connected at
  the time misses it. Durable facts live in the tables; notifications only say "look again".

This module holds no I/O. It must not log record bodies (they carry customer data) or import `mcp`.
"""

from __future__ import annotations

import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, Protocol, get_args

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from klink_mcp.webhooks.events import KlinkEvent
from klink_mcp.webhooks.store import StoredEvent, StoreError

__all__ = [
    "APPROVAL_STATES",
    "TOPICS",
    "ApprovalExists",
    "ApprovalRecord",
    "ApprovalState",
    "AuditRecord",
    "EventLog",
    "LocalBus",
    "Notification",
    "Store",
    "StoreError",
    "Subscription",
    "Topic",
    "utcnow",
]

logger = logging.getLogger(__name__)

ApprovalState = Literal["pending", "approved", "declined", "expired", "consumed"]
APPROVAL_STATES: Final[tuple[str, ...]] = get_args(ApprovalState)

# What replicas tell each other. `approvals` is used by the store itself (wait_approval).
Topic = Literal["events", "tools", "forms", "approvals"]
TOPICS: Final[tuple[str, ...]] = get_args(Topic)

# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; one limit for every implementation.
MAX_PAYLOAD_BYTES: Final = 7900
_SUBSCRIBER_BUFFER: Final = 256


def utcnow() -> datetime:
    """Now, aware, UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (naive = UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ApprovalExists(StoreError):
    """`create_approval` was given an id that is already stored."""


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One approval as stored. `state` already accounts for expiry."""

    id: str
    state: ApprovalState
    body: dict[str, Any] = field(repr=False)  # what is to be approved: may carry customer data
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    decided_by: dict[str, Any] | None = None
    extra: dict[str, Any] | None = field(default=None, repr=False)
    consumed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit record: `id` grows with arrival order across all replicas."""

    id: int
    at: datetime
    record: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Notification:
    """One fan-out message. `origin` names the store instance (replica) that published it."""

    topic: Topic
    payload: dict[str, Any]
    origin: str


class EventLog(Protocol):
    """The webhook event store every implementation offers (the API of `webhooks.store.EventStore`)."""

    @property
    def path(self) -> str:
        """Where the events live, safe to log (`":memory:"`, a file path, a URL without password)."""
        ...

    async def connect(self) -> None:
        """Open now. Raises: StoreError."""
        ...

    async def add(self, event: KlinkEvent | Mapping[str, Any]) -> tuple[bool, StoredEvent]:
        """Store unless already stored; `(True, new)` or `(False, first)`. Raises: InvalidEvent, StoreError."""
        ...

    async def recent(
        self,
        *,
        event_type: str | None = None,
        contact_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[StoredEvent]:
        """Newest first, filtered. Raises: ValueError, StoreError."""
        ...

    async def count(
        self, *, event_type: str | None = None, contact_id: str | None = None, since: datetime | None = None
    ) -> int:
        """How many match. Raises: StoreError."""
        ...

    async def after(self, last_id: int, *, limit: int = 500) -> list[StoredEvent]:
        """`id > last_id`, oldest first. Raises: StoreError."""
        ...

    async def max_id(self) -> int:
        """Highest id so far (0 when empty). Raises: StoreError."""
        ...

    async def close(self) -> None:
        """Close; later calls raise StoreError."""
        ...


def check_payload(topic: str, payload: Mapping[str, Any]) -> None:
    """Refuse an unknown topic or a payload too large to cross PostgreSQL's NOTIFY.

    Raises:
        ValueError: unknown topic, or payload larger than `MAX_PAYLOAD_BYTES` once encoded.
    """
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; one of {', '.join(TOPICS)}")
    size = len(json.dumps(dict(payload), separators=(",", ":")).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"notification payload is {size} bytes (limit {MAX_PAYLOAD_BYTES}): send an id and read the row"
        )


class Subscription:
    """Notifications of one topic, as an async iterator. Obtained from `Store.subscribe`."""

    def __init__(self, topic: Topic, receive: MemoryObjectReceiveStream[Notification]) -> None:
        self.topic = topic
        self._receive = receive

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Notification:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def receive(self) -> Notification:
        """The next notification.

        Raises:
            anyio.EndOfStream: the store was closed.
        """
        return await self._receive.receive()


class LocalBus:
    """In-process delivery to subscribers. A full subscriber buffer drops (and logs): never block a publisher."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[MemoryObjectSendStream[Notification]]] = {t: set() for t in TOPICS}

    def deliver(self, note: Notification) -> None:
        for send in list(self._subscribers.get(note.topic, ())):
            try:
                send.send_nowait(note)
            except anyio.WouldBlock:
                logger.warning("a %s subscriber is not keeping up; a notification was dropped", note.topic)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers[note.topic].discard(send)

    @asynccontextmanager
    async def subscribe(self, topic: Topic) -> AsyncIterator[Subscription]:
        if topic not in TOPICS:
            raise ValueError(f"unknown topic {topic!r}; one of {', '.join(TOPICS)}")
        send, receive = anyio.create_memory_object_stream[Notification](_SUBSCRIBER_BUFFER)
        self._subscribers[topic].add(send)
        try:
            with receive:
                yield Subscription(topic, receive)
        finally:
            self._subscribers[topic].discard(send)
            send.close()

    def close(self) -> None:
        for sends in self._subscribers.values():
            for send in sends:
                send.close()
            sends.clear()


class Store(ABC):
    """The shared state of klink-mcp replicas. Open with `klink_mcp.store.open_store(settings)`.

    Usable as `async with`; `close()` is idempotent. Every method raises `StoreError` when the
    database cannot be reached or written; the messages never contain credentials.
    """

    kind: str = "abstract"
    # How often wait_approval re-reads the record even without a notification (another process
    # may decide it without reaching this one's bus). None: notifications are enough.
    approval_poll_s: float | None = None
    # Whether `publish` reaches other processes (replicas). When False, followers of another
    # process's writes must poll (EventHub.follow does).
    shares_across_processes: bool = False

    def __init__(self) -> None:
        self.instance_id = uuid.uuid4().hex[:12]

    # -- lifecycle ---------------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations.

        Raises:
            StoreError: unreachable, or the schema is newer than this program.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections; later calls raise StoreError."""

    @abstractmethod
    async def ping(self) -> None:
        """Check the database answers (for readiness probes).

        Raises:
            StoreError: it does not.
        """

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- events ------------------------------------------------------------------------------

    @property
    @abstractmethod
    def events(self) -> EventLog:
        """The webhook event store (deduplicated, bounded by retention)."""

    # -- nonces ------------------------------------------------------------------------------

    @abstractmethod
    async def consume_nonce(self, nonce: str, expires_at: datetime) -> bool:
        """Mark `nonce` used; True for the one caller (on any replica) that used it first.

        `expires_at` is when the token carrying the nonce stops being valid; the record is kept
        until then (afterwards the token is refused for its age anyway). An already expired nonce
        is refused (False).

        Raises:
            ValueError: empty nonce.
            StoreError: the database cannot be written.
        """

    # -- approvals ---------------------------------------------------------------------------

    @abstractmethod
    async def create_approval(self, id: str, body: dict[str, Any], expires_at: datetime) -> ApprovalRecord:
        """Store a new pending approval.

        Raises:
            ApprovalExists: `id` is taken.
            ValueError: empty id, or `body` is not JSON-serialisable.
            StoreError: the database cannot be written.
        """

    @abstractmethod
    async def get_approval(self, id: str) -> ApprovalRecord | None:
        """The record (state accounting for expiry), or None if unknown.

        Raises:
            StoreError: the database cannot be read.
        """

    @abstractmethod
    async def decide_approval(
        self, id: str, approve: bool, decided_by: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> ApprovalRecord | None:
        """`pending -> approved|declined`, once. Returns the decided record, or None when it was
        not pending (unknown, already decided, expired) -- the caller lost the race.

        Raises:
            StoreError: the database cannot be written.
        """

    @abstractmethod
    async def consume_approval(self, id: str) -> ApprovalRecord | None:
        """`approved -> consumed`, exactly once across replicas. Returns the consumed record, or
        None when it was not approved and unexpired (the caller must not act).

        Raises:
            StoreError: the database cannot be written.
        """

    async def wait_approval(self, id: str, timeout_s: float) -> ApprovalRecord | None:
        """Wait until the approval leaves `pending` (decided or expired) or `timeout_s` passes.

        Returns the record as last read (still `pending` on timeout), or None for an unknown id.

        Raises:
            StoreError: the database cannot be read.
        """
        deadline = anyio.current_time() + max(0.0, timeout_s)
        async with self.subscribe("approvals") as sub:
            while True:
                record = await self.get_approval(id)
                if record is None or record.state != "pending":
                    return record
                now = anyio.current_time()
                until_expiry = (record.expires_at - utcnow()).total_seconds()
                remaining = min(deadline - now, until_expiry + 0.001)
                if remaining <= 0:
                    return await self.get_approval(id)
                wait = remaining if self.approval_poll_s is None else min(remaining, self.approval_poll_s)
                with anyio.move_on_after(wait):
                    async for note in sub:
                        if note.payload.get("id") == id:
                            break

    @abstractmethod
    async def purge(self, *, keep_s: float = 86_400.0) -> int:
        """Delete nonces past their expiry and approvals that expired more than `keep_s` ago
        (decided or not); returns how many rows went. Safe to run on every replica.

        Raises:
            StoreError: the database cannot be written.
        """

    # -- audit -------------------------------------------------------------------------------

    @abstractmethod
    async def append_audit(self, record: Mapping[str, Any]) -> AuditRecord:
        """Append one audit record (already redacted by the caller).

        Raises:
            ValueError: `record` is not JSON-serialisable.
            StoreError: the database cannot be written.
        """

    @abstractmethod
    async def recent_audit(self, limit: int = 50) -> list[AuditRecord]:
        """The newest audit records first.

        Raises:
            ValueError: `limit` < 1.
            StoreError: the database cannot be read.
        """

    # -- fan-out -----------------------------------------------------------------------------

    @abstractmethod
    async def publish(self, topic: Topic, payload: Mapping[str, Any]) -> None:
        """Tell every subscriber of `topic` on this database (all replicas, this one too).

        Raises:
            ValueError: unknown topic or payload over `MAX_PAYLOAD_BYTES`.
            StoreError: the notification cannot be sent.
        """

    @abstractmethod
    def subscribe(self, topic: Topic) -> AbstractAsyncContextManager[Subscription]:
        """`async with store.subscribe(topic) as sub: async for note in sub: ...`

        Subscribe before the event you wait for can happen: nothing is replayed.

        Raises:
            ValueError: unknown topic.
        """
