"""PostgreSQL-only behaviour: the notification connection survives being cut."""

from __future__ import annotations

import anyio
import pytest

pytestmark = pytest.mark.anyio


async def test_fan_out_resumes_after_the_listening_connection_is_killed(postgres_url: str) -> None:
    import psycopg

    from klink_mcp.store.postgres import PostgresStore

    async with PostgresStore(postgres_url) as publisher, PostgresStore(postgres_url) as listener:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cur = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                (f"klink-listener-{listener.instance_id}",),
            )
            assert [row[0] for row in await cur.fetchall()] == [True]
        received = None
        with anyio.fail_after(20):
            async with listener.subscribe("tools") as sub:
                # Publish until the reconnected listener hears one (each try waits a bounded time).
                while received is None:
                    await publisher.publish("tools", {"try": 1})
                    with anyio.move_on_after(0.5):
                        received = await sub.receive()
            await listener.ping()  # the readiness probe agrees: the listener is back
        assert received.payload == {"try": 1}
        assert received.origin == publisher.instance_id


async def test_a_store_built_synchronously_opens_on_first_use_like_the_sqlite_event_store(
    postgres_url: str,
) -> None:
    from klink_mcp.config import load_settings
    from klink_mcp.store import create_store
    from klink_mcp.webhooks.hub import EventHub
    from tests.webhooks._support import event_dict

    store = create_store(load_settings(env={"KLINK_DATABASE_URL": postgres_url}))  # no I/O yet
    hub = EventHub(store.events, fanout=store)  # what build_server can do before its lifespan
    try:
        with anyio.fail_after(20):
            stored, row = await hub.ingest(event_dict(n=1))
        assert stored and row.id >= 1
        assert await store.events.count() == 1
    finally:
        await store.close()
