"""Shared helpers of the robustness suites: building the real server over a sandbox tenant, a virtual clock
for the retry layer, and readers for tool results.

The server is assembled exactly as tests/server/conftest.py does (settings isolated from the developer's
environment, the sandbox transport injected); the only additions are an in-memory event store (so no
background poller touches the user's data directory) and, for the fault suite, a virtual clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.server import MCPServer
from pydantic import SecretStr

import klink_mcp.server as server_module
from klink_mcp.api.client import KlinkClient
from klink_mcp.config import Settings, load_settings
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.server import build_server

SANDBOX_TOKEN = "sandbox-token"
ERROR_META_KEY = "klink_mcp/error"
MEMORY_EVENTS = Path(":memory:")


def make_settings(**overrides: Any) -> Settings:
    """Settings isolated from the developer's environment, with an in-memory event store."""
    overrides.setdefault("events_db", MEMORY_EVENTS)
    # Until WriteOutcome carries approval_required (tool layer), guarded calls here use the token flow.
    overrides.setdefault("confirm", "token")
    return load_settings(env={}, **overrides)


def make_server(
    tenant: SandboxTenant, *, token: str | SecretStr = SANDBOX_TOKEN, **overrides: Any
) -> MCPServer[Any]:
    """The real klink-mcp server over `tenant`; `token` is what the tenant expects."""
    return build_server(make_settings(**overrides), transport=SandboxTransport(tenant, token=token))


class VirtualClock:
    """Time that passes only when someone sleeps: backoff waits, latency and slow bodies cost nothing real.

    The K-LINK client (deadline, backoff) and the sandbox tenant (latency, slow bodies) share one clock, so
    "within the call deadline" is measured in the same time the retry layer reasons in.
    """

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


@contextmanager
def virtual_time(
    monkeypatch: pytest.MonkeyPatch, clock: VirtualClock, tenant: SandboxTenant
) -> Iterator[None]:
    """Make the server's K-LINK client sleep and read time through `clock` (and the tenant too).

    `build_server` opens `KlinkClient.from_settings(...)` in its lifespan and offers no hook for the sleep
    function, so the class it refers to is swapped for a subclass that injects the clock. Everything else
    (retry rules, deadlines, error mapping) is the production code.
    """

    class VirtualTimeClient(KlinkClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["sleep"] = clock.sleep
            kwargs["clock"] = clock
            super().__init__(*args, **kwargs)

    tenant.sleep = clock.sleep
    with monkeypatch.context() as patch:
        patch.setattr(server_module, "KlinkClient", VirtualTimeClient)
        yield


def healthy_read_calls(tenant: SandboxTenant) -> list[tuple[str, dict[str, Any]]]:
    """A mix of every read tool with arguments that succeed on a healthy tenant."""
    contact = next(
        c for c in tenant.contacts.values() if not c.get("deletedAt") and c.get("platformContacts")
    )
    ticket = next(iter(tenant.tickets.values()))
    return [
        ("list_contacts", {"page_size": 20}),
        ("get_contact", {"contact_id": contact["id"]}),
        (
            "find_contacts_by_social_platform_id",
            {"social_platform_id": contact["platformContacts"][0]["socialPlatformId"]},
        ),
        ("list_contact_groups", {}),
        ("list_tags", {}),
        ("list_channels", {}),
        ("list_categories", {}),
        ("list_tickets", {"status": "open", "page_size": 20}),
        ("get_ticket_by_number", {"ticket_number": ticket["ticketNumber"]}),
        ("list_contact_tickets", {"contact_id": ticket["contactId"]}),
        ("get_contact_form_fields", {}),
        ("get_ticket_form_fields", {}),
        (
            "list_cx_logs",
            {"start": "2026-09-01T00:00:00", "end": "2026-10-01T00:00:00", "timezone": "Asia/Singapore"},
        ),
    ]


def error_meta(result: Any) -> dict[str, Any]:
    """The machine-readable error block of a tool result ({} when there is none)."""
    meta = getattr(result, "meta", None) or {}
    block = meta.get(ERROR_META_KEY)
    return block if isinstance(block, dict) else {}


def error_code(result: Any) -> str | None:
    code = error_meta(result).get("code")
    return str(code) if code is not None else None


def result_text(result: Any) -> str:
    """All text content of a result, joined (what the model reads)."""
    return "\n".join(str(getattr(block, "text", "")) for block in result.content or [])


def is_crash(tool: str, result: Any) -> bool:
    """True when the SDK reported an unexpected exception: its message is exactly the bare prefix."""
    return bool(result.is_error) and result_text(result).strip() == f"Error executing tool {tool}"


def everything_visible(result: Any) -> str:
    """Every byte of a tool result a client can see: content, structured content and meta, as JSON."""
    return json.dumps(result.model_dump(mode="json", by_alias=True), ensure_ascii=False)
