"""The MCP face of received webhook events: a tool, two resources, and change notifications.

`register_event_resources(mcp, hub)` adds to an `MCPServer`:

- resource `klink://events/recent` and template `klink://contacts/{contact_id}/events` (JSON);
- change notifications when the hub stores a new event, in both protocol eras, to subscribed clients
  only: 2026-07-28 clients `subscriptions/listen` with the URIs (delivered through the server's
  `SubscriptionBus`); handshake-era clients `resources/subscribe` and receive
  `notifications/resources/updated` on their connection.

The tool `list_recent_events` (read-only, local: it reads the events database, never K-LINK) is a
`ToolSpec` of the tool inventory (`LIST_RECENT_EVENTS`, handler reading `state.hub`), served like every
other tool by `build_server`; `register_webhook_surface(mcp, hub)` serves the resources and that one
spec on a server of its own (an events-only server).

Every new event updates `klink://events/recent`, and `klink://contacts/<id>/events` when the event
names a contact (ids are percent-encoded in URIs). Notifications are cues to re-read, never payloads.

Handshake-era subscriptions: `MCPServer` does not serve `resources/subscribe`, so this module
registers `resources/subscribe`/`resources/unsubscribe` on its low-level server (the SDK's documented
workaround, through `klink_mcp.sdk_adapter.add_request_handler`) and keeps, per client connection, the set of URIs
it subscribed to (any URI; only URIs somebody publishes ever fire). Other modules publish through
`publish_resource_updated(mcp, uri)`, which reaches both eras. A connection's subscriptions are
dropped when it closes (its `exit_stack`).

Every payload field is untrusted (anyone who can make K-LINK emit an event, or forge nothing but a
customer message, controls it): message text, contact names and ticket titles are customer free text,
sanitized and fenced (`content.untrusted`, the same function and fence format as the tool views);
channel, status and message type are labels (`content.clean_label`); ids are sanitized and capped.
Raw event payloads are never returned, only compact views.
"""

from __future__ import annotations

import json
import logging
import weakref
from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import quote

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams
from pydantic import Field

from klink_mcp.content import UNTRUSTED_NOTE, clean_label, sanitize_text, untrusted
from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.sdk_adapter import add_request_handler, connection_of, subscription_bus_of
from klink_mcp.tools.params import Page, PageSize
from klink_mcp.tools.results import ListResult
from klink_mcp.tools.spec import ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import CompactModel
from klink_mcp.webhooks.events import EventType, format_timestamp
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.store import StoredEvent

__all__ = [
    "CONTACT_EVENTS_TEMPLATE",
    "LIST_RECENT_EVENTS",
    "RECENT_EVENTS_URI",
    "EventItem",
    "RecentEvents",
    "ResourceSubscriptions",
    "contact_events_uri",
    "event_item",
    "list_recent_events",
    "publish_resource_updated",
    "register_event_resources",
    "register_webhook_surface",
    "resource_subscriptions",
]

logger = logging.getLogger(__name__)

RECENT_EVENTS_URI: Final = "klink://events/recent"
CONTACT_EVENTS_TEMPLATE: Final = "klink://contacts/{contact_id}/events"
RESOURCE_LIMIT: Final = 50
TEXT_MAX: Final = 2000
SHORT_MAX: Final = 200
_MAX_URIS_PER_CONNECTION: Final = 1000


def contact_events_uri(contact_id: str) -> str:
    """The resource URI of one contact's events (the id percent-encoded)."""
    return CONTACT_EVENTS_TEMPLATE.replace("{contact_id}", quote(contact_id, safe=""))


# -- views ------------------------------------------------------------------------------------------


class EventItem(CompactModel):
    """One received event, compact. Fields that do not apply to the event type are left out."""

    id: int = Field(description="Local id; grows with arrival order.")
    event: str = Field(description="Event type, e.g. message.inbound.")
    timestamp: str = Field(description="When K-LINK says it happened (ISO-8601 UTC).")
    received_at: str = Field(description="When this server stored it (ISO-8601 UTC).")
    contact_id: str | None = Field(default=None, description="The contact the event is about, if any.")
    channel: str | None = Field(default=None, description="Channel (whatsapp, line, email...).")
    message_id: str | None = Field(default=None, description="message.*: the message id.")
    message_type: str | None = Field(default=None, description="message.*: e.g. text.")
    text: str | None = Field(default=None, description="message.*: the message, fenced as untrusted text.")
    contact_name: str | None = Field(
        default=None, description="contact.*: the contact's name, fenced as untrusted text."
    )
    ticket_id: str | None = Field(default=None, description="room.solved: the ticket id.")
    ticket_number: int | None = Field(default=None, description="room.solved: the ticket number.")
    title: str | None = Field(
        default=None, description="room.solved: the ticket title, fenced as untrusted text."
    )
    status: str | None = Field(default=None, description="room.solved: the ticket status.")


class RecentEvents(ListResult[EventItem]):
    """A page of received events, newest first: the list shape every list tool returns."""


