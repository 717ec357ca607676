"""The in-memory store: one process, nothing durable. For tests and throwaway demo runs.

Several `MemoryStore` objects may share one `MemoryDatabase` (that is how the contract suite plays
"two replicas on one database"). Every operation is synchronous between awaits, so it is atomic on
the event loop: compare-and-set needs no lock. All stores of one database must run on the same
event loop. This module must not log record bodies or import `mcp`.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

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
from klink_mcp.webhooks.events import KlinkEvent, format_timestamp, parse_event
from klink_mcp.webhooks.store import DEFAULT_RETENTION, MEMORY, StoredEvent, StoreError

__all__ = ["MemoryDatabase", "MemoryEventLog", "MemoryStore"]


def _json_copy(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A deep, JSON-checked copy: the memory store must refuse what a database would refuse."""
    try:
        return dict(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


def effective_state(record: ApprovalRecord, now: datetime) -> ApprovalRecord:
    """The record with `expired` shown for a pending/approved record past its expiry."""
    if record.state in ("pending", "approved") and record.expires_at <= now:
        return replace(record, state="expired")
    return record


@dataclass
class MemoryDatabase:
    """The shared state behind one or more `MemoryStore`s."""

    retention: int = DEFAULT_RETENTION
    events: OrderedDict[int, tuple[str, StoredEvent]] = field(default_factory=OrderedDict)
    by_key: dict[str, int] = field(default_factory=dict)
    next_event_id: int = 1
    nonces: dict[str, datetime] = field(default_factory=dict)
    approvals: dict[str, ApprovalRecord] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    bus: LocalBus = field(default_factory=LocalBus)


class MemoryEventLog:
    """`EventLog` over a `MemoryDatabase` (same semantics as the SQLite `EventStore`)."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self.closed = False

    @property
    def path(self) -> str:
        return MEMORY

    async def connect(self) -> None:
        self._check()

    def _check(self) -> None:
        if self.closed:
            raise StoreError("the event store is closed")

    async def add(self, event: KlinkEvent | Mapping[str, Any]) -> tuple[bool, StoredEvent]:
        parsed = event if isinstance(event, KlinkEvent) else parse_event(event)
        self._check()
        db = self._db
        existing = db.by_key.get(parsed.dedupe_key)
        if existing is not None:
            return False, db.events[existing][1]
        row = StoredEvent(
            id=db.next_event_id,
            event=parsed.event,
            timestamp=parsed.timestamp,
            contact_id=parsed.contact_id,
            received_at=utcnow(),
            data=copy.deepcopy(parsed.data),
        )
        db.next_event_id += 1
        db.events[row.id] = (parsed.dedupe_key, row)
        db.by_key[parsed.dedupe_key] = row.id
        while len(db.events) > db.retention:
            _, (key, _old) = db.events.popitem(last=False)
            db.by_key.pop(key, None)
        return True, row

    def _matching(
        self, event_type: str | None, contact_id: str | None, since: datetime | None
    ) -> list[StoredEvent]:
        since_text = format_timestamp(since) if since is not None else None
        rows = []
        for _, row in reversed(self._db.events.values()):
            if event_type is not None and row.event != event_type:
                continue
            if contact_id is not None and row.contact_id != contact_id:
                continue
            if since_text is not None and format_timestamp(row.timestamp) < since_text:
                continue
            rows.append(row)
        return rows

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
        self._check()
        return self._matching(event_type, contact_id, since)[offset : offset + limit]

    async def count(
        self, *, event_type: str | None = None, contact_id: str | None = None, since: datetime | None = None
    ) -> int:
        self._check()
        return len(self._matching(event_type, contact_id, since))

    async def after(self, last_id: int, *, limit: int = 500) -> list[StoredEvent]:
        self._check()
        return [row for event_id, (_, row) in self._db.events.items() if event_id > last_id][:limit]

    async def max_id(self) -> int:
        self._check()
        return next(reversed(self._db.events)) if self._db.events else 0

    async def close(self) -> None:
        self.closed = True


class MemoryStore(Store):
    """`Store` in process memory. Pass the same `database` to several instances to share state."""

    kind = "memory"

    def __init__(self, database: MemoryDatabase | None = None, *, retention: int = DEFAULT_RETENTION) -> None:
        """Raises:
        ValueError: `retention` < 1.
        """
        super().__init__()
        if retention < 1:
            raise ValueError("retention must be at least 1")
        self.database = database if database is not None else MemoryDatabase(retention=retention)
        self._events = MemoryEventLog(self.database)
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    async def open(self) -> None:
        self._check()

    async def close(self) -> None:
        self._closed = True
        await self._events.close()

    async def ping(self) -> None:
        self._check()

    @property
    def events(self) -> EventLog:
        return self._events

    async def consume_nonce(self, nonce: str, expires_at: datetime) -> bool:
        if not nonce:
            raise ValueError("nonce must not be empty")
        self._check()
        now = utcnow()
        expires_at = as_utc(expires_at)
        if expires_at <= now:
            return False
        nonces = self.database.nonces
        if nonce in nonces:
            return False
        nonces[nonce] = expires_at
        if len(nonces) % 256 == 0:
            for key in [k for k, exp in nonces.items() if exp <= now]:
                del nonces[key]
        return True

    async def create_approval(self, id: str, body: dict[str, Any], expires_at: datetime) -> ApprovalRecord:
        if not id:
            raise ValueError("approval id must not be empty")
        self._check()
        record = ApprovalRecord(
            id=id,
            state="pending",
            body=_json_copy(body, "approval body"),
            created_at=utcnow(),
            expires_at=as_utc(expires_at),
        )
        if id in self.database.approvals:
            raise ApprovalExists(f"approval {id!r} already exists")
        self.database.approvals[id] = record
        return record

    async def get_approval(self, id: str) -> ApprovalRecord | None:
        self._check()
        record = self.database.approvals.get(id)
        return None if record is None else effective_state(record, utcnow())

    async def decide_approval(
        self, id: str, approve: bool, decided_by: dict[str, Any], extra: dict[str, Any] | None = None
    ) -> ApprovalRecord | None:
        self._check()
        who = _json_copy(decided_by, "decided_by")
        more = None if extra is None else _json_copy(extra, "extra")
        now = utcnow()
        record = self.database.approvals.get(id)
        if record is None or record.state != "pending" or record.expires_at <= now:
            return None
        decided = replace(
            record,
            state="approved" if approve else "declined",
            decided_at=now,
            decided_by=who,
            extra=more,
        )
        self.database.approvals[id] = decided
        self._notify_approval(id, decided.state)
        return decided

    async def consume_approval(self, id: str) -> ApprovalRecord | None:
        self._check()
        now = utcnow()
        record = self.database.approvals.get(id)
        if record is None or record.state != "approved" or record.expires_at <= now:
            return None
        consumed = replace(record, state="consumed", consumed_at=now)
        self.database.approvals[id] = consumed
        return consumed

    async def purge(self, *, keep_s: float = 86_400.0) -> int:
        self._check()
        now = utcnow()
        cutoff = now - timedelta(seconds=keep_s)
        db = self.database
        nonces = [k for k, exp in db.nonces.items() if exp <= now]
        approvals = [k for k, r in db.approvals.items() if r.expires_at < cutoff]
        for key in nonces:
            del db.nonces[key]
        for key in approvals:
            del db.approvals[key]
        return len(nonces) + len(approvals)

    def _notify_approval(self, id: str, state: str) -> None:
        self.database.bus.deliver(Notification("approvals", {"id": id, "state": state}, self.instance_id))

    async def append_audit(self, record: Mapping[str, Any]) -> AuditRecord:
        self._check()
        audit = self.database.audit
        row = AuditRecord(id=len(audit) + 1, at=utcnow(), record=_json_copy(record, "audit record"))
        audit.append(row)
        return row

    async def recent_audit(self, limit: int = 50) -> list[AuditRecord]:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._check()
        return list(reversed(self.database.audit[-limit:]))

    async def publish(self, topic: Topic, payload: Mapping[str, Any]) -> None:
        check_payload(topic, payload)
        self._check()
        self.database.bus.deliver(Notification(topic, _json_copy(payload, "payload"), self.instance_id))

    def subscribe(self, topic: Topic) -> AbstractAsyncContextManager[Subscription]:
        return self.database.bus.subscribe(topic)
