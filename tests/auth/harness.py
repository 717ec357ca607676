"""Run a real klink-mcp HTTP app on loopback, with OAuth pointing at the local IdP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer

from klink_mcp.http_app import build_http_app
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.server import build_server
from tests.auth.idp import CLIENT_ID, CLIENT_SECRET, LocalIdP, bind_loopback, serve_on_loopback
from tests.helpers.server import make_settings

STATIC_TOKEN = "static-operator-token-for-tests-0123456789abcdef"


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Everything the server sends towards K-LINK (the sandbox), headers and bodies, as text."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[str] = []
        self.refuse_with: int | None = None  # answer every request with this status instead

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
        self.seen.append(f"{request.method} {request.url}\n{headers}\n\n{body.decode(errors='replace')}")
        if self.refuse_with is not None:
            return httpx2.Response(self.refuse_with, json={"message": "refused by the test"}, request=request)
        return await self.inner.handle_async_request(request)


@dataclass
class RunningServer:
    url: str
    tenant: SandboxTenant
    upstream: RecordingTransport
    server: MCPServer[Any]
    settings_used: dict[str, Any] = field(default_factory=dict)

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"


@asynccontextmanager
async def running_klink(
    idp: LocalIdP | None,
    *,
    sign_in: bool = False,
    prepare: Callable[[MCPServer[Any]], None] | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningServer]:
    sock, url = bind_loopback()
    tenant = SandboxTenant.seeded()
    upstream = RecordingTransport(SandboxTransport(tenant, token="sandbox-token"))
    if idp is not None:
        overrides.setdefault("oauth_issuer", idp.issuer)
        overrides.setdefault("resource_url", f"{url}/mcp")
        if sign_in:
            overrides.setdefault("oauth_client_id", CLIENT_ID)
            overrides.setdefault("oauth_client_secret", CLIENT_SECRET)
            overrides.setdefault("guard_secret", "g" * 40)
    settings = make_settings(**overrides)
    server = build_server(settings, transport=upstream)
    if prepare is not None:
        prepare(server)
    app = build_http_app(server, settings, "127.0.0.1")
    async with serve_on_loopback(sock, app):
        yield RunningServer(url, tenant, upstream, server, overrides)


@asynccontextmanager
async def authed_client(mcp_url: str, token: str, mode: str = "legacy") -> AsyncIterator[Client]:
    """The MCP client over Streamable HTTP, carrying `Authorization: Bearer <token>` (httpx2)."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(mcp_url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        yield client
