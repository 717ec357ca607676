"""The sandbox's webhook sender: real, signed HTTP deliveries of sandbox tenant events.

`WebhookEmitter(url, secret)` plays K-LINK's part: `attach(tenant)` registers on the sandbox tenant's
listener hook, every event becomes a body `{"event", "timestamp", "data"}` signed with HMAC-SHA256
(`x-signature`, hex) and is POSTed (httpx2) from background workers while `async with
emitter.running():` is open. Events emitted before `running()` wait in a backlog.

Delivery is at-least-once, like the real thing: connection errors, timeouts, 408/425/429 and 5xx are
retried up to `max_attempts` with exponential backoff and full jitter (capped; `Retry-After` honoured
up to the cap); any other answer is final (a 4xx is logged and counted as failed). A retry resends
the identical bytes, so the receiver can deduplicate. `duplicate_rate` additionally redelivers a
share of successful deliveries on purpose, to exercise deduplication.

Backoff sleeps go through the injectable `sleep` (tests pass a no-op: no real sleeps). `emit()` may be
called from the event loop's thread or any other thread. The secret is held as `SecretStr` and
never logged; payloads (customer data) are never logged. Not for production use against K-LINK:
it exists so the sandbox can exercise a receiver end to end.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
import httpx2
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import SecretStr

from klink_mcp import USER_AGENT
from klink_mcp.webhooks.events import compute_signature, format_timestamp

__all__ = ["EmitterStats", "ListenerHost", "WebhookEmitter"]

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS: Final = frozenset({408, 425, 429}) | frozenset(range(500, 600))


class ListenerHost(Protocol):
    """What `attach` needs: the sandbox tenant's webhook hook (`SandboxTenant.add_listener`)."""

    def add_listener(self, cb: Callable[[str, dict[str, Any]], None]) -> None: ...


@dataclass
class EmitterStats:
    """Counters since the emitter was created."""

    emitted: int = 0  # events handed to emit()
    delivered: int = 0  # events answered 2xx
    failed: int = 0  # events given up on (final non-2xx, or retries exhausted, or dropped at shutdown)
    attempts: int = 0  # HTTP requests made, retries and duplicates included
    retries: int = 0  # attempts after the first, for the same event
    duplicates_sent: int = 0  # deliberate redeliveries (duplicate_rate)


@dataclass(frozen=True)
class _Delivery:
    event: str
    body: bytes
    headers: dict[str, str]


def _now() -> datetime:
    return datetime.now(UTC)


