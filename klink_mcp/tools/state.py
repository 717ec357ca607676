"""`ServerState`: what every tool handler receives as its first argument.

Holds the settings, the guard, the compiled form schemas, the webhook event hub and the K-LINK
client opened by the server lifespan. Nothing here talks HTTP or MCP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from klink_mcp.config import Settings

if TYPE_CHECKING:
    from klink_mcp.api.client import KlinkClient
    from klink_mcp.guard.confirm import Guard
    from klink_mcp.schemas import FormRegistry
    from klink_mcp.webhooks.hub import EventHub


@dataclass
class ServerState:
    """What every tool needs. The client is set by the server lifespan and cleared when it ends."""

    settings: Settings
    guard: Guard
    forms: FormRegistry
    hub: EventHub | None = None
    client_: KlinkClient | None = None
    startup_problems: list[str] = field(default_factory=list)

    @property
    def client(self) -> KlinkClient:
        """The open K-LINK client.

        Raises:
            RuntimeError: the server lifespan has not started (or has ended).
        """
        if self.client_ is None:
            raise RuntimeError("the K-LINK client is not open (the server lifespan has not started)")
        return self.client_
