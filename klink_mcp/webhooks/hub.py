"""The event hub: store an incoming event durably, then tell in-process subscribers about it.

`EventHub.ingest` is the one entry point for a received event (the webhook receiver calls it, and so
can tests or a replay tool): it validates, stores (deduplicated) and, **only for a new event**,
awaits each subscriber. Subscribers run after the event is committed, so a slow or failing
subscriber can never lose an event or fail its delivery: failures are logged and skipped, and all
subscribers together get `notify_timeout_s` per event. Subscribers must be quick (publish a cue,
queue work); they run on the receiving request's task.

Several processes may share one events database (say `klink-mcp webhooks` receiving and a stdio
server answering). `EventHub.follow()` lets a process notify its subscribers about events that
*another* process stored, by polling the store's id cursor; events this hub ingested itself are
never announced twice.

Replicas on a shared store (`klink_mcp.store`, PostgreSQL): pass `fanout=store`. `ingest` then
publishes `{"id": ...}` on the store's `events` topic after the commit, and `follow()` listens to
that topic instead of polling (with concurrent writers, ids commit out of order, so a cursor could
skip one). A notification missed while a replica's listener reconnects is not replayed: the event
itself is stored, and every query reads the store.

This module must not log event data (it is customer data) or import `mcp`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from klink_mcp.webhooks.events import KlinkEvent, parse_event
from klink_mcp.webhooks.store import StoredEvent

if TYPE_CHECKING:
    from klink_mcp.store.base import EventLog, Store

__all__ = ["EventHub", "Subscriber"]

logger = logging.getLogger(__name__)

Subscriber = Callable[[StoredEvent], Awaitable[None]]

_REMEMBERED_IDS = 4096  # ids announced recently; only needed to stop follow() re-announcing our own events


class EventHub:
    """An event store (`EventStore` or any `EventLog`) plus publish/subscribe of newly stored events."""

    def __init__(
        self, store: EventLog, *, notify_timeout_s: float = 5.0, fanout: Store | None = None
    ) -> None:
        self._store = store
        self._fanout = fanout
        self._notify_timeout_s = notify_timeout_s
        self._subscribers: dict[object, Subscriber] = {}
        self._announced: OrderedDict[int, None] = OrderedDict()
        self._follow_cursor: int | None = None
        self._follow_lock = anyio.Lock()  # one catch_up at a time (the cursor)

    @property
    def store(self) -> EventLog:
        """The underlying store (for queries)."""
        return self._store

    @property
    def fanout(self) -> Store | None:
        """The shared store notifications go through, if any."""
        return self._fanout

    def use_store(self, store: EventLog, *, fanout: Store | None = None) -> None:
        """Switch to another store (the server opens a fresh one per run); the follow cursor restarts."""
        self._store = store
        self._fanout = fanout
        self._follow_cursor = None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `await callback(event)` for every new event; returns an idempotent unsubscribe function."""
        token = object()
        self._subscribers[token] = callback

        def unsubscribe() -> None:
            self._subscribers.pop(token, None)

        return unsubscribe

    async def ingest(self, raw_event: Mapping[str, Any] | KlinkEvent) -> tuple[bool, StoredEvent]:
        """Validate and store an event; notify subscribers if it was new.

        Returns `(stored, event)`: `stored` is False for a redelivery, with the row stored the first time.

        Raises:
            InvalidEvent: `raw_event` is not a webhook event.
            StoreError: the store cannot be written (nothing was stored; the sender should retry).
        """
        event = raw_event if isinstance(raw_event, KlinkEvent) else parse_event(raw_event)
        stored, row = await self._store.add(event)
        if stored and self._claim(row.id):
            if self._fanout is not None:
                await self._publish(self._fanout, row)
            await self._notify(row)
        return stored, row

    async def _publish(self, fanout: Store, row: StoredEvent) -> None:
        try:
            await fanout.publish("events", {"id": row.id})
        except Exception:  # the event is stored; other replicas only miss a cue
            logger.exception("could not tell other replicas about event id=%s", row.id)

    def _claim(self, event_id: int) -> bool:
        """Whether the caller is the first to announce `event_id` (ingest and catch_up race for it).

        Synchronous, so atomic on the event loop: an event is announced exactly once however the two
        paths interleave, without serialising ingests behind a lock.
        """
        if event_id in self._announced:
            return False
        self._announced[event_id] = None
        while len(self._announced) > _REMEMBERED_IDS:
            self._announced.popitem(last=False)
        return True

    async def _notify(self, event: StoredEvent) -> None:
        with anyio.move_on_after(self._notify_timeout_s) as scope:
            for callback in list(self._subscribers.values()):
                try:
                    await callback(event)
                except Exception:  # isolation boundary: one subscriber must not starve the others
                    logger.exception("event subscriber failed for event id=%s (%s)", event.id, event.event)
        if scope.cancelled_caught:
            logger.warning(
                "event subscribers took longer than %.1fs for event id=%s; the rest were skipped",
                self._notify_timeout_s,
                event.id,
            )

    async def catch_up(self, *, batch: int = 500) -> int:
        """Announce events other processes stored since the last call; returns how many were announced.

        The first call only sets the cursor to the newest stored event (history is not replayed).

        Raises:
            StoreError: the store cannot be read.
        """
        async with self._follow_lock:
            if self._follow_cursor is None:
                self._follow_cursor = await self._store.max_id()
                return 0
            rows = await self._store.after(self._follow_cursor, limit=batch)
            if rows:
                self._follow_cursor = rows[-1].id
            fresh = [row for row in rows if self._claim(row.id)]
            for row in fresh:
                await self._notify(row)
        return len(fresh)

    async def follow(
        self,
        *,
        poll_interval_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """Poll the store forever, announcing events stored by other processes. Cancel to stop.

        A store error is logged and retried at the next poll: a locked or briefly unavailable
        database must not end the follower. With a `fanout` store whose notifications cross
        processes (PostgreSQL), waits for its `events` notifications instead of polling
        (`poll_interval_s` and `sleep` are then unused).
        """
        if self._fanout is not None and self._fanout.shares_across_processes:
            await self._follow_notifications(self._fanout)
            return
        while True:
            try:
                announced = await self.catch_up()
            except Exception:  # keep following; the next poll retries
                logger.exception("following the events database failed; retrying")
                announced = 0
            if announced == 0:
                await sleep(poll_interval_s)

    async def _follow_notifications(self, fanout: Store) -> None:
        async with fanout.subscribe("events") as subscription:
            async for note in subscription:
                event_id = note.payload.get("id")
                if not isinstance(event_id, int) or event_id in self._announced:
                    continue  # ours (already announced) or not an event cue
                try:
                    rows = await self._store.after(event_id - 1, limit=1)
                except Exception:  # keep following; this one cue is lost, the event is stored
                    logger.exception("could not read announced event id=%s", event_id)
                    continue
                if rows and rows[0].id == event_id and self._claim(event_id):
                    await self._notify(rows[0])
