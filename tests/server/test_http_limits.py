"""`serve --http` limits: half-sent requests are cut off, connections are capped, shutdown is graceful.

The in-process tests run the real app (`build_http_app`) under `http_server.serve` (uvicorn with the
limits) on 127.0.0.1 with short timeouts; attackers are raw TCP sockets, normal clients are the MCP
`Client`. Waits are for events (a socket's EOF, a log line) bounded by `anyio.fail_after`; nothing sleeps.
The shutdown test runs `python -m klink_mcp serve --http` as a real subprocess and sends it SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import uvicorn
from anyio.abc import SocketStream
from anyio.streams.text import TextReceiveStream
from mcp import Client

from klink_mcp.http_app import build_http_app
from klink_mcp.http_server import uvicorn_config
from klink_mcp.sandbox import SandboxTenant
from klink_mcp.sandbox.faults import FaultConfig
from klink_mcp.sandbox.server import serve_sandbox
from tests.helpers.server import make_server, make_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
KEEPALIVE_S = 0.5
N_HALF_OPEN = 100
# Long enough for two MCP sessions to finish while the attack holds, even on a busy 2-core box.
ATTACK_HEADER_TIMEOUT_S = 5.0
PARTIAL_HEAD = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


async def _serve(**limits: Any) -> AsyncIterator[tuple[str, int]]:
    limits.setdefault("http_header_timeout_s", HEADER_TIMEOUT_S)
    settings = make_settings(http_body_timeout_s=BODY_TIMEOUT_S, http_keepalive_s=KEEPALIVE_S, **limits)
    app = build_http_app(make_server(SandboxTenant.seeded()), settings, "127.0.0.1")
    # Listening before the server task starts: clients may connect at once (the kernel queues them).
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, settings))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            yield "127.0.0.1", port
            server.should_exit = True
    finally:
        sock.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, int]]:
    async for address in _serve():
        yield address


async def _read_until_closed(stream: SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


@pytest.fixture
async def attack_server() -> AsyncIterator[tuple[str, int]]:
    async for address in _serve(http_header_timeout_s=ATTACK_HEADER_TIMEOUT_S):
        yield address


async def test_100_half_open_requests_are_closed_within_the_header_timeout_while_clients_are_served(
    attack_server: tuple[str, int],
) -> None:
    host, port = attack_server
    opened = time.monotonic()  # before the first connection: each one's timer starts after this
    streams = [await anyio.connect_tcp(host, port) for _ in range(N_HALF_OPEN)]
    for stream in streams:
        await stream.send(PARTIAL_HEAD)  # the blank line that ends the head never comes
    closed_after: list[float] = []
    answers: list[bytes] = []

    async def attacker(stream: SocketStream) -> None:
        answers.append(await _read_until_closed(stream))
        closed_after.append(time.monotonic() - opened)
        await stream.aclose()

    listed_during_attack: list[int] = []
    with anyio.fail_after(ATTACK_HEADER_TIMEOUT_S + 10):
        async with anyio.create_task_group() as tg:
            for stream in streams:
                tg.start_soon(attacker, stream)
            # Normal MCP clients are served meanwhile, in both protocol eras.
            for mode in ("legacy", "auto"):
                async with Client(f"http://{host}:{port}/mcp", mode=mode) as client:  # type: ignore[arg-type]
                    listed_during_attack.append(len((await client.list_tools()).tools))
                assert len(closed_after) < N_HALF_OPEN, "the attack ended before the client was served"
    assert len(listed_during_attack) == 2 and min(listed_during_attack) > 10
    assert len(closed_after) == N_HALF_OPEN
    # Closed by the header timeout: not before it, and not long after (slack for a busy 2-core box).
    assert min(closed_after) >= ATTACK_HEADER_TIMEOUT_S * 0.9, min(closed_after)
    assert max(closed_after) <= ATTACK_HEADER_TIMEOUT_S + 3.0, max(closed_after)
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {a[:40] for a in answers}


async def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    server: tuple[str, int],
) -> None:
    started = time.monotonic()
    with anyio.fail_after(HEADER_TIMEOUT_S + 5):
        async with await anyio.connect_tcp(*server) as stream:
            answer = await _read_until_closed(stream)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started >= HEADER_TIMEOUT_S * 0.9


async def test_a_body_that_stalls_is_cut_off_at_the_body_timeout(server: tuple[str, int]) -> None:
    head = PARTIAL_HEAD + b"Accept: application/json, text/event-stream\r\nContent-Length: 200\r\n\r\n"
    started = time.monotonic()
    with anyio.fail_after(BODY_TIMEOUT_S + 5):
        async with await anyio.connect_tcp(*server) as stream:
            await stream.send(head + b'{"jsonrpc": "2.0", ')  # 180 bytes never come
            answer = await _read_until_closed(stream)
    took = time.monotonic() - started
    assert BODY_TIMEOUT_S * 0.9 <= took <= BODY_TIMEOUT_S + 3.0, took
    # Either our 408, or the app's own answer to the disconnect it saw: never a hung connection.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80]


async def test_a_half_sent_second_request_on_a_kept_alive_connection_is_cut_off_too(
    server: tuple[str, int],
) -> None:
    with anyio.fail_after(HEADER_TIMEOUT_S + 5):
        async with await anyio.connect_tcp(*server) as stream:
            await stream.send(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = await stream.receive()
            assert first.startswith(b"HTTP/1.1 404 ")
            started = time.monotonic()
            await stream.send(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            rest = await _read_until_closed(stream)
    assert b"408 Request Timeout" in rest
    assert time.monotonic() - started >= HEADER_TIMEOUT_S * 0.9


async def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    server: tuple[str, int],
) -> None:
    with anyio.fail_after(KEEPALIVE_S + 5):
        async with await anyio.connect_tcp(*server) as stream:
            await stream.send(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = await stream.receive()
            started = time.monotonic()
            rest = await _read_until_closed(stream)
    took = time.monotonic() - started
    assert first.startswith(b"HTTP/1.1 404 ") and rest == b""
    # uvicorn's keep-alive closed it (our header timer would have written a 408 first).
    assert KEEPALIVE_S * 0.9 <= took <= KEEPALIVE_S + 3.0, took


async def test_connections_over_the_cap_are_closed_at_once() -> None:
    async for host, port in _serve(http_max_connections=5):
        held = [await anyio.connect_tcp(host, port) for _ in range(5)]
        with anyio.fail_after(HEADER_TIMEOUT_S + 5):
            async with await anyio.connect_tcp(host, port) as extra:
                # Aborted at once, without a byte: the header timeout would have answered 408 first.
                assert await _read_until_closed(extra) == b""
            # A full house is still served (not 503): the cap is on connections beyond it.
            await held[0].send(b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await held[0].receive()).startswith(b"HTTP/1.1 404 ")
        for stream in held:
            await stream.aclose()


# ---------------------------------------------------------------------------------------------- SIGTERM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for_line(lines: AsyncIterator[str], needle: str, seen: list[str]) -> None:
    async for line in lines:
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} never logged; stderr was:\n{''.join(seen)}")


async def _lines(stream: Any) -> AsyncIterator[str]:
    buffer = ""
    async for chunk in TextReceiveStream(stream):
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            yield line + "\n"


async def test_sigterm_lets_a_slow_call_in_flight_finish_then_the_server_exits() -> None:
    tenant = SandboxTenant.seeded()
    entered, release = anyio.Event(), anyio.Event()

    async def gated_sleep(seconds: float) -> None:
        # The tenant's latency: the call is held at K-LINK until the test lets it go.
        entered.set()
        await release.wait()

    async with serve_sandbox(tenant) as sandbox:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KLINK_")}
        env.update(
            KLINK_API_TOKEN="sandbox-token",
            KLINK_BASE_URL=sandbox.url,
            KLINK_EVENTS_DB=":memory:",
            KLINK_LOG_LEVEL="INFO",
            KLINK_HTTP_SHUTDOWN_GRACE="20",
        )
        command = [sys.executable, "-m", "klink_mcp", "serve", "--http", "--port", str(port)]
        seen: list[str] = []
        async with await anyio.open_process(command, env=env, stderr=subprocess.PIPE) as process:
            assert process.stderr is not None
            lines = _lines(process.stderr)
            with anyio.fail_after(60):
                await _wait_for_line(lines, "Uvicorn running on", seen)
                async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                    assert len((await client.list_tools()).tools) > 10
                    tenant.sleep = gated_sleep
                    tenant.faults = FaultConfig(latency_s=5.0)
                    results: list[Any] = []

                    async def slow_call() -> None:
                        results.append(await client.call_tool("list_tags", {}))

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(slow_call)
                        await entered.wait()
                        process.send_signal(signal.SIGTERM)
                        await _wait_for_line(lines, "Shutting down", seen)
                        release.set()  # the slow call may now finish: the server must let it
                    assert len(results) == 1
                    assert not results[0].is_error, results[0]
                    assert results[0].structured_content is not None
                # The server exits by itself once the call is done and the client has gone.
                async for line in lines:
                    seen.append(line)
                code = await process.wait()
    assert code == 0, "".join(seen)
    assert "Traceback" not in "".join(seen), "".join(seen)


async def test_the_webhook_receiver_cuts_off_half_sent_requests_too() -> None:
    # The receiver is the listener K-LINK (and anyone else) can reach: same protocol, same limits.
    from klink_mcp.webhooks.hub import EventHub
    from klink_mcp.webhooks.receiver import serve_receiver
    from klink_mcp.webhooks.store import MEMORY, EventStore

    settings = make_settings(
        webhook_secret="s" * 40, http_header_timeout_s=HEADER_TIMEOUT_S, http_keepalive_s=KEEPALIVE_S
    )
    store = await EventStore.open(MEMORY)
    try:
        async with serve_receiver(settings, EventHub(store), port=0) as running:
            started = time.monotonic()
            with anyio.fail_after(HEADER_TIMEOUT_S + 5):
                async with await anyio.connect_tcp("127.0.0.1", running.port) as stream:
                    await stream.send(b"POST /webhooks/klink HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    answer = await _read_until_closed(stream)
    finally:
        await store.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert HEADER_TIMEOUT_S * 0.9 <= time.monotonic() - started <= HEADER_TIMEOUT_S + 3.0
