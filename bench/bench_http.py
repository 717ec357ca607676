"""Streamable HTTP: throughput and latency of 32 concurrent MCP clients doing read calls.

    python bench/bench_http.py [--clients 32] [--seconds 30] [--embedded]

The server is the real command, `python -m klink_mcp serve --http` on loopback, in its own process,
talking to the loopback sandbox (another process) over HTTP as it would to K-LINK (`--embedded`:
the in-process sandbox tenant instead, no upstream HTTP).

Two phases with the same clients: closed loop (each client sends its next call as soon as the
last one answered: the most the server can do, with latency ~ clients / throughput by Little's
law) and open loop at a fixed total rate (default 300 calls/s: can it serve that rate, and with
what p95?).

Each client is a handshake-era MCP session (initialize, notifications/initialized, then
tools/call in a loop, alternating get_contact and list_tickets with page_size 10) on one
keep-alive connection. The clients are deliberately thin (h11 over raw sockets, one event loop)
so that on a small machine the load generator does not starve the server of CPU; every response
is still decoded and checked (a JSON-RPC result without isError). Reported: completed reads/s, median
and p95 latency, errors, and the CPU seconds each process spent per call (the server's figure is
its one-core capacity regardless of how busy the rest of the machine was).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import anyio
import anyio.abc
import h11
from _harness import (
    PROTOCOL,
    SANDBOX_TOKEN,
    cpu_seconds,
    free_port,
    http_server_process,
    median,
    p95,
    rss_mb,
    sandbox_process,
)

from klink_mcp.api.client import KlinkClient


class McpHttpSession:
    """One MCP session over one keep-alive HTTP/1.1 connection (h11), handshake era."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.host, self.port = host, port
        self.token = token  # sent as `Authorization: Bearer` when the server requires it
        self.stream: anyio.abc.SocketStream | None = None
        self.conn = h11.Connection(h11.CLIENT)
        self.session_id: str | None = None
        self.next_id = 1

    async def connect(self) -> None:
        self.stream = await anyio.connect_tcp(self.host, self.port)
        self.conn = h11.Connection(h11.CLIENT)

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()

    async def post(self, message: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Raises:
        ConnectionError: the server closed the connection.
        """
        if self.stream is None or self.conn.our_state is h11.MUST_CLOSE:
            await self.aclose()
            await self.connect()
        assert self.stream is not None
        body = json.dumps(message, separators=(",", ":")).encode()
        headers = [
            ("host", f"{self.host}:{self.port}"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("content-length", str(len(body))),
            ("mcp-protocol-version", PROTOCOL),
        ]
        if self.token is not None:
            headers.append(("authorization", f"Bearer {self.token}"))
        if self.session_id:
            headers.append(("mcp-session-id", self.session_id))
        data = self.conn.send(h11.Request(method="POST", target="/mcp", headers=headers)) or b""
        data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.send(data)
        status = 0
        response_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    received = await self.stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                    raise ConnectionError("server closed the connection") from exc
                self.conn.receive_data(received)
            elif isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("server closed the connection")
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return status, response_headers, b"".join(chunks)

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Raises:
        RuntimeError: not a 200 JSON-RPC result.
        """
        rid = self.next_id
        self.next_id += 1
        status, headers, body = await self.post(
            {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        )
        if status != 200:
            raise RuntimeError(f"{method}: HTTP {status} {body[:200]!r}")
        if self.session_id is None and "mcp-session-id" in headers:
            self.session_id = headers["mcp-session-id"]
        message = _decode(headers.get("content-type", ""), body, rid)
        if "result" not in message:
            raise RuntimeError(f"{method}: {message.get('error')}")
        result: dict[str, Any] = message["result"]
        return result

    async def initialize(self) -> None:
        await self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "klink-load", "version": "1"},
            },
        )
        status, _, _ = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if status != 202:
            raise RuntimeError(f"notifications/initialized: HTTP {status}")


def _decode(content_type: str, body: bytes, rid: int) -> dict[str, Any]:
    if content_type.startswith("application/json"):
        decoded: dict[str, Any] = json.loads(body)
        return decoded
    for event in body.split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:"))
        if data:
            message: dict[str, Any] = json.loads(data)
            if message.get("id") == rid:
                return message
    raise RuntimeError(f"no response with id {rid} in the stream")


async def _ids(url: str, count: int) -> list[str]:
    async with KlinkClient(url, SANDBOX_TOKEN) as client:
        page = await client.list_contacts(page=1, page_size=min(100, max(count, 1)))
        return [str(c.id) for c in page.items]


