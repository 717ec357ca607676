"""The HTTP server under `serve --http` (and the stdio+webhooks mode): uvicorn with limits that hold.

uvicorn (0.55) has a keep-alive timeout between requests and a concurrency limit that answers 503, but no
timeout for reading a request: a client that sends half a request head (or a body that stalls) keeps its
connection, and a slot, forever, and a connection that sends nothing at all is never closed either. This
module adds, in a small subclass of uvicorn's h11 protocol (`LimitedH11Protocol`):

* a header timeout: the request head must be complete within `http_header_timeout_s` of the connection
  opening (or, on a kept-alive connection, of its first byte); else 408 and the connection is closed;
* a body timeout: the whole body must arrive within `http_body_timeout_s` of the head; else the
  connection is closed (408 when no response has started), and the app sees a disconnect;
* a hard cap on open connections (`http_max_connections`): one over it is closed at once, before it can
  hold anything; uvicorn's `limit_concurrency` (503) applies the same cap to requests in flight;
* idle keep-alive closed after `http_keepalive_s` (uvicorn's own timer);
* graceful shutdown: on SIGTERM/SIGINT uvicorn stops accepting, lets calls in flight finish for up to
  `http_shutdown_grace_s`, then runs the app's lifespan shutdown and returns.

The h11 protocol is always used (not httptools) because the timeouts hook into its parser state. This
module must not build the ASGI app (that is `http_app.build_http_app`) nor log request content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator, Sequence
from typing import Any, Final

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from klink_mcp.config import Settings

logger = logging.getLogger("klink_mcp.http")

_TIMEOUT_408: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 16\r\n\r\nrequest timeout\n"
)


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a header timeout, a body timeout and a connection cap.

    The limits are class attributes: `protocol_class(settings)` makes a subclass per server.
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._waiting_for: str = ""  # "head" or "body" while a timer runs

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # Over the cap: close before this connection can hold a slot. Counted after super() added it.
            logger.warning("refused a connection: %d open (KLINK_HTTP_MAX_CONNECTIONS)", self.max_connections)
            transport.abort()
            return
        self._arm("head", self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._waiting_for != "body":
                self._arm("body", self.body_timeout_s)
        elif state is h11.IDLE:
            # A head in progress on a kept-alive connection (uvicorn cancelled its keep-alive timer when
            # these bytes came): from now on the head has `header_timeout_s` to complete.
            if self._waiting_for != "head":
                self._arm("head", self.header_timeout_s)
        else:
            self._disarm()  # the request is complete (DONE) or the connection is ending

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request, if any, starts under uvicorn's keep-alive timer until its first byte.
        if self.conn.their_state is not h11.SEND_BODY:
            self._disarm()

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting_for = what
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        self._waiting_for = ""

    def _read_timed_out(self) -> None:
        what = self._waiting_for
        self._read_timer = None
        self._waiting_for = ""
        if self.transport.is_closing():
            return
        still_reading = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if not still_reading:
            return
        # While a head is awaited, no response is in progress (`self.cycle` may still be the previous
        # request's); while a body is awaited, the app may already have started answering.
        response_started = what == "body" and self.cycle is not None and self.cycle.response_started
        if not response_started:
            self.transport.write(_TIMEOUT_408)
        logger.info(
            "closed a connection from %s: the request %s did not arrive in time",
            self.client[0] if self.client else "?",
            what,
        )
        self.transport.close()


class DrainingServer(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM it has drained for ends the process normally (exit 0).

    uvicorn raises a captured signal again after its graceful shutdown, so the default SIGTERM handler
    would kill the process (status 143) although every call finished; a supervisor should see a clean
    exit. SIGINT is still raised again (the CLI turns it into exit 130).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured: list[int] = getattr(self, "_captured_signals", [])
            captured[:] = [sig for sig in captured if sig != signal.SIGTERM]


def protocol_class(settings: Settings) -> type[LimitedH11Protocol]:
    """A `LimitedH11Protocol` subclass carrying the limits from `settings`."""
    return type(
        "KlinkH11Protocol",
        (LimitedH11Protocol,),
        {
            "header_timeout_s": settings.http_header_timeout_s,
            "body_timeout_s": settings.http_body_timeout_s,
            "max_connections": settings.http_max_connections,
        },
    )


def uvicorn_config(
    app: ASGIApp, settings: Settings, host: str = "127.0.0.1", port: int = 0
) -> uvicorn.Config:
    """The uvicorn configuration with every limit of this module applied."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_class(settings),
        log_level=settings.log_level.lower(),
        lifespan="on",
        timeout_keep_alive=settings.http_keepalive_s,  # type: ignore[arg-type]  # a float works
        # uvicorn counts the connection asking too (">= limit" answers 503): + 1 so that a full house of
        # `http_max_connections` is still served, and the cap itself is enforced in connection_made.
        limit_concurrency=settings.http_max_connections + 1,
        timeout_graceful_shutdown=settings.http_shutdown_grace_s,  # type: ignore[arg-type]
        # The h11 parser refuses a request head larger than this (431-like 400): no unbounded buffering.
        h11_max_incomplete_event_size=64 * 1024,
    )


async def serve(
    app: ASGIApp,
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    sockets: Sequence[socket.socket] | None = None,
) -> None:
    """Serve `app` with the limits until SIGTERM/SIGINT (graceful) or cancellation.

    Pass `sockets` (already listening) to serve on them instead of binding `host:port`.

    Raises:
        OSError: the address cannot be bound.
    """
    server = DrainingServer(uvicorn_config(app, settings, host, port))
    await server.serve(list(sockets) if sockets is not None else None)
