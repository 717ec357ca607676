"""Helpers shared by the webhook tests (bodies, signatures, waiting without sleeps)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from mcp import Client, MCPDeprecationWarning
from mcp.types import ResourceUpdatedNotification

from klink_mcp.webhooks.events import compute_signature

SECRET = "whsec-test-0123456789abcdef0123456789"  # 32+ bytes, as the settings require
TIMESTAMP = "2026-01-09T03:42:38.000000Z"


def event_dict(
    event: str = "message.inbound",
    *,
    data: dict[str, Any] | None = None,
    timestamp: str = TIMESTAMP,
    n: int = 1,
) -> dict[str, Any]:
    if data is None:
        if event.startswith("contact."):
            data = {"id": f"contact-{n}", "name": f"Customer {n}", "channel": "whatsapp"}
        elif event == "room.solved":
            data = {
                "id": f"ticket-{n}",
                "ticketNumber": 1000 + n,
                "title": "Refund",
                "status": "resolved",
                "contactId": f"contact-{n}",
            }
        else:
            data = {
                "id": f"msg-{n}",
                "contactId": f"contact-{n}",
                "channel": "line",
                "messageType": "text",
                "message": f"hello {n}",
                "createdAt": timestamp,
            }
    return {"event": event, "timestamp": timestamp, "data": data}


def body_of(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"content-type": "application/json", "x-signature": compute_signature(secret.encode(), body)}


async def wait_until(predicate: Callable[[], bool], *, within_s: float = 5.0) -> None:
    """Yield to the loop until `predicate()` holds; fail after `within_s` seconds (no fixed sleeps)."""
    with anyio.fail_after(within_s):
        while not predicate():
            await anyio.lowlevel.checkpoint()
            await anyio.sleep(0.001)


class LegacyInbox:
    """Collects notifications/resources/updated on a handshake-era client."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(message.params.uri)
            self._changed.set()

    async def wait_for(self, uri: str) -> None:
        with anyio.fail_after(5):
            while uri not in self.uris:
                self._changed = anyio.Event()
                await self._changed.wait()


async def legacy_subscribe(client: Client, uri: str) -> None:
    with pytest.warns(MCPDeprecationWarning):  # the verb is removed at 2026-07-28, valid for legacy servers
        await client.subscribe_resource(uri)


async def legacy_unsubscribe(client: Client, uri: str) -> None:
    with pytest.warns(MCPDeprecationWarning):
        await client.unsubscribe_resource(uri)


async def call_list(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("list_recent_events", arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content