def _short(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return sanitize_text(str(value), max_len=SHORT_MAX)


def _label(value: Any, max_len: int = 60) -> str | None:
    if value is None or value == "":
        return None
    return clean_label(str(value), max_len=max_len) or None


def _free(value: Any, max_len: int = SHORT_MAX, label: str | None = None) -> str | None:
    if value is None or value == "":
        return None
    return untrusted(str(value), label=label, max_len=max_len)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def event_item(event: StoredEvent) -> EventItem:
    """The compact, model-safe view of a stored event."""
    data = event.data
    item = EventItem(
        id=event.id,
        event=event.event,
        timestamp=format_timestamp(event.timestamp),
        received_at=format_timestamp(event.received_at),
        contact_id=_short(event.contact_id),
        channel=_label(data.get("channel")),
    )
    if event.event.startswith("message."):
        message_id = _short(data.get("id"))
        text = data.get("message")
        item.message_id = message_id
        item.message_type = _label(data.get("messageType"))
        if text is not None and text != "":
            direction = "from" if event.event == "message.inbound" else "to"
            label = f"message {message_id or '?'} {direction} contact {item.contact_id or '?'}"
            item.text = _free(text, TEXT_MAX, label)
    elif event.event.startswith("contact."):
        item.contact_name = _free(data.get("name"))
    elif event.event == "room.solved":
        item.ticket_id = _short(data.get("id"))
        item.ticket_number = _int(data.get("ticketNumber"))
        item.title = _free(data.get("title"))
        item.status = _label(data.get("status"))
    return item


# -- subscriptions ----------------------------------------------------------------------------------


class ResourceSubscriptions:
    """Resource-updated publishing for one `MCPServer`, in both protocol eras.

    Handshake era: remembers which connection subscribed to which URIs (`resources/subscribe`).
    2026-07-28: publishes `ResourceUpdated` on the server's subscription bus, which the SDK's
    `subscriptions/listen` handler filters per stream.
    """

    def __init__(self, bus: SubscriptionBus) -> None:
        self._bus = bus
        # Keyed by the SDK's per-connection object (a fresh ServerSession proxy is built per request,
        # so the proxy cannot be the key); values are the URIs that connection subscribed to.
        self._uris_by_peer: dict[Any, set[str]] = {}

    @staticmethod
    def _peer_of(ctx: ServerRequestContext[Any, Any]) -> Any:
        # The per-connection object (see sdk_adapter.connection_of); the proxy itself when there is none.
        return connection_of(ctx.session) or ctx.session

    async def on_subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        """`resources/subscribe` handler."""
        connection = self._peer_of(ctx)
        uris = self._uris_by_peer.get(connection)
        if uris is None:
            uris = self._uris_by_peer[connection] = set()
            exit_stack = getattr(connection, "exit_stack", None)
            if exit_stack is not None:
                exit_stack.callback(self._uris_by_peer.pop, connection, None)
        if params.uri not in uris and len(uris) >= _MAX_URIS_PER_CONNECTION:
            raise MCPError(
                INVALID_PARAMS, f"too many resource subscriptions (max {_MAX_URIS_PER_CONNECTION})"
            )
        uris.add(params.uri)
        return EmptyResult()

    async def on_unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        """`resources/unsubscribe` handler."""
        uris = self._uris_by_peer.get(self._peer_of(ctx))
        if uris is not None:
            uris.discard(params.uri)
        return EmptyResult()

    def subscriber_count(self, uri: str) -> int:
        """How many handshake-era connections subscribed to `uri`."""
        return sum(1 for uris in self._uris_by_peer.values() if uri in uris)

    async def publish(self, uri: str) -> None:
        """Tell every subscriber of `uri` (both eras) that it changed. Never raises for a closed client."""
        await self._bus.publish(ResourceUpdated(uri=uri))
        for connection, uris in list(self._uris_by_peer.items()):
            if uri in uris:
                try:
                    await connection.send_resource_updated(uri)
                except Exception as exc:  # one gone client must not stop the others
                    logger.debug("resource update not delivered to a connection: %s", type(exc).__name__)


_REGISTRIES: weakref.WeakKeyDictionary[MCPServer[Any], ResourceSubscriptions] = weakref.WeakKeyDictionary()


def resource_subscriptions(mcp: MCPServer[Any], bus: SubscriptionBus | None = None) -> ResourceSubscriptions:
    """The server's `ResourceSubscriptions`, created (and `resources/subscribe` served) on first use.

    `bus` is the `SubscriptionBus` the server was built with (`MCPServer(subscriptions=bus)`); when
    omitted, the server's own bus is used.

    Raises:
        RuntimeError: no bus was given and the server's bus cannot be found (an SDK change).
    """
    registry = _REGISTRIES.get(mcp)
    if registry is not None:
        return registry
    if bus is None:
        # MCPServer keeps the bus it built privately; the SDK docs say to construct it yourself to publish
        # from outside a request. Fall back to the private attribute for servers built without one.
        bus = subscription_bus_of(mcp)
        if bus is None:
            raise RuntimeError("cannot find the server's SubscriptionBus: pass bus= explicitly")
    registry = ResourceSubscriptions(bus)
    add_request_handler(mcp, "resources/subscribe", SubscribeRequestParams, registry.on_subscribe)
    add_request_handler(mcp, "resources/unsubscribe", UnsubscribeRequestParams, registry.on_unsubscribe)
    _REGISTRIES[mcp] = registry
    return registry


async def publish_resource_updated(mcp: MCPServer[Any], uri: str) -> None:
    """Announce that resource `uri` changed, to its subscribers in both protocol eras.

    Raises:
        RuntimeError: as `resource_subscriptions`.
    """
    await resource_subscriptions(mcp).publish(uri)


# -- registration -----------------------------------------------------------------------------------

_TOOL_DESCRIPTION = (
    "List webhook events K-LINK pushed to this server (newest first): contacts created/updated, "
    "inbound and outbound messages, rooms solved. Reads the local events store only; use it to catch "
    "up on what customers wrote since a time (event_type='message.inbound', since=...). Times are "
    "UTC. " + UNTRUSTED_NOTE
)


async def list_recent_events(
    state: ServerState,
    event_type: Annotated[
        EventType | None, Field(description="Only this event type (default: every type).")
    ] = None,
    contact_id: Annotated[
        str | None,
        Field(
            description="Only events about this contact id (see list_contacts).",
            min_length=1,
            max_length=200,
        ),
    ] = None,
    since: Annotated[
        datetime | None,
        Field(
            description="Only events that happened at or after this ISO-8601 time, e.g. "
            "2026-01-09T00:00:00Z (no zone = UTC)."
        ),
    ] = None,
    page: Page = 1,
    page_size: PageSize = 20,
) -> RecentEvents:
    if state.hub is None:
        raise RuntimeError("list_recent_events needs the server's event hub")
    store = state.hub.store
    filters: dict[str, Any] = {"event_type": event_type, "contact_id": contact_id, "since": since}
    total = await store.count(**filters)
    rows = await store.recent(**filters, limit=page_size, offset=(page - 1) * page_size)
    return RecentEvents(
        items=[event_item(row) for row in rows],
        page=page,
        page_size=page_size,
        total=total,
        has_more=page * page_size < total,
    )


LIST_RECENT_EVENTS = ToolSpec(
    name="list_recent_events",
    title="List recent K-LINK events",
    description=_TOOL_DESCRIPTION,
    toolset="events",
    # local: the webhook event store never leaves the process
    effects=ToolPolicy(Risk.READ, idempotent=True, open_world=False),
    output=RecentEvents,
    handler=list_recent_events,
)

SPECS: tuple[ToolSpec, ...] = (LIST_RECENT_EVENTS,)


def register_webhook_surface(
    mcp: MCPServer[Any], hub: EventHub, *, bus: SubscriptionBus | None = None
) -> None:
    """An events-only server: `list_recent_events` and the event resources on `mcp`.

    `build_server` does not call this: it serves the tool from the inventory and calls
    `register_event_resources`.

    Raises:
        RuntimeError: as `resource_subscriptions`.
    """
    from klink_mcp.config import Settings
    from klink_mcp.guard.confirm import Guard
    from klink_mcp.schemas import FormRegistry
    from klink_mcp.tools.registry import register_spec

    settings = Settings()
    state = ServerState(settings=settings, guard=Guard(settings), forms=FormRegistry(ttl_s=0), hub=hub)
    register_spec(mcp, state, LIST_RECENT_EVENTS)
    register_event_resources(mcp, hub, bus=bus)


def register_event_resources(
    mcp: MCPServer[Any], hub: EventHub, *, bus: SubscriptionBus | None = None
) -> None:
    """Add the event resources and their change notifications to `mcp`.

    Raises:
        RuntimeError: as `resource_subscriptions`.
    """
    subscriptions = resource_subscriptions(mcp, bus)
    store = hub.store

    async def _resource_json(*, contact_id: str | None) -> str:
        rows = await store.recent(contact_id=contact_id, limit=RESOURCE_LIMIT)
        total = await store.count(contact_id=contact_id)
        body = {
            "items": [event_item(row).model_dump(mode="json", exclude_none=True) for row in rows],
            "total": total,
            "has_more": total > len(rows),
            "note": UNTRUSTED_NOTE,
        }
        return json.dumps(body, ensure_ascii=False)

    @mcp.resource(
        RECENT_EVENTS_URI,
        name="recent_events",
        title="Recent K-LINK events",
        description=f"The {RESOURCE_LIMIT} newest webhook events (JSON). Subscribe to hear about new ones.",
        mime_type="application/json",
    )
    async def recent_events() -> str:
        return await _resource_json(contact_id=None)

    @mcp.resource(
        CONTACT_EVENTS_TEMPLATE,
        name="contact_events",
        title="A contact's K-LINK events",
        description=f"The {RESOURCE_LIMIT} newest webhook events about one contact (JSON). "
        "Subscribe to hear about new ones.",
        mime_type="application/json",
    )
    async def contact_events(contact_id: str) -> str:
        return await _resource_json(contact_id=contact_id)

    async def announce(event: StoredEvent) -> None:
        await subscriptions.publish(RECENT_EVENTS_URI)
        if event.contact_id:
            await subscriptions.publish(contact_events_uri(event.contact_id))

    hub.subscribe(announce)
