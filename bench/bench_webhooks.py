"""Benchmark the webhook receiver: events/s ingested over loopback and the receive latency.

    python bench/bench_webhooks.py [--events 2000] [--concurrency 20] [--redeliver 0.1] [--in-process]

By default the receiver runs as the real command (`python -m klink_mcp.webhooks.cli`) in its own
process, so the load generator's CPU does not eat into the receiver's; `--in-process` serves it on
this process's event loop instead. The load generator speaks minimal HTTP/1.1 over keep-alive
loopback sockets: a full client (httpx2) tops out near 500 requests/s on a small machine and would
measure itself, not the receiver. Every request is a signed, durable (fsynced) store. Prints:

- throughput: N events (+ redeliveries) from C concurrent keep-alive senders -> events/s stored;
- latency: median and p95 per request under that load, and for one sequential sender (no queueing);
- the store alone (no HTTP): C concurrent `hub.ingest` calls -> events/s (group commit).

Figures, not pass/fail: they depend on the disk's fsync time and on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx2
from anyio.streams.buffered import BufferedByteReceiveStream

from klink_mcp.config import load_settings
from klink_mcp.webhooks.events import compute_signature
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.receiver import serve_receiver
from klink_mcp.webhooks.store import EventStore

SECRET = "bench-secret-0123456789abcdef0123456789"  # 32+ bytes, as the settings require


def signed_body(worker: int, n: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "event": "message.inbound",
            "timestamp": f"2026-01-09T03:{worker % 60:02d}:{n % 60:02d}.{n:06d}Z",
            "data": {
                "id": f"m-{worker}-{n}",
                "contactId": f"c-{worker}",
                "channel": "line",
                "message": f"#{n}",
            },
        },
        separators=(",", ":"),
    ).encode()
    headers = {"content-type": "application/json", "x-signature": compute_signature(SECRET.encode(), body)}
    return body, headers


@asynccontextmanager
async def subprocess_receiver(db: Path) -> AsyncIterator[str]:
    env = {
        **os.environ,
        "KLINK_WEBHOOK_SECRET": SECRET,
        "KLINK_EVENTS_DB": str(db),
        "KLINK_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "klink_mcp.webhooks.cli", "--port", "0", "--log-level", "INFO"]
    async with await anyio.open_process(command, env=env) as process:
        assert process.stderr is not None
        lines = BufferedByteReceiveStream(process.stderr)
        url = None
        with anyio.fail_after(30):
            while url is None:
                line = (await lines.receive_until(b"\n", 65536)).decode()
                match = re.search(r"listening on (http://\S+)", line)
                url = match.group(1) if match else None

        async def drain_stderr() -> None:  # keep the pipe from filling up (one INFO line per event)
            try:
                while True:
                    await lines.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain_stderr)
            try:
                yield url
            finally:
                process.terminate()
                with anyio.move_on_after(10):
                    await process.wait()
                tg.cancel_scope.cancel()


@asynccontextmanager
async def in_process_receiver(db: Path) -> AsyncIterator[str]:
    settings = load_settings(env={}, webhook_secret=SECRET, events_db=db)
    async with EventStore(db) as store, serve_receiver(settings, EventHub(store), port=0) as running:
        yield running.url


class RawHTTP:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for the bench."""

    def __init__(self, stream: anyio.abc.ByteStream, host: str, path: str) -> None:
        self._stream = BufferedByteReceiveStream(stream)
        self._send = stream
        self._head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"

    @classmethod
    async def connect(cls, url: str) -> RawHTTP:
        parsed = httpx2.URL(url)
        stream = await anyio.connect_tcp(parsed.host, parsed.port or 80)
        return cls(stream, f"{parsed.host}:{parsed.port}", parsed.path)

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k != "content-type")
        await self._send.send(f"{self._head}{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self._stream.receive_until(b"\r\n\r\n", 65536)
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        return status, await self._stream.receive_exactly(length)

    async def aclose(self) -> None:
        await self._send.aclose()


async def load(url: str, events: int, concurrency: int, redeliver: float) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    duplicates = 0
    per_worker = events // concurrency
    every = round(1 / redeliver) if redeliver > 0 else 0
    connections = [await RawHTTP.connect(url) for _ in range(concurrency)]

    async def sender(connection: RawHTTP, worker: int) -> None:
        nonlocal duplicates
        for n in range(per_worker):
            body, headers = signed_body(worker, n)
            for _ in range(2 if every and n % every == 0 else 1):
                started = time.perf_counter()
                status, answer = await connection.post(body, headers)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}: {answer!r}")
                duplicates += json.loads(answer)["duplicate"]

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for worker, connection in enumerate(connections):
            tg.start_soon(sender, connection, worker)
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.aclose()
    return elapsed, latencies, duplicates


async def sequential_latency(url: str, count: int) -> list[float]:
    latencies = []
    connection = await RawHTTP.connect(url)
    for n in range(count):
        body, headers = signed_body(10_000, n)
        started = time.perf_counter()
        status, _ = await connection.post(body, headers)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
    await connection.aclose()
    return latencies


async def direct_ingest(db: Path, events: int, concurrency: int) -> float:
    async with EventStore(db) as store:
        hub = EventHub(store)
        per_worker = events // concurrency

        async def worker(w: int) -> None:
            for n in range(per_worker):
                await hub.ingest(json.loads(signed_body(20_000 + w, n)[0]))

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for w in range(concurrency):
                tg.start_soon(worker, w)
        return (per_worker * concurrency) / (time.perf_counter() - started)


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "events.sqlite3"
        receiver = in_process_receiver(db) if args.in_process else subprocess_receiver(db)
        async with receiver as url:
            elapsed, latencies, duplicates = await load(url, args.events, args.concurrency, args.redeliver)
            sequential = await sequential_latency(url, args.sequential)
        stored = (args.events // args.concurrency) * args.concurrency
        where = "in-process" if args.in_process else "separate process (klink_mcp.webhooks.cli)"
        print(f"receiver: {where}; SQLite WAL, synchronous=FULL; python {sys.version.split()[0]}")
        print(
            f"loopback: {stored} events + {duplicates} redeliveries from {args.concurrency} concurrent senders "
            f"in {elapsed:.2f} s -> {stored / elapsed:.0f} events/s stored "
            f"({len(latencies) / elapsed:.0f} requests/s)"
        )
        print(
            f"latency under load: median {statistics.median(latencies) * 1000:.1f} ms, p95 {ms(latencies, 0.95):.1f} ms"
        )
        print(
            f"latency, one sequential sender ({args.sequential} events): "
            f"median {statistics.median(sequential) * 1000:.2f} ms, p95 {ms(sequential, 0.95):.2f} ms"
        )
        rate = await direct_ingest(Path(tmp) / "direct.sqlite3", args.events, args.concurrency)
        print(f"store alone (hub.ingest, {args.concurrency} concurrent, no HTTP): {rate:.0f} events/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--redeliver", type=float, default=0.1, help="share of events sent twice")
    parser.add_argument("--sequential", type=int, default=200, help="events for the sequential latency run")
    parser.add_argument("--in-process", action="store_true", help="serve the receiver on this event loop")
    anyio.run(main, parser.parse_args())
