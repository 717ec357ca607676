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

This module must not import `mcp`, the tool layer or the K-LINK client, and must not log approval
ids (an id is the capability to open the page).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from typing import Any, Literal, Protocol

import anyio
from pydantic import BaseModel, ConfigDict, Field

from klink_mcp.guard.canonical import canonical_json

__all__ = [
    "ApprovalRecord",
    "ApprovalState",
    "ApprovalStore",
    "DecidedBy",
    "InMemoryApprovalStore",
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
