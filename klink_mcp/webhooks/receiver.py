"""The HTTP endpoint K-LINK delivers webhooks to: `POST /webhooks/klink`.

Per request, in this order (nothing is stored unless every step passes):

1. header-only authentication (`basic`, `header`, `none`) -> 401;
2. size: a `Content-Length` above `settings.webhook_max_body_bytes` -> 413 before reading; the body
   is then read as a stream and abandoned (413) the moment it passes the limit, so an endless or
   lying body never costs more than the limit in memory; a body not received within 30 s -> 408;
3. `signature` authentication: `x-signature` must be the hex HMAC-SHA256 of the raw body with
   `settings.webhook_secret`, compared in constant time -> 401;
4. the body must be UTF-8 JSON and a webhook event (see `events.parse_event`) -> 400;
5. `hub.ingest`: stored durably (committed, fsynced) *before* the answer. 200 `{"duplicate": false,
   "id": n}` for a new event, 200 `{"duplicate": true, "id": n}` for a redelivery (recognised, not
   stored twice), 503 if the store cannot be written (K-LINK should retry).

Authentication modes (`settings.webhook_auth`):

- `signature` (default): needs `webhook_secret`.
- `basic`: needs `webhook_basic_user` and `webhook_basic_password`.
- `header`: needs `webhook_header_name` and `webhook_header_value`.
- `none`: for local development only. Building the routes is allowed (the app may be mounted
  anywhere), but every request must come from a loopback peer, carry no proxy headers
  (`x-forwarded-for`, `forwarded`, `x-real-ip`) and no `Origin`, and be `application/json`, or it gets
  401: a tunnel or reverse proxy on the same host cannot turn it into an open endpoint, and a web page
  in the user's browser cannot post to it (a JSON POST needs a CORS preflight, never granted).
  `run_receiver`/the CLI additionally refuse to *bind* a non-loopback host in this mode, even with
  `allow_remote`.

Binding (`run_receiver`, `serve_receiver`, `klink-mcp webhooks`): loopback by default; a non-loopback
host needs `allow_remote=True` and an authenticating mode whose credentials are configured.

Rejections are logged at WARNING with the reason and peer address; bodies, signatures and secrets
are never logged or echoed. This module must not import `mcp`. Serving uses uvicorn, so
`run_receiver`/`serve_receiver` need the asyncio backend.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import anyio
import uvicorn
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from klink_mcp.config import ConfigError, Settings, load_settings
from klink_mcp.ops import observe_webhook
from klink_mcp.webhooks.events import InvalidEvent, parse_event, verify_signature
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.store import StoreError

__all__ = [
    "DEFAULT_PORT",
    "WEBHOOK_PATH",
    "RunningReceiver",
    "WebhookConfigError",
    "check_bind",
    "create_webhook_app",
    "create_webhook_routes",
    "is_loopback",
    "run_receiver",
    "serve_receiver",
]

logger = logging.getLogger(__name__)

WEBHOOK_PATH: Final = "/webhooks/klink"
DEFAULT_PORT: Final = 8766
_PROXY_HEADERS: Final = ("x-forwarded-for", "forwarded", "x-real-ip")
_STORE_RETRY_AFTER_S: Final = "5"
_BODY_READ_TIMEOUT_S: Final = 30.0
_MAX_CONCURRENT_REQUESTS: Final = 256  # beyond this uvicorn answers 503 and the sender retries


class WebhookConfigError(ConfigError):
    """The webhook receiver cannot start with this configuration (missing secret, unsafe bind...)."""


class _BodyTooLarge(Exception):
    pass


def is_loopback(host: str) -> bool:
    """Whether `host` names only the local machine (`localhost`, 127.0.0.0/8, ::1)."""
    candidate = host.strip().strip("[]").lower()
    if candidate == "localhost":
        return True
    try:
        return ipaddress.ip_address(candidate).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _Authenticator:
    """Checks one request against the configured mode. Holds secrets as bytes: never repr'd or logged."""

    mode: str
    secret: bytes = b""
    basic_user: bytes = b""
    basic_password: bytes = b""
    header_name: str = ""
    header_value: bytes = b""

    def __repr__(self) -> str:
        return f"_Authenticator(mode={self.mode!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> _Authenticator:
        mode = settings.webhook_auth
        if mode == "signature":
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
            if not secret:
                raise WebhookConfigError(
                    "webhook_auth is 'signature' but no webhook_secret is set (KLINK_WEBHOOK_SECRET)"
                )
            return cls(mode=mode, secret=secret.encode())
        if mode == "basic":
            password = (
                settings.webhook_basic_password.get_secret_value() if settings.webhook_basic_password else ""
            )
            if not settings.webhook_basic_user or not password:
                raise WebhookConfigError(
                    "webhook_auth is 'basic' but webhook_basic_user/webhook_basic_password are not both set"
                )
            return cls(
                mode=mode, basic_user=settings.webhook_basic_user.encode(), basic_password=password.encode()
            )
        if mode == "header":
            value = settings.webhook_header_value.get_secret_value() if settings.webhook_header_value else ""
            if not settings.webhook_header_name or not value:
                raise WebhookConfigError(
                    "webhook_auth is 'header' but webhook_header_name/webhook_header_value are not both set"
                )
            return cls(
                mode=mode, header_name=settings.webhook_header_name.lower(), header_value=value.encode()
            )
        return cls(mode="none")

    def headers_ok(self, request: Request) -> bool:
        """Authentication that needs no body (basic, header, none). Signature mode passes here."""
        if self.mode == "basic":
            return self._basic_ok(request.headers.get("authorization"))
        if self.mode == "header":
            provided = request.headers.get(self.header_name)
            return provided is not None and hmac.compare_digest(
                self.header_value, provided.encode("utf-8", "replace")
            )
        if self.mode == "none":
            peer = request.client.host if request.client else ""
            if not is_loopback(peer) or any(name in request.headers for name in _PROXY_HEADERS):
                return False
            # A web page in the user's browser can reach loopback too. Webhook senders send no Origin;
            # and a JSON content type forces a CORS preflight, which this POST-only route never grants.
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            return "origin" not in request.headers and content_type == "application/json"
        return True

    def _basic_ok(self, header: str | None) -> bool:
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Compare both parts every time (`&`, not `and`): the answer must not reveal which one was wrong.
        user_ok = hmac.compare_digest(self.basic_user, user)
        password_ok = hmac.compare_digest(self.basic_password, password)
        return bool(sep) & user_ok & password_ok

    def body_ok(self, request: Request, body: bytes) -> bool:
        """Authentication over the raw body (signature mode); other modes pass here."""
        if self.mode != "signature":
            return True
        return verify_signature(self.secret, body, request.headers.get("x-signature"))


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"


