"""K-LINK webhooks: receive, verify, store durably (deduplicated) and publish pushed events.

Modules:

- `events`   what an event is (validation, dedupe key, HMAC signature); no I/O.
- `store`    `EventStore`: the SQLite events database shared by every klink-mcp process.
- `hub`      `EventHub`: store + in-process publish to subscribers (and `follow()` across processes).
- `receiver` the `POST /webhooks/klink` Starlette route/app and `run_receiver` (uvicorn).
- `cli`      `klink-mcp webhooks`.
- `surface`  the MCP tool `list_recent_events`, event resources and their notifications (both eras).
- `emitter`  `WebhookEmitter`: the sandbox's signed, retrying sender.

The names below are importable from here; the HTTP, MCP and sender parts load on first access so that
importing the package (e.g. for `events`) stays cheap. Nothing runs at import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from klink_mcp.webhooks.events import KNOWN_EVENTS, EventType, InvalidEvent, KlinkEvent, parse_event
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.store import EventStore, StoredEvent, StoreError

if TYPE_CHECKING:
    from klink_mcp.webhooks.emitter import WebhookEmitter
    from klink_mcp.webhooks.receiver import (
        RunningReceiver,
        WebhookConfigError,
        create_webhook_app,
        create_webhook_routes,
        run_receiver,
        serve_receiver,
    )
    from klink_mcp.webhooks.surface import register_webhook_surface

__all__ = [
    "KNOWN_EVENTS",
    "EventHub",
    "EventStore",
    "EventType",
    "InvalidEvent",
    "KlinkEvent",
    "RunningReceiver",
    "StoreError",
    "StoredEvent",
    "WebhookConfigError",
    "WebhookEmitter",
    "create_webhook_app",
    "create_webhook_routes",
    "parse_event",
    "register_webhook_surface",
    "run_receiver",
    "serve_receiver",
]

_LAZY = {
    "WebhookEmitter": "emitter",
    "RunningReceiver": "receiver",
    "WebhookConfigError": "receiver",
    "create_webhook_app": "receiver",
    "create_webhook_routes": "receiver",
    "run_receiver": "receiver",
    "serve_receiver": "receiver",
    "register_webhook_surface": "surface",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
