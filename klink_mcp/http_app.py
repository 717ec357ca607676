"""Streamable HTTP serving: DNS-rebinding protection, optional bearer auth, webhook routes.

`build_http_app` wraps the SDK's Streamable HTTP app (both protocol eras) with:
* transport security: Host and Origin checked against the bound address (421 / 403 otherwise);
* a bearer-token check on every request when `KLINK_HTTP_AUTH_TOKEN` is set (required by the CLI
  beyond loopback), compared in constant time; the token is never logged.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from klink_mcp.config import Settings

logger = logging.getLogger("klink_mcp.http")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def transport_security_for(host: str) -> TransportSecuritySettings:
    """Allowed Host/Origin values for the bound host (loopback names together)."""
    if host in LOOPBACK_HOSTS:
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    else:
        hosts = [f"{host}:*"]
        origins = [f"http://{host}:*", f"https://{host}:*"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


class BearerAuth:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str, *, exempt_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self._token = token.encode()
        self._exempt = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in self._exempt:
            await self.app(scope, receive, send)
            return
        given = b""
        for key, value in scope.get("headers", []):
            if key == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        if not given or not hmac.compare_digest(given, self._token):
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"error":"unauthorized"}'})
            return
        await self.app(scope, receive, send)


def build_http_app(mcp: MCPServer[Any], settings: Settings, host: str) -> ASGIApp:
    """The ASGI app serving MCP at /mcp (and the webhook receiver when enabled)."""
    hub = getattr(mcp, "klink_hub", None)
    if hub is not None and webhooks_configured(settings):
        from starlette.routing import Route

        from klink_mcp.webhooks.receiver import create_webhook_routes

        routes: list[Route] = create_webhook_routes(hub, settings)
        # The SDK mounts its custom routes beside /mcp; there is no public way to add prebuilt ones.
        mcp._custom_starlette_routes.extend(routes)
    elif hub is not None:
        logger.info("webhook receiver not mounted: set KLINK_WEBHOOK_SECRET (or another webhook auth mode)")
    app: ASGIApp = mcp.streamable_http_app(transport_security=transport_security_for(host), host=host)
    if settings.http_auth_token is not None:
        # Webhooks authenticate with their own signature, not the MCP bearer token.
        app = BearerAuth(app, settings.http_auth_token.get_secret_value(), exempt_paths=("/webhooks/klink",))
    return app


def webhooks_configured(settings: Settings) -> bool:
    if settings.webhook_auth == "signature":
        return settings.webhook_secret is not None
    if settings.webhook_auth == "basic":
        return settings.webhook_basic_password is not None
    if settings.webhook_auth == "header":
        return settings.webhook_header_value is not None
    return True


async def serve_http(mcp: MCPServer[Any], settings: Settings, host: str, port: int) -> None:
    """Serve MCP over Streamable HTTP with the limits of `http_server` until SIGTERM/SIGINT (graceful).

    Raises:
        OSError: the address cannot be bound.
    """
    from klink_mcp.http_server import serve

    app = build_http_app(mcp, settings, host)
    logger.info("serving MCP over Streamable HTTP on http://%s:%d/mcp", host, port)
    await serve(app, settings, host, port)


async def serve_stdio_with_webhooks(mcp: MCPServer[Any], settings: Settings, webhooks_port: int) -> None:
    """Run the stdio server and the webhook receiver (loopback) in one process."""
    import anyio

    from klink_mcp.webhooks.receiver import run_receiver

    hub = mcp.klink_hub  # type: ignore[attr-defined]  # set by build_server
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_receiver, settings, hub, "127.0.0.1", webhooks_port)
        from klink_mcp.stdio_transport import serve_stdio

        await serve_stdio(mcp)
        tg.cancel_scope.cancel()