class WebhookEmitter:
    """Signs and POSTs webhook events to `url` in the background, with bounded retries."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        max_attempts: int = 5,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        timeout_s: float = 10.0,
        concurrency: int = 1,
        duplicate_rate: float = 0.0,
        seed: int | None = None,
        shutdown_timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        """Raises:
        ValueError: an empty secret, `max_attempts`/`concurrency` < 1, or `duplicate_rate` outside [0, 1].
        """
        if not secret:
            raise ValueError("a signing secret is required")
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        if not 0.0 <= duplicate_rate <= 1.0:
            raise ValueError("duplicate_rate must be within [0, 1]")
        self.url = url
        self._secret = SecretStr(secret)
        self._transport = transport
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._duplicate_rate = duplicate_rate
        self._random = random.Random(seed)
        self._shutdown_timeout_s = shutdown_timeout_s
        self._sleep = sleep
        self._clock = clock
        self.stats = EmitterStats()
        self._lock = threading.Lock()  # guards _backlog/_send against emit() from other threads
        self._backlog: deque[_Delivery] = deque()
        self._send: MemoryObjectSendStream[_Delivery] | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._outstanding = 0  # queued or in flight, on the loop
        self._idle = anyio.Event()
        self._idle.set()

    def __repr__(self) -> str:
        return f"WebhookEmitter(url={self.url!r})"

    # -- producing ---------------------------------------------------------------------------------

    def attach(self, tenant: ListenerHost) -> None:
        """Emit every event of a sandbox tenant (`tenant.add_listener(cb(event_name, data))`)."""
        tenant.add_listener(self.emit)

    def sign(
        self, event: str, data: Mapping[str, Any], *, timestamp: datetime | None = None
    ) -> tuple[bytes, str]:
        """The body K-LINK would send for this event and its `x-signature`."""
        body = json.dumps(
            {"event": event, "timestamp": format_timestamp(timestamp or self._clock()), "data": dict(data)},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        return body, compute_signature(self._secret.get_secret_value().encode(), body)

    def emit(self, event: str, data: Mapping[str, Any]) -> None:
        """Queue one event for delivery (thread-safe; never blocks on the network)."""
        body, signature = self.sign(event, data)
        delivery = _Delivery(
            event=event,
            body=body,
            headers={"content-type": "application/json", "x-signature": signature, "user-agent": USER_AGENT},
        )
        with self._lock:
            self.stats.emitted += 1
            send, token, loop_thread = self._send, self._token, self._loop_thread
            if send is None:
                self._backlog.append(delivery)
                return
        if threading.get_ident() == loop_thread:
            self._enqueue(delivery)
        else:
            anyio.from_thread.run_sync(self._enqueue, delivery, token=token)

    def _enqueue(self, delivery: _Delivery) -> None:
        send = self._send
        if send is None:  # stopped meanwhile: keep it for the next running()
            with self._lock:
                self._backlog.append(delivery)
            return
        if self._outstanding == 0:
            self._idle = anyio.Event()
        self._outstanding += 1
        send.send_nowait(delivery)

    def _finished_one(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()

    # -- running -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[WebhookEmitter]:
        """Deliver queued and new events in the background while the block runs.

        On exit, waits up to `shutdown_timeout_s` for outstanding deliveries, then drops the rest
        (counted as failed and logged).

        Raises:
            RuntimeError: already running.
        """
        if self._send is not None:
            raise RuntimeError("the emitter is already running")
        send, receive = anyio.create_memory_object_stream[_Delivery](max_buffer_size=math.inf)
        timeout = httpx2.Timeout(self._timeout_s)
        async with (
            httpx2.AsyncClient(transport=self._transport, timeout=timeout) as client,
            anyio.create_task_group() as tg,
        ):
            for _ in range(self._concurrency):
                tg.start_soon(self._worker, receive.clone(), client)
            receive.close()
            with self._lock:
                self._send = send
                self._token = anyio.lowlevel.current_token()
                self._loop_thread = threading.get_ident()
                backlog = list(self._backlog)
                self._backlog.clear()
            for delivery in backlog:
                self._enqueue(delivery)
            try:
                yield self
            finally:
                with self._lock:
                    self._send = None
                send.close()
                with anyio.move_on_after(self._shutdown_timeout_s):
                    await self.drain()
                if self._outstanding:
                    logger.warning(
                        "emitter stopped with %d deliveries outstanding; dropped", self._outstanding
                    )
                    self.stats.failed += self._outstanding
                tg.cancel_scope.cancel()

    async def drain(self) -> None:
        """Wait until every queued event has been delivered or given up on.

        Raises:
            RuntimeError: events are waiting in the backlog but the emitter is not running.
        """
        if self._send is None and self._backlog:
            raise RuntimeError("events are queued but the emitter is not running")
        while self._outstanding:
            await self._idle.wait()

    async def _worker(
        self, receive: MemoryObjectReceiveStream[_Delivery], client: httpx2.AsyncClient
    ) -> None:
        async with receive:
            async for delivery in receive:
                try:
                    delivered = await self._deliver(client, delivery)
                    if delivered and self._duplicate_rate and self._random.random() < self._duplicate_rate:
                        self.stats.duplicates_sent += 1
                        await self._deliver(client, delivery, count=False)
                finally:
                    self._finished_one()

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        delay = self._random.uniform(0, min(self._backoff_cap_s, self._backoff_base_s * 2 ** (attempt - 1)))
        if retry_after is not None:
            try:
                delay = max(delay, min(float(retry_after), self._backoff_cap_s))
            except ValueError:
                pass
        return delay

    async def _deliver(self, client: httpx2.AsyncClient, delivery: _Delivery, *, count: bool = True) -> bool:
        """POST until a final answer; returns True for 2xx."""
        for attempt in range(1, self._max_attempts + 1):
            self.stats.attempts += 1
            if attempt > 1:
                self.stats.retries += 1
            retry_after: str | None = None
            try:
                response = await client.post(self.url, content=delivery.body, headers=delivery.headers)
            except httpx2.TransportError as exc:
                reason = f"{type(exc).__name__}"
            else:
                if 200 <= response.status_code < 300:
                    if count:
                        self.stats.delivered += 1
                    return True
                if response.status_code not in _RETRYABLE_STATUS:
                    logger.warning(
                        "webhook %s refused with HTTP %d; not retried", delivery.event, response.status_code
                    )
                    if count:
                        self.stats.failed += 1
                    return False
                reason = f"HTTP {response.status_code}"
                retry_after = response.headers.get("retry-after")
            if attempt < self._max_attempts:
                delay = self._backoff(attempt, retry_after)
                logger.info(
                    "webhook %s attempt %d failed (%s); retrying in %.2fs",
                    delivery.event,
                    attempt,
                    reason,
                    delay,
                )
                await self._sleep(delay)
            else:
                logger.warning(
                    "webhook %s failed after %d attempts (%s); giving up", delivery.event, attempt, reason
                )
        if count:
            self.stats.failed += 1
        return False
