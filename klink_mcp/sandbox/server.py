"""`serve_sandbox`: the sandbox tenant on a real TCP socket (a small h11 + anyio HTTP/1.1 server).

Why not uvicorn: a reset fault must really drop the connection (uvicorn turns an app exception
into a 500). Here:
- reset_before: the request head is read, then the socket is aborted with a TCP RST before the
  body is read; nothing is recorded or applied.
- reset_after: the request is applied and recorded, then the socket is closed with no response
  (the client sees "Server disconnected without sending a response.").
- latency waits before the request is handled; a slow body sends the status line and headers at
  once and the body `slow_body_s` later (clients with a shorter read timeout time out).

Supports keep-alive, Content-Length and chunked request bodies (up to 1 MiB; a larger declared
length gets 413 before any body is read), HEAD, and many concurrent connections. It binds loopback only unless `allow_remote=True`.

This module must not log bodies or the token.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream
from pydantic import SecretStr

from klink_mcp.config import DEFAULT_SANDBOX_TOKEN
from klink_mcp.sandbox._common import error_body
from klink_mcp.sandbox.exchange import Dropped, Reply, as_secret, begin, complete, lower_headers
from klink_mcp.sandbox.tenant import JSON_HEADERS, SandboxTenant, encode_json

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576
MAX_HEAD_BYTES = 32_768
IDLE_TIMEOUT_S = 75.0
BODY_TIMEOUT_S = 30.0
_SERVER_HEADER = ("server", "klink-sandbox")


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class SandboxServer:
    """A running loopback server: `url` is the base URL to give a client."""

    host: str
    port: int
    tenant: SandboxTenant
    connections_accepted: int = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class _TooLarge(Exception):
    pass


@asynccontextmanager
async def serve_sandbox(
    tenant: SandboxTenant,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | SecretStr = DEFAULT_SANDBOX_TOKEN,
    *,
    allow_remote: bool = False,
) -> AsyncIterator[SandboxServer]:
    """Serve `tenant` over HTTP on `host:port` (port 0 = any free port) until the block exits.

    Raises:
        ValueError: `host` is not a loopback address and `allow_remote` is false.
        OSError: the address cannot be bound.
    """
    if not allow_remote and not is_loopback(host):
        raise ValueError(f"refusing to serve the sandbox on non-loopback host {host!r} (allow_remote=False)")
    secret = as_secret(token)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    bound_port = int(listener.listeners[0].extra(SocketAttribute.local_port))  # noqa: S610
    server = SandboxServer(host=host, port=bound_port, tenant=tenant)

    async def handle(stream: SocketStream) -> None:
        server.connections_accepted += 1
        await _serve_connection(stream, tenant, secret)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


async def _next_event(conn: h11.Connection, stream: SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(65_536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            data = b""
        conn.receive_data(data)


async def _read_body(conn: h11.Connection, stream: SocketStream) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY_BYTES:
                raise _TooLarge
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        else:
            raise h11.RemoteProtocolError("connection closed in the middle of a request body")


def _abort(stream: SocketStream) -> None:
    """Make the coming close a TCP RST instead of a FIN: a connection reset, as on a real network."""
    try:
        sock = stream.extra(SocketAttribute.raw_socket)  # noqa: S610
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, anyio.TypedAttributeLookupError):
        pass


async def _send(
    conn: h11.Connection,
    stream: SocketStream,
    reply: Reply,
    head_only: bool,
    sleep: Callable[[float], Awaitable[None]],
) -> None:
    headers = [*reply.headers, _SERVER_HEADER, ("content-length", str(len(reply.body)))]
    head = conn.send(h11.Response(status_code=reply.status, headers=headers)) or b""
    tail = b"" if head_only else (conn.send(h11.Data(data=reply.body)) or b"")
    tail += conn.send(h11.EndOfMessage()) or b""
    if reply.slow_body_s > 0:
        await stream.send(head)
        await sleep(reply.slow_body_s)
        await stream.send(tail)
    else:
        await stream.send(head + tail)


async def _send_error(conn: h11.Connection, stream: SocketStream, status: int, message: str) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = encode_json(error_body(status, message))
    headers = [*JSON_HEADERS, _SERVER_HEADER, ("content-length", str(len(body))), ("connection", "close")]
    try:
        data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send(data)
    except (h11.LocalProtocolError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


async def _serve_connection(stream: SocketStream, tenant: SandboxTenant, token: SecretStr) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    async with stream:
        try:
            while True:
                event: object = None
                with anyio.move_on_after(IDLE_TIMEOUT_S):
                    event = await _next_event(conn, stream)
                if not isinstance(event, h11.Request):
                    return  # idle timeout, clean close by the client, or nothing sensible
                method = event.method.decode("ascii", "replace").upper()
                target = event.target.decode("latin-1")
                raw_path, _, query = target.partition("?")
                headers = lower_headers(event.headers)
                decision = await begin(tenant, method)
                if decision.reset_before:
                    _abort(stream)
                    return
                declared = headers.get("content-length", "0")
                if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                    await _send_error(conn, stream, 413, "Payload Too Large")
                    return
                try:
                    if declared in ("", "0") and "transfer-encoding" not in headers:
                        body = await _read_body(conn, stream)  # h11 ends a body-less request at once
                    else:
                        with anyio.fail_after(BODY_TIMEOUT_S):
                            body = await _read_body(conn, stream)
                except _TooLarge:
                    await _send_error(conn, stream, 413, "Payload Too Large")
                    return
                except TimeoutError:
                    await _send_error(conn, stream, 408, "Request Timeout")
                    return
                outcome = complete(tenant, token, decision, method, raw_path, query, headers, body)
                if isinstance(outcome, Dropped):
                    return  # applied; the socket closes with no answer
                await _send(conn, stream, outcome, method == "HEAD", tenant.sleep)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await _send_error(conn, stream, exc.error_status_hint or 400, "Bad Request")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, ConnectionError):
            return
        except h11.LocalProtocolError:
            logger.debug("sandbox server: local protocol error, closing the connection", exc_info=True)