def _reject(request: Request, status: int, error: str, reason: str) -> JSONResponse:
    logger.warning("webhook rejected (%d %s) from %s: %s", status, error, _peer(request), reason)
    observe_webhook(error)
    return JSONResponse({"error": error}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _BodyTooLarge
    return bytes(body)


def create_webhook_routes(
    hub: EventHub, settings: Settings | None = None, *, path: str = WEBHOOK_PATH
) -> list[Route]:
    """The receiver as Starlette routes, to mount in another app (e.g. the MCP HTTP app).

    `settings` defaults to `load_settings()` (environment and `KLINK_CONFIG`).

    Raises:
        WebhookConfigError: the selected auth mode lacks its secret/credentials.
        ConfigError: the settings cannot be loaded (only when `settings` is None).
    """
    settings = load_settings() if settings is None else settings
    auth = _Authenticator.from_settings(settings)
    max_body = settings.webhook_max_body_bytes
    if auth.mode == "none":
        logger.warning("webhook authentication is OFF (webhook_auth=none): only loopback peers are accepted")

    async def receive_webhook(request: Request) -> Response:
        if not auth.headers_ok(request):
            return _reject(request, 401, "unauthorized", f"{auth.mode} authentication failed")
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                declared_size = int(declared)
            except ValueError:
                return _reject(request, 400, "bad_request", "invalid Content-Length")
            if declared_size > max_body:
                return _reject(
                    request, 413, "payload_too_large", f"Content-Length {declared_size} > {max_body}"
                )
        try:
            # Bounded: a sender trickling its body must not hold a connection (and a slot) forever.
            with anyio.fail_after(_BODY_READ_TIMEOUT_S):
                body = await _read_body(request, max_body)
        except TimeoutError:
            return _reject(
                request, 408, "request_timeout", f"body not received within {_BODY_READ_TIMEOUT_S}s"
            )
        except _BodyTooLarge:
            return _reject(request, 413, "payload_too_large", f"body exceeds {max_body} bytes")
        except ClientDisconnect:
            logger.warning("webhook sender %s disconnected before sending the whole body", _peer(request))
            observe_webhook("disconnected")
            return Response(status_code=400)
        if not auth.body_ok(request, body):
            return _reject(request, 401, "unauthorized", "missing or invalid x-signature")
        try:
            # Decode explicitly: json.loads(bytes) would also accept UTF-16/32, which the contract excludes.
            payload: Any = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _reject(request, 400, "bad_request", "body is not UTF-8 JSON")
        try:
            event = parse_event(payload)
        except InvalidEvent as exc:
            return _reject(request, 400, "bad_request", f"not a webhook event: {exc}")
        try:
            stored, row = await hub.ingest(event)
        except StoreError:
            logger.exception(
                "webhook event %s could not be stored; answering 503 so the sender retries", event.event
            )
            observe_webhook("store_unavailable")
            return JSONResponse(
                {"error": "store_unavailable"}, status_code=503, headers={"Retry-After": _STORE_RETRY_AFTER_S}
            )
        if stored:
            logger.info("webhook event stored: id=%d %s", row.id, row.event)
        else:
            logger.info("webhook redelivery recognised: id=%d %s", row.id, row.event)
        observe_webhook("stored" if stored else "duplicate")
        return JSONResponse({"duplicate": not stored, "id": row.id})

    return [Route(path, receive_webhook, methods=["POST"], name="klink_webhook")]


def create_webhook_app(
    hub: EventHub, settings: Settings | None = None, *, path: str = WEBHOOK_PATH
) -> Starlette:
    """A standalone Starlette app serving only the webhook route.

    Raises:
        WebhookConfigError: as `create_webhook_routes`.
        ConfigError: the settings cannot be loaded (only when `settings` is None).
    """
    return Starlette(routes=create_webhook_routes(hub, settings, path=path))


def check_bind(settings: Settings, host: str, *, allow_remote: bool = False) -> None:
    """Refuse unsafe listening addresses before anything binds.

    Raises:
        WebhookConfigError: `webhook_auth=none` on a non-loopback host (never allowed), or a
            non-loopback host without `allow_remote`, or the auth mode lacks its credentials.
    """
    _Authenticator.from_settings(settings)  # credentials present for the selected mode
    if is_loopback(host):
        return
    if settings.webhook_auth == "none":
        raise WebhookConfigError(
            f"refusing to listen on {host!r} with webhook_auth=none: "
            "an unauthenticated receiver is loopback-only"
        )
    if not allow_remote:
        raise WebhookConfigError(
            f"refusing to listen on non-loopback host {host!r}: pass --allow-remote (allow_remote=True) "
            "to expose the receiver, and put it behind HTTPS (K-LINK requires an HTTPS endpoint)"
        )


def _bind_socket(host: str, port: int) -> socket.socket:
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        sock = socket.create_server((bare, port), family=family, backlog=1024)
    except OSError as exc:
        raise WebhookConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    # Connections accepted from a socket handed to uvicorn do not get TCP_NODELAY, so every response
    # waited ~40 ms for a delayed ACK (Nagle). Accepted sockets inherit it from the listener on Linux.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not every platform allows it on a listening socket; latency only
        pass
    return sock


@dataclass(frozen=True)
class RunningReceiver:
    """Where a started receiver listens."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        """`http://host:port` (IPv6 hosts bracketed)."""
        bare = self.host.strip("[]")
        shown = f"[{bare}]" if ":" in bare else bare
        return f"http://{shown}:{self.port}"

    @property
    def url(self) -> str:
        """The webhook URL to register with the sender."""
        return self.base_url + WEBHOOK_PATH


def _uvicorn_server(app: Starlette, host: str, port: int, settings: Settings) -> uvicorn.Server:
    from klink_mcp.http_server import protocol_class  # header/body timeouts and the connection cap

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(settings),
        timeout_keep_alive=settings.http_keepalive_s,  # type: ignore[arg-type]  # a float works
        # stdout may be the MCP protocol: no uvicorn logging config (it would log to stdout), no access log.
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
        limit_concurrency=_MAX_CONCURRENT_REQUESTS,
    )
    return uvicorn.Server(config)


class _ReceiverServer:
    """One bound socket and the uvicorn server that will serve it."""

    def __init__(self, settings: Settings, hub: EventHub, host: str, port: int, allow_remote: bool) -> None:
        check_bind(settings, host, allow_remote=allow_remote)
        app = create_webhook_app(hub, settings)
        self.sock = _bind_socket(host, port)
        self.running = RunningReceiver(host=host, port=int(self.sock.getsockname()[1]))
        self.server = _uvicorn_server(app, host, self.running.port, settings)

    async def serve(self) -> None:
        logger.info("webhook receiver listening on %s", self.running.url)
        # Not `Server.serve`: it installs SIGINT/SIGTERM handlers for its lifetime, but signals belong to
        # the host program (the stdio server, or the CLI, which turns them into a cancellation).
        serve = getattr(self.server, "_serve", None) or self.server.serve
        try:
            await serve(sockets=[self.sock])
        except anyio.get_cancelled_exc_class():
            # Cancelled by the host program: still close connections and listeners properly, letting
            # requests in flight (whose events may be committing) answer, within a bound.
            if self.server.started:
                with anyio.CancelScope(shield=True), anyio.move_on_after(6):
                    await self.server.shutdown(sockets=[self.sock])
            raise
        finally:
            self.sock.close()

    def stop(self) -> None:
        self.server.should_exit = True


async def run_receiver(
    settings: Settings,
    hub: EventHub,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    allow_remote: bool = False,
    task_status: TaskStatus[RunningReceiver] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the receiver on `host:port` until cancelled; cancellation shuts it down gracefully.

    Meant to run beside another server on the same event loop (`tg.start_soon(run_receiver, ...)`, or
    `await tg.start(run_receiver, ...)` to get the `RunningReceiver` once the socket listens; `port=0`
    picks a free port). Signal handling stays with the host program. Needs the asyncio backend.

    Raises:
        WebhookConfigError: unsafe bind (see `check_bind`), missing credentials, or the port is unavailable.
    """
    receiver = _ReceiverServer(settings, hub, host, port, allow_remote)
    # The socket already listens, so connections queue in its backlog until uvicorn accepts them.
    task_status.started(receiver.running)
    await receiver.serve()


@asynccontextmanager
async def serve_receiver(
    settings: Settings,
    hub: EventHub,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    allow_remote: bool = False,
) -> AsyncIterator[RunningReceiver]:
    """Run the receiver for the duration of an `async with` block (tests, benchmarks, embedding).

    Leaving the block shuts the server down gracefully (requests in flight are answered).

    Raises:
        WebhookConfigError: as `run_receiver`.
    """
    receiver = _ReceiverServer(settings, hub, host, port, allow_remote)
    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver.serve)
        try:
            yield receiver.running
        finally:
            receiver.stop()
