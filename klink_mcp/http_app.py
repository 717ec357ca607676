"""Streamable HTTP serving: DNS-rebinding protection, authentication, operations routes, webhooks.

`build_http_app` wraps the SDK's Streamable HTTP app (both protocol eras) with:
* transport security: Host and Origin checked against the bound address and the public resource URL
  (421 / 403 otherwise);
* authentication (`klink_mcp.auth.resource_server.AuthGate`) when `KLINK_HTTP_AUTH_TOKEN` and/or
  OAuth (`KLINK_OAUTH_ISSUER` + `KLINK_RESOURCE_URL`) are configured: the static token compared in
  constant time, JWT access tokens verified against the IdP's JWKS; tokens are never logged and
  never forwarded to K-LINK;
* RFC 9728 protected-resource metadata and the approval-page sign-in routes (OAuth only);
* MCP middleware: `tools/call` metrics, and the per-tool scope check
  (`klink_mcp.auth.tool_scopes`; refuses nothing without an authenticated principal);
* `/healthz`, `/readyz`, `/metrics` and a request id on every response (`klink_mcp.ops`).

Paths that authenticate otherwise or must answer load balancers are public: the webhook receiver
(its own signature), `/healthz`, `/readyz`, the metadata, the sign-in routes, and `/metrics` only
with `KLINK_METRICS_PUBLIC=1`.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import ASGIApp

from klink_mcp import ops
from klink_mcp.approval_page import mount_approval_page
from klink_mcp.auth.oidc import CALLBACK_PATH, LOGIN_PATH, ApprovalSignIn
from klink_mcp.auth.resource_server import (
    AuthGate,
    IdentityProvider,
    JwtVerifier,
    ResourceServerConfig,
    metadata_url_for,
    protected_resource_routes,
)
from klink_mcp.auth.tool_scopes import tool_scope_middleware
from klink_mcp.config import Settings

logger = logging.getLogger("klink_mcp.http")

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def transport_security_for(host: str, resource_url: str | None = None) -> TransportSecuritySettings:
    """Allowed Host/Origin values for the bound host (loopback names together) and the public URL."""
    if host in LOOPBACK_HOSTS:
        hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
        origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    else:
        hosts = [f"{host}:*"]
        origins = [f"http://{host}:*", f"https://{host}:*"]
    if resource_url is not None:
        # Behind a load balancer clients send the public name, not the bound address.
        public = urlparse(resource_url)
        if public.hostname:
            hosts += [public.netloc, f"{public.hostname}:*"]
            origins += [f"{public.scheme}://{public.netloc}", f"{public.scheme}://{public.hostname}:*"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def readiness_for(mcp: MCPServer[Any]) -> ops.Readiness:
    """Readiness of this server: the event store answers, and K-LINK answers a one-row read."""
    state = getattr(mcp, "klink_state", None)
    hub = getattr(mcp, "klink_hub", None)

    async def klink() -> None:
        client = getattr(state, "client_", None)
        if client is None:
            raise ops.NotReady("the K-LINK client is not open (server starting or stopping)")
        await client.get_contact_form_fields(page=1, page_size=1)

    async def store() -> None:
        if hub is None:
            raise ops.NotReady("no event store")
        await hub.store.max_id()

    return ops.Readiness({"klink": klink, "store": store})


def build_http_app(mcp: MCPServer[Any], settings: Settings, host: str) -> ASGIApp:
    """The ASGI app serving MCP at /mcp, operations routes, auth routes and the webhook receiver.

    Raises:
        ConfigError: OAuth is half configured (an issuer without `KLINK_RESOURCE_URL`, a bad URL).
    """
    routes: list[Route] = []
    public: set[str] = {ops.HEALTH_PATH, ops.READY_PATH}
    hub = getattr(mcp, "klink_hub", None)
    if hub is not None and webhooks_configured(settings):
        from klink_mcp.webhooks.receiver import WEBHOOK_PATH, create_webhook_routes

        routes += create_webhook_routes(hub, settings)
        public.add(WEBHOOK_PATH)  # webhooks authenticate with their own signature
    elif hub is not None:
        logger.info("webhook receiver not mounted: set KLINK_WEBHOOK_SECRET (or another webhook auth mode)")

    readiness = readiness_for(mcp)
    routes += [
        Route(ops.HEALTH_PATH, ops.health, methods=["GET", "HEAD"]),
        Route(ops.READY_PATH, readiness.endpoint, methods=["GET", "HEAD"]),
        Route(ops.METRICS_PATH, ops.metrics_endpoint, methods=["GET"]),
    ]
    if settings.metrics_public:
        public.add(ops.METRICS_PATH)

    oauth = ResourceServerConfig.from_settings(settings)
    verifier: JwtVerifier | None = None
    metadata_url: str | None = None
    sign_in: ApprovalSignIn | None = None
    if oauth is not None:
        idp = IdentityProvider(oauth.issuer, jwks_url=oauth.jwks_url)
        verifier = JwtVerifier(idp, audience=oauth.audience)
        metadata_url = metadata_url_for(oauth.resource_url)
        metadata_routes = protected_resource_routes(oauth)
        routes += metadata_routes
        public.update(route.path for route in metadata_routes)
        if settings.oauth_client_id is not None:
            sign_in = ApprovalSignIn(settings, idp)
            routes += sign_in.routes()
            public.update({LOGIN_PATH, CALLBACK_PATH})

    # The SDK mounts its custom routes beside /mcp; there is no public way to add prebuilt ones.
    mcp._custom_starlette_routes.extend(routes)
    if not getattr(mcp, "klink_http_middleware", False):
        # Metrics outside the scope check, so refused calls are counted too.
        mcp.middleware.append(ops.tool_call_metrics)
        mcp.middleware.append(tool_scope_middleware())
        mcp.klink_http_middleware = True  # type: ignore[attr-defined]  # once per server object
    sdk_app = mcp.streamable_http_app(
        transport_security=transport_security_for(host, settings.resource_url), host=host
    )
    sdk_app.state.klink_sign_in = sign_in  # read by klink_mcp.auth.oidc.current_person
    app: ASGIApp = sdk_app
    static = settings.http_auth_token.get_secret_value() if settings.http_auth_token is not None else None
    if static is not None or verifier is not None:
        app = AuthGate(
            app,
            static_token=static,
            verifier=verifier,
            resource_metadata_url=metadata_url,
            public_paths=public,
        )
    # The approval page sits outside the bearer gate: a person's browser carries no bearer token; the
    # page checks Host itself and every POST needs the page's CSRF cookie (see approval_page.py).
    security = transport_security_for(host, settings.resource_url)
    app = mount_approval_page(
        app, mcp, security.allowed_hosts or [], passthrough=(LOGIN_PATH, CALLBACK_PATH), sign_in=sign_in
    )
    if settings.log_format == "json":
        ops.configure_json_logging(settings.log_level)
    return ops.RequestContext(app)


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