async def load(
    port: int, contact_ids: list[str], clients: int, seconds: float, rate: float | None = None
) -> dict[str, Any]:
    """Drive `clients` sessions for `seconds`. Without `rate`: closed loop (each client sends its next
    call when the last one answered). With `rate` (calls/s in total): open loop, each client on a fixed
    schedule, and latency counts from the scheduled send time, so queueing is not hidden when the
    server falls behind (no coordinated omission).
    """
    latencies: list[float] = []
    errors: list[str] = []
    sessions = [McpHttpSession("127.0.0.1", port) for _ in range(clients)]
    for session in sessions:
        await session.connect()
    async with anyio.create_task_group() as tg:
        for session in sessions:
            tg.start_soon(session.initialize)
    began = time.perf_counter()
    deadline = began + seconds
    interval = clients / rate if rate else 0.0

    async def worker(index: int, session: McpHttpSession) -> None:
        contact = contact_ids[index % len(contact_ids)]
        n = index
        scheduled = began + (interval * index / clients)
        while True:
            if interval:
                if scheduled >= deadline:
                    return
                now = time.perf_counter()
                if scheduled > now:
                    await anyio.sleep(scheduled - now)
                start = scheduled
                scheduled += interval
            else:
                start = time.perf_counter()
                if start >= deadline:
                    return
            n += 1
            name, args = (
                ("get_contact", {"contact_id": contact}) if n % 2 else ("list_tickets", {"page_size": 10})
            )
            try:
                result = await session.request("tools/call", {"name": name, "arguments": args})
                if result.get("isError"):
                    raise RuntimeError(f"{name}: isError {str(result.get('content'))[:200]}")
            except (RuntimeError, ConnectionError, OSError) as exc:
                errors.append(str(exc) if len(errors) < 20 else "")
                continue
            latencies.append((time.perf_counter() - start) * 1000)

    async with anyio.create_task_group() as tg:
        for index, session in enumerate(sessions):
            tg.start_soon(worker, index, session)
    wall = time.perf_counter() - began
    for session in sessions:
        await session.aclose()
    return {
        "mode": f"open loop at {rate:g}/s" if rate else "closed loop",
        "wall_s": wall,
        "calls": len(latencies),
        "errors": len(errors),
        "error_samples": [e for e in errors if e][:5],
        "reads_per_s": len(latencies) / wall,
        "median_ms": median(latencies),
        "p95_ms": p95(latencies),
    }


async def run(
    clients: int = 32, seconds: float = 30.0, embedded: bool = False, paced_rate: float | None = 300.0
) -> dict[str, Any]:
    """Closed loop (as fast as the server answers), then, with `paced_rate`, open loop at that rate."""
    port = free_port()
    with sandbox_process() as sandbox:
        contact_ids = await _ids(sandbox.url, clients)
        with http_server_process(None if embedded else sandbox.url, port) as server:
            # Warm up (imports on first call, connection pool to the sandbox), then measure.
            await load(port, contact_ids, 4, 1.0)
            server_cpu0, sandbox_cpu0 = cpu_seconds(server.pid), cpu_seconds(sandbox.pid)
            client_cpu0 = time.process_time()
            result = await load(port, contact_ids, clients, seconds)
            calls = max(result["calls"], 1)
            result.update(
                {
                    "clients": clients,
                    "seconds": seconds,
                    "upstream": "embedded sandbox" if embedded else "loopback sandbox process",
                    "server_cpu_ms_per_call": (cpu_seconds(server.pid) - server_cpu0) * 1000 / calls,
                    "sandbox_cpu_ms_per_call": (cpu_seconds(sandbox.pid) - sandbox_cpu0) * 1000 / calls,
                    "loadgen_cpu_ms_per_call": (time.process_time() - client_cpu0) * 1000 / calls,
                    "server_rss_mb": rss_mb(server.pid),
                }
            )
            result["server_one_core_capacity_per_s"] = 1000 / result["server_cpu_ms_per_call"]
            if paced_rate:
                result["paced"] = await load(port, contact_ids, clients, seconds, rate=paced_rate)
    return result


def report(r: dict[str, Any]) -> None:
    print(
        f"Streamable HTTP, {r['clients']} clients x {r['seconds']:.0f} s read calls ({r['upstream']}): "
        f"{r['reads_per_s']:.0f} reads/s, median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
        f"{r['calls']} calls, {r['errors']} errors"
    )
    print(
        f"  CPU per call: server {r['server_cpu_ms_per_call']:.2f} ms "
        f"(one-core capacity ~{r['server_one_core_capacity_per_s']:.0f} calls/s), "
        f"sandbox {r['sandbox_cpu_ms_per_call']:.2f} ms, load generator {r['loadgen_cpu_ms_per_call']:.2f} ms; "
        f"server RSS {r['server_rss_mb']:.0f} MiB"
    )
    for sample in r["error_samples"]:
        print(f"  error: {sample}")
    paced = r.get("paced")
    if paced:
        print(
            f"  {paced['mode']} ({r['clients']} clients on a schedule, latency from the scheduled time): "
            f"{paced['reads_per_s']:.0f} reads/s done, median {paced['median_ms']:.1f} ms, "
            f"p95 {paced['p95_ms']:.1f} ms, {paced['errors']} errors"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--embedded", action="store_true", help="server uses the embedded sandbox tenant")
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop phase rate (0: skip the phase)")
    args = parser.parse_args()
    report(anyio.run(run, args.clients, args.seconds, args.embedded, args.rate or None))


if __name__ == "__main__":
    main()
