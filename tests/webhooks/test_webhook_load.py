"""Many concurrent senders: no event lost, none stored twice.

Runs through the ASGI transport: the point is concurrency and deduplication, and a shared loopback
socket would make the test measure HTTP parsing on one busy core (bench/bench_webhooks.py measures
the socket path; test_webhook_end_to_end.py and test_webhook_receiver.py exercise it).
"""

from __future__ import annotations

import json
from collections import Counter

import anyio
import httpx2
import pytest

from klink_mcp.config import Settings
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.receiver import WEBHOOK_PATH, create_webhook_app
from klink_mcp.webhooks.store import EventStore

from ._support import body_of, event_dict, signed

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SENDERS = 20
EVENTS_PER_SENDER = 100
REDELIVER_EVERY = 10  # every 10th event is delivered again (half verbatim, half re-serialised)


async def test_2000_events_from_20_concurrent_senders_with_redeliveries_are_stored_exactly_once(
    settings: Settings, store: EventStore
) -> None:
    hub = EventHub(store)
    outcomes: Counter[str] = Counter()

    async def sender(worker: int, client: httpx2.AsyncClient) -> None:
        for n in range(EVENTS_PER_SENDER):
            event = event_dict(
                "message.inbound",
                data={"id": f"m-{worker}-{n}", "contactId": f"c-{worker}", "message": f"#{n}"},
                timestamp=f"2026-01-09T03:{worker:02d}:{n % 60:02d}.{n:06d}Z",
            )
            bodies = [body_of(event)]
            if n % REDELIVER_EVERY == 0:
                bodies.append(body_of(event) if n % 20 else json.dumps(event, indent=1).encode())
            for body in bodies:
                response = await client.post(WEBHOOK_PATH, content=body, headers=signed(body))
                assert response.status_code == 200, response.text
                outcomes["duplicate" if response.json()["duplicate"] else "stored"] += 1

    transport = httpx2.ASGITransport(app=create_webhook_app(hub, settings))
    with anyio.fail_after(60):
        async with (
            httpx2.AsyncClient(transport=transport, base_url="http://receiver.test") as client,
            anyio.create_task_group() as tg,
        ):
            for worker in range(SENDERS):
                tg.start_soon(sender, worker, client)

    total = SENDERS * EVENTS_PER_SENDER
    redeliveries = SENDERS * (EVENTS_PER_SENDER // REDELIVER_EVERY)
    assert outcomes == Counter(stored=total, duplicate=redeliveries)
    assert await store.count() == total
    rows = await store.recent(limit=total + 1)
    message_ids = Counter(row.data["id"] for row in rows)
    assert len(message_ids) == total and set(message_ids.values()) == {1}
    assert sorted(row.id for row in rows) == list(range(1, total + 1))
