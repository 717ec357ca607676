"""Pending approvals: what a person is asked to approve on the approval page, and what they decided.

An `ApprovalRecord` holds one guarded call exactly as it will run: the tool, the normalised
arguments, the preview the person sees, the `binding` (a digest of every fact the preview states,
the target's version included), an expiry, and a state::

    pending --decide--> approved --consume--> consumed
       |                   |
       +--decide--> declined
       +--expire--> expired <--expire--+   (also: superseded when the target changed)

Every transition is a compare-and-set on the current state (and the expiry), so a SQL store can
implement each as one ``UPDATE approvals SET state = ... WHERE id = ? AND state = 'approved' AND
expires_at > ?`` and read the row count: of two racing consumers exactly one wins. Single use is the
store's job, not the caller's. Records are plain JSON (`ApprovalRecord.model_dump(mode="json")`).

`key` names "the same call" (tool + argument digest + requesting principal); `latest(key)` returns the
newest record still attached to that key, `release(key, id)` detaches it (a decline is reported
once; the next identical call opens a fresh approval).

`StoreApprovalStore` keeps the records in the shared store (`klink_mcp.store.Store`), so an
approval decided on one replica's page is consumed, once, by whichever replica the next call lands
on: decide and consume are the store's compare-and-set statements. The store has no index by key,
so the ids of one key are a sequence derived from the key under a secret shared by the replicas
(``id_n = HMAC(secret, key|n)``, unguessable without the secret): `latest(key)` reads ids 0, 1, ...
until one is missing, and `new_id(key)` is the next one (two replicas racing to create it: one
gets `ValueError` and re-reads).

This module must not import `mcp`, the tool layer or the K-LINK client, and must not log approval
ids (an id is the capability to open the page).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
from pydantic import BaseModel, ConfigDict, Field

from klink_mcp.guard.canonical import canonical_json

if TYPE_CHECKING:
    from klink_mcp.store.base import ApprovalRecord as StoredApproval
    from klink_mcp.store.base import Store

__all__ = [
    "ApprovalRecord",
    "ApprovalState",
    "ApprovalStore",
    "DecidedBy",
    "InMemoryApprovalStore",
    "StoreApprovalStore",
    "approval_key",
    "approval_ref",
    "new_approval_id",
]

ApprovalState = Literal["pending", "approved", "declined", "expired", "consumed"]

_ID_BYTES = 24  # 192 bits: unguessable, and short enough for a link


def new_approval_id() -> str:
    """A fresh unguessable approval id (192 random bits, url-safe)."""
    return secrets.token_urlsafe(_ID_BYTES)


def approval_key(tool: str, args_digest: str, requester: str | None) -> str:
    """The key that makes two calls "the same call": tool, normalised arguments and who asked."""
    return hashlib.sha256(
        canonical_json({"tool": tool, "args": args_digest, "requester": requester}).encode("utf-8")
    ).hexdigest()


def approval_ref(approval_id: str) -> str:
    """A short, non-secret reference to an approval for logs and the audit trail (not the id itself)."""
    return hashlib.sha256(approval_id.encode("utf-8")).hexdigest()[:16]


class DecidedBy(BaseModel):
    """Who decided, how and from where (the page's client address and user agent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    via: Literal["page", "url_elicitation"]
    client: str | None = None
    user_agent: str | None = Field(default=None, max_length=400)
    person: str | None = Field(default=None, description="The signed-in person who decided (OAuth), if any.")
    request_id: str | None = Field(default=None, description="The request id of the decision, if any.")


class ApprovalRecord(BaseModel):
    """One guarded call waiting for (or holding) a person's decision. JSON-serialisable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    key: str
    tool: str
    args: dict[str, Any] = Field(description="The normalised arguments the call runs with.")
    args_digest: str
    binding: str = Field(description="Digest of every fact the preview states (target version included).")
    preview: dict[str, Any] = Field(description="The Preview as JSON, exactly as shown.")
    target_version: str | None = None
    text_field: str | None = Field(default=None, description="Argument holding text sent to a customer.")
    editable: bool = Field(default=False, description="The person may edit text_field before approving.")
    requester: str | None = Field(default=None, description="Authenticated principal that asked, if any.")
    request_id: str | None = Field(default=None, description="The request id of the call that asked.")
    delivery: Literal["page", "url_elicitation"] = "page"
    created_at: float
    expires_at: float
    state: ApprovalState = "pending"
    decided_at: float | None = None
    decided_by: DecidedBy | None = None
    approved_text: str | None = Field(default=None, description="The text the person approved (cleaned).")
    removed_invisible: int = Field(default=0, description="Invisible characters removed from the text.")
    consumed_at: float | None = None

    def state_at(self, now: float) -> ApprovalState:
        """The state as of `now`: a pending or approved record past its expiry counts as expired."""
        if self.state in ("pending", "approved") and now >= self.expires_at:
            return "expired"
        return self.state


class ApprovalStore(Protocol):
    """Where pending approvals live. Every transition is an atomic compare-and-set.

    Implementations: `InMemoryApprovalStore` (one process); a SQL store implements each method as one
    statement (see the module docstring).
    """

    async def new_id(self, key: str) -> str:
        """The id to give the next record of `key`."""

    async def create(self, record: ApprovalRecord) -> None:
        """Store a new pending record and attach it to its key (it becomes `latest(key)`).

        Raises:
            ValueError: a record with this id exists.
        """

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        """The record with this id, or None."""

    async def latest(self, key: str) -> ApprovalRecord | None:
        """The newest record attached to `key`, or None."""

    async def release(self, key: str, approval_id: str) -> None:
        """Detach `approval_id` from `key` if it is still the latest there (no-op otherwise)."""

    async def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        now: float,
        decided_by: DecidedBy,
        approved_text: str | None = None,
        removed_invisible: int = 0,
    ) -> ApprovalRecord | None:
        """pending -> approved/declined, only if pending and not expired at `now`; the new record or None."""

    async def consume(self, approval_id: str, *, now: float) -> ApprovalRecord | None:
        """approved -> consumed, only if approved and not expired at `now`: exactly one caller wins."""

    async def expire(self, approval_id: str, *, now: float, force: bool = False) -> ApprovalRecord | None:
        """pending/approved -> expired when past expiry at `now` (or at once with `force`, e.g. the
        target changed); the new record or None when nothing changed."""

    async def wait_decided(self, approval_id: str, timeout_s: float) -> ApprovalRecord | None:
        """Wait (at most `timeout_s`) until the record is no longer pending; the record as it then is."""


class InMemoryApprovalStore:
    """`ApprovalStore` in one process, on one event loop (no await inside a transition: each is atomic).

    Keeps at most `max_records` records; the oldest are dropped first (their calls then need a fresh
    approval, which is safe).
    """

    def __init__(self, max_records: int = 1000) -> None:
        """
        Raises:
            ValueError: `max_records` is smaller than 1.
        """
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._records: OrderedDict[str, ApprovalRecord] = OrderedDict()
        self._by_key: dict[str, str] = {}
        self._decided: dict[str, anyio.Event] = {}
        self._max = max_records

    def __repr__(self) -> str:
        return f"InMemoryApprovalStore(records={len(self._records)})"

    async def new_id(self, key: str) -> str:
        """See `ApprovalStore.new_id`: a fresh random id."""
        return new_approval_id()

    async def create(self, record: ApprovalRecord) -> None:
        """See `ApprovalStore.create`.

        Raises:
            ValueError: a record with this id exists.
        """
        if record.id in self._records:
            raise ValueError("duplicate approval id")
        while len(self._records) >= self._max:
            old_id, old = self._records.popitem(last=False)
            if self._by_key.get(old.key) == old_id:
                del self._by_key[old.key]
            event = self._decided.pop(old_id, None)
            if event is not None:
                event.set()
        self._records[record.id] = record
        self._by_key[record.key] = record.id
        self._decided[record.id] = anyio.Event()

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        """See `ApprovalStore.get`."""
        return self._records.get(approval_id)

    async def latest(self, key: str) -> ApprovalRecord | None:
        """See `ApprovalStore.latest`."""
        approval_id = self._by_key.get(key)
        return None if approval_id is None else self._records.get(approval_id)

    async def release(self, key: str, approval_id: str) -> None:
        """See `ApprovalStore.release`."""
        if self._by_key.get(key) == approval_id:
            del self._by_key[key]

    def _swap(
        self, approval_id: str, expected: tuple[ApprovalState, ...], **changes: Any
    ) -> ApprovalRecord | None:
        current = self._records.get(approval_id)
        if current is None or current.state not in expected:
            return None
        updated = current.model_copy(update=changes)
        self._records[approval_id] = updated
        if current.state == "pending":
            event = self._decided.get(approval_id)
            if event is not None:
                event.set()
        return updated

    async def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        now: float,
        decided_by: DecidedBy,
        approved_text: str | None = None,
        removed_invisible: int = 0,
    ) -> ApprovalRecord | None:
        """See `ApprovalStore.decide`."""
        current = self._records.get(approval_id)
        if current is None or now >= current.expires_at:
            return None
        return self._swap(
            approval_id,
            ("pending",),
            state="approved" if approve else "declined",
            decided_at=now,
            decided_by=decided_by,
            approved_text=approved_text if approve else None,
            removed_invisible=removed_invisible if approve else 0,
        )

    async def consume(self, approval_id: str, *, now: float) -> ApprovalRecord | None:
        """See `ApprovalStore.consume`."""
        current = self._records.get(approval_id)
        if current is None or now >= current.expires_at:
            return None
        return self._swap(approval_id, ("approved",), state="consumed", consumed_at=now)

    async def expire(self, approval_id: str, *, now: float, force: bool = False) -> ApprovalRecord | None:
        """See `ApprovalStore.expire`."""
        current = self._records.get(approval_id)
        if current is None or (not force and now < current.expires_at):
            return None
        return self._swap(approval_id, ("pending", "approved"), state="expired")

    async def wait_decided(self, approval_id: str, timeout_s: float) -> ApprovalRecord | None:
        """See `ApprovalStore.wait_decided`."""
        event = self._decided.get(approval_id)
        record = self._records.get(approval_id)
        if event is None or record is None:
            return record
        if record.state == "pending":
            with anyio.move_on_after(timeout_s):
                await event.wait()
        return self._records.get(approval_id)


_RELEASED = "released"  # body marker of a placeholder that detaches a key's previous record
_MAX_GENERATIONS = 10_000  # a key re-approved more often than this is refused rather than probed forever


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class StoreApprovalStore:
    """`ApprovalStore` over the shared store: single use across replicas (see the module docstring).

    `secret` derives the ids (replicas must share it: `KLINK_GUARD_SECRET`). Transition times come
    from the database's clock; the `now` arguments are not used.
    """

    def __init__(self, store: Store, secret: bytes) -> None:
        self._store = store
        self._secret = secret

    def __repr__(self) -> str:
        return f"StoreApprovalStore(store={self._store.kind!r})"

    def use_store(self, store: Store) -> None:
        """Read and write `store` from now on (a reopened server run)."""
        self._store = store

    def _id(self, key: str, n: int) -> str:
        mac = hmac.new(self._secret, f"{key}|{n}".encode(), hashlib.sha256).digest()[:_ID_BYTES]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    async def _top(self, key: str) -> tuple[int, StoredApproval | None]:
        """The number of stored ids of `key` and the newest stored record (None when there is none)."""
        newest: StoredApproval | None = None
        for n in range(_MAX_GENERATIONS):
            found = await self._store.get_approval(self._id(key, n))
            if found is None:
                return n, newest
            newest = found
        raise ValueError("too many approvals for one call")

    @staticmethod
    def _record(stored: StoredApproval) -> ApprovalRecord | None:
        body = dict(stored.body)
        if body.get(_RELEASED):
            return None
        extra = stored.extra or {}
        state: ApprovalState = "expired" if extra.get("superseded") else stored.state
        if state == "expired" and not extra.get("superseded"):
            # The store reads a record past its expiry as expired by itself; the guard tells that apart
            # from one it retired (superseded) to say "the earlier approval expired" once, as the
            # memory store does. `state_at` still reads it as expired.
            state = "approved" if stored.decided_at is not None else "pending"
        decided_by = None
        if stored.decided_by and not extra.get("superseded"):
            decided_by = DecidedBy.model_validate(stored.decided_by)
        body.update(
            state=state,
            decided_at=_ts(stored.decided_at),
            decided_by=decided_by,
            approved_text=extra.get("approved_text"),
            removed_invisible=int(extra.get("removed_invisible", 0)),
            consumed_at=_ts(stored.consumed_at),
        )
        return ApprovalRecord.model_validate(body)

    async def new_id(self, key: str) -> str:
        """See `ApprovalStore.new_id`: the next id of the key's sequence."""
        count, _ = await self._top(key)
        return self._id(key, count)

    async def create(self, record: ApprovalRecord) -> None:
        """See `ApprovalStore.create`.

        Raises:
            ValueError: a record with this id exists (another replica created it first).
            StoreError: the store cannot be written.
        """
        from klink_mcp.store.base import ApprovalExists

        body = record.model_dump(
            mode="json",
            exclude={
                "state",
                "decided_at",
                "decided_by",
                "approved_text",
                "removed_invisible",
                "consumed_at",
            },
        )
        try:
            await self._store.create_approval(record.id, body, datetime.fromtimestamp(record.expires_at, UTC))
        except ApprovalExists:
            raise ValueError("duplicate approval id") from None

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        """See `ApprovalStore.get`."""
        stored = await self._store.get_approval(approval_id)
        return None if stored is None else self._record(stored)

    async def latest(self, key: str) -> ApprovalRecord | None:
        """See `ApprovalStore.latest`."""
        _, stored = await self._top(key)
        return None if stored is None else self._record(stored)

    async def release(self, key: str, approval_id: str) -> None:
        """See `ApprovalStore.release`: a placeholder after it makes `latest(key)` None."""
        from klink_mcp.store.base import ApprovalExists

        count, stored = await self._top(key)
        if stored is None or stored.id != approval_id:
            return
        try:
            await self._store.create_approval(
                self._id(key, count), {_RELEASED: True}, datetime.now(UTC) + timedelta(seconds=1)
            )
        except ApprovalExists:
            pass  # another replica moved the key on at the same time

    async def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        now: float,
        decided_by: DecidedBy,
        approved_text: str | None = None,
        removed_invisible: int = 0,
    ) -> ApprovalRecord | None:
        """See `ApprovalStore.decide` (one compare-and-set in the store)."""
        extra = {"approved_text": approved_text, "removed_invisible": removed_invisible} if approve else None
        stored = await self._store.decide_approval(
            approval_id, approve, decided_by.model_dump(mode="json"), extra
        )
        return None if stored is None else self._record(stored)

    async def consume(self, approval_id: str, *, now: float) -> ApprovalRecord | None:
        """See `ApprovalStore.consume`: exactly one caller on any replica wins."""
        stored = await self._store.consume_approval(approval_id)
        return None if stored is None else self._record(stored)

    async def expire(self, approval_id: str, *, now: float, force: bool = False) -> ApprovalRecord | None:
        """See `ApprovalStore.expire`. The store expires by time itself; `force` retires a pending
        record (declined, marked superseded) or an approved one (consumed, so it can never run)."""
        stored = await self._store.get_approval(approval_id)
        if stored is None:
            return None
        if not force:
            return self._record(stored) if stored.state == "expired" else None
        if stored.state == "pending":
            via = stored.body.get("delivery", "page")
            retired = await self._store.decide_approval(
                approval_id, False, {"via": via}, {"superseded": True}
            )
        elif stored.state == "approved":
            retired = await self._store.consume_approval(approval_id)
        else:
            return None
        if retired is None:
            return None
        record = self._record(retired)
        return None if record is None else record.model_copy(update={"state": "expired"})

    async def wait_decided(self, approval_id: str, timeout_s: float) -> ApprovalRecord | None:
        """See `ApprovalStore.wait_decided` (woken by the store's notifications, any replica)."""
        stored = await self._store.wait_approval(approval_id, timeout_s)
        return None if stored is None else self._record(stored)
