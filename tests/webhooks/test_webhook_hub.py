"""The hub: store first, then tell subscribers about new events only, isolated from their failures."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from klink_mcp.webhooks.events import InvalidEvent
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.store import EventStore, StoredEvent

from ._support import event_dict

pytestmark = pytest.mark.anyio


async def test_subscribers_hear_each_new_event_once_and_never_a_redelivery(hub: EventHub) -> None:
    heard: list[int] = []

    async def listener(event: StoredEvent) -> None:
        heard.append(event.id)

    hub.subscribe(listener)
    assert (await hub.ingest(event_dict(n=1)))[0]
    assert not (await hub.ingest(event_dict(n=1)))[0]
    await hub.ingest(event_dict(n=2))
    assert heard == [1, 2]


async def test_the_event_is_stored_before_subscribers_run(hub: EventHub) -> None:
    counts: list[int] = []

    async def listener(event: StoredEvent) -> None:
        counts.append(await hub.store.count())

    hub.subscribe(listener)
    await hub.ingest(event_dict())
    assert counts == [1]


async def test_a_failing_subscriber_neither_fails_the_ingest_nor_silences_the_others(
    hub: EventHub, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[int] = []

    async def broken(event: StoredEvent) -> None:
        raise RuntimeError("boom")

    async def healthy(event: StoredEvent) -> None:
        heard.append(event.id)

    hub.subscribe(broken)
    hub.subscribe(healthy)
    with caplog.at_level(logging.ERROR, logger="klink_mcp.webhooks.hub"):
        stored, _ = await hub.ingest(event_dict())
    assert stored
    assert heard == [1]
    assert "subscriber failed" in caplog.text


async def test_a_hanging_subscriber_is_cut_off_by_the_notify_timeout(store: EventStore) -> None:
    hub = EventHub(store, notify_timeout_s=0.05)

    async def hangs(event: StoredEvent) -> None:
        await anyio.sleep_forever()

    hub.subscribe(hangs)
    with anyio.fail_after(5):
        stored, _ = await hub.ingest(event_dict())
    assert stored


async def test_unsubscribing_stops_notifications(hub: EventHub) -> None:
    heard: list[int] = []

    async def listener(event: StoredEvent) -> None:
        heard.append(event.id)

    unsubscribe = hub.subscribe(listener)
    await hub.ingest(event_dict(n=1))
    unsubscribe()
    unsubscribe()  # idempotent
    await hub.ingest(event_dict(n=2))
    assert heard == [1]


async def test_an_invalid_event_is_refused_before_storage(hub: EventHub) -> None:
    with pytest.raises(InvalidEvent):
        await hub.ingest({"event": "contact.create"})
    assert await hub.store.count() == 0


async def test_catch_up_announces_events_another_process_stored_exactly_once(db_path: Path) -> None:
    async with EventStore(db_path) as receiving_store, EventStore(db_path) as serving_store:
        receiver = EventHub(receiving_store)  # e.g. `klink-mcp webhooks`
        server = EventHub(serving_store)  # e.g. the stdio server, same database
        heard: list[int] = []

        async def listener(event: StoredEvent) -> None:
            heard.append(event.id)

        server.subscribe(listener)
        await receiver.ingest(event_dict(n=0))
        assert await server.catch_up() == 0  # first call only sets the cursor: no history replay
        await receiver.ingest(event_dict(n=1))
        await receiver.ingest(event_dict(n=2))
        await server.ingest(event_dict(n=3))  # its own event: announced by ingest, not again by catch_up
        assert await server.catch_up() == 2
        assert await server.catch_up() == 0
        assert heard == [4, 2, 3]


async def test_follow_keeps_polling_with_the_injected_sleep(db_path: Path) -> None:
    async with EventStore(db_path) as a, EventStore(db_path) as b:
        receiver, server = EventHub(a), EventHub(b)
        heard = anyio.Event()
        polls = 0

        async def listener(event: StoredEvent) -> None:
            heard.set()

        async def fake_sleep(_: float) -> None:
            nonlocal polls
            polls += 1
            if polls == 2:
                await receiver.ingest(event_dict())
            await anyio.lowlevel.checkpoint()

        server.subscribe(listener)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: server.follow(poll_interval_s=1.0, sleep=fake_sleep))
                await heard.wait()
                tg.cancel_scope.cancel()
