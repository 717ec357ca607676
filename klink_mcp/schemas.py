"""Keeps the tenant's compiled form schemas current: fetch, compile, cache with a TTL, report changes.

`FormRegistry` owns the two `FormSchema`s (contact, ticket). `refresh()` fetches every page of both
definition lists, compiles them, and calls the change listeners when a digest differs from what is
registered, so the server can re-register the typed tools and tell clients (tools list-changed).
If the fields cannot be fetched, the registry keeps the previous schemas (or none at all) and keeps
the reason in `problem`, so the server still serves everything else and says why.

This module does not know about MCP; the server wires the listeners.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from klink_mcp.forms import FormKind, FormSchema, compile_form_schema

if TYPE_CHECKING:
    from klink_mcp.api.client import KlinkClient

logger = logging.getLogger("klink_mcp.schemas")

# Built-in fields that the tools take as fixed parameters (not compiled from the form).
RESERVED_BUILTINS: dict[FormKind, tuple[str, ...]] = {
    "contact": ("tags", "customFields", "custom_fields"),
    "ticket": ("contact", "contact_id", "contactId", "tags", "customFields", "custom_fields"),
}

ChangeListener = Callable[[set[FormKind]], Awaitable[None]]


class FormRegistry:
    """The compiled contact and ticket form schemas of the connected tenant."""

    def __init__(self, *, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self.schemas: dict[FormKind, FormSchema] = {}
        self.fetched_at: float | None = None
        self.problem: str | None = None
        self._listeners: list[ChangeListener] = []
        self._lock = anyio.Lock()

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def get(self, kind: FormKind) -> FormSchema | None:
        return self.schemas.get(kind)

    @property
    def stale(self) -> bool:
        return self.fetched_at is None or (self._clock() - self.fetched_at) >= self.ttl_s

    async def ensure_fresh(self, client: KlinkClient) -> None:
        """Refresh when the TTL has passed; cheap when fresh."""
        if self.stale:
            await self.refresh(client)

    async def refresh(self, client: KlinkClient) -> set[FormKind]:
        """Fetch and compile both forms now; returns the kinds whose schema changed.

        Never raises for upstream failures: the reason is kept in `problem` and logged.
        """
        async with self._lock:
            changed: set[FormKind] = set()
            try:
                contact_defs = await client.all_contact_form_fields()
                ticket_defs = await client.all_ticket_form_fields()
            except Exception as exc:  # any upstream failure keeps the server serving
                self.problem = f"could not fetch form fields: {type(exc).__name__}: {exc}"[:300]
                self.fetched_at = self._clock()
                logger.warning("%s; typed create/update schemas use the last known fields", self.problem)
                return changed
            self.problem = None
            self.fetched_at = self._clock()
            pairs: tuple[tuple[FormKind, list[Any]], ...] = (
                ("contact", list(contact_defs)),
                ("ticket", list(ticket_defs)),
            )
            for kind, defs in pairs:
                compiled = compile_form_schema(kind, defs, reserved=RESERVED_BUILTINS[kind])
                for reason in compiled.skipped:
                    logger.info("%s form field skipped: %s", kind, reason)
                old = self.schemas.get(kind)
                if old is None or old.digest != compiled.digest:
                    self.schemas[kind] = compiled
                    changed.add(kind)
        if changed:
            for listener in self._listeners:
                await listener(changed)
        return changed
