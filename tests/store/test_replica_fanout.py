"""Two servers on one PostgreSQL store behave as replicas: form changes and events reach each other's clients.

Both `build_server` objects share the sandbox tenant (the one K-LINK) and `KLINK_DATABASE_URL`; each
has its own clients. A form refresh on replica A makes replica B re-read its forms and tell its own
handshake-era client that the tool list changed; a webhook event ingested by A reaches B's hub
subscribers (through LISTEN/NOTIFY, no polling).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ToolListChangedNotification

from klink_mcp.sandbox import SandboxTenant
from klink_mcp.webhooks.store import StoredEvent
from tests.helpers.server import make_server
from tests.server.test_form_schemas import _changed_fields, _schema
from tests.webhooks._support import event_dict

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_a_form_change_seen_by_one_replica_reaches_the_clients_of_another(postgres_url: str) -> None:
    tenant = SandboxTenant.seeded()
    replica_a = make_server(tenant, database_url=postgres_url)
    replica_b = make_server(tenant, database_url=postgres_url)
    told = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            told.set()

    with anyio.fail_after(30):
        async with (
            Client(replica_b, mode="legacy", message_handler=on_message) as on_b,
            Client(replica_a, mode="legacy") as on_a,
        ):
            before = (await on_b.list_tools()).tools
            assert "cf_test_added_tier" not in str(_schema(before, "create_contact"))
            tenant.set_form_fields("contact", _changed_fields(tenant))
            refreshed = await on_a.call_tool("refresh_form_schemas", {})
            assert refreshed.structured_content is not None
            assert refreshed.structured_content["changed"] == ["contact"]
            await told.wait()  # B re-read the forms because A said so, and told its client
            after = (await on_b.list_tools()).tools
            assert "cf_test_added_tier" in str(_schema(after, "create_contact"))


async def test_an_event_ingested_by_one_replica_reaches_the_subscribers_of_another(postgres_url: str) -> None:
    tenant = SandboxTenant.seeded()
    replica_a = make_server(tenant, database_url=postgres_url)
    replica_b = make_server(tenant, database_url=postgres_url)
    seen: list[StoredEvent] = []
    arrived = anyio.Event()

    async def on_event(event: StoredEvent) -> None:
        seen.append(event)
        arrived.set()

    with anyio.fail_after(30):
        async with Client(replica_a, mode="legacy"), Client(replica_b, mode="legacy"):
            replica_b.klink_hub.subscribe(on_event)  # type: ignore[attr-defined]
            # B's listener connects in the background and a cue sent before it listens is not
            # replayed: deliver fresh events until one arrives, then one more that must arrive.
            ingested: list[int] = []
            for n in range(1, 100):
                stored, row = await replica_a.klink_hub.ingest(event_dict(n=n))  # type: ignore[attr-defined]
                assert stored
                ingested.append(row.id)
                with anyio.move_on_after(0.5):
                    await arrived.wait()
                if arrived.is_set():
                    break
            arrived = anyio.Event()
            stored, last = await replica_a.klink_hub.ingest(event_dict(n=1000))  # type: ignore[attr-defined]
            await arrived.wait()
    assert seen[-1].id == last.id and {e.id for e in seen} <= {*ingested, last.id}
