"""Throughput of the sandbox tenant: in process and over loopback HTTP (figures, not a pass/fail test).

    python bench/bench_sandbox.py [--requests 3000] [--concurrency 8]

Measures GET /api/v1/contacts/{id} and a tickets page (GET /api/v1/tickets?page=3&pageSize=20):
- in-process: httpx2.AsyncClient over SandboxTransport, plus the transport alone (no client);
- loopback, server in this process (clients and server share one event loop and one core);
- loopback, server in a subprocess (`python -m klink_mcp.sandbox`: the server has one core to
  itself), with N concurrent keep-alive httpx2 clients and with N raw keep-alive sockets (a
  minimal HTTP/1.1 client), and the server process's CPU time per request, which gives its
  one-core capacity even on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx2

from klink_mcp.sandbox import DEFAULT_TOKEN, SandboxTenant, SandboxTransport, serve_sandbox

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
TICKETS_PAGE = "/api/v1/tickets?page=3&pageSize=20"
PLAIN = ssl.create_default_context()


def report(label: str, count: int, seconds: float) -> None:
    print(f"  {label:<58} {count / seconds:>9,.0f} req/s  {seconds / count * 1e6:>8,.0f} us/req")


async def run_clients(make_call: Callable[[int], Awaitable[None]], total: int, concurrency: int) -> float:
    per_worker = total // concurrency
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for worker in range(concurrency):
            tg.start_soon(make_call, worker if per_worker else 0)
    return time.perf_counter() - start


async def httpx_load(
    base_url: str, path: str, total: int, concurrency: int, transport: object = None
) -> float:
    clients = [
        httpx2.AsyncClient(base_url=base_url, headers=AUTH, verify=PLAIN, transport=transport)  # type: ignore[arg-type]
        for _ in range(concurrency)
    ]
    for client in clients:  # open the keep-alive connections before timing
        (await client.get(path)).raise_for_status()

    async def worker(index: int) -> None:
        client = clients[index]
        for _ in range(total // concurrency):
            response = await client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"unexpected status {response.status_code}")

    try:
        return await run_clients(worker, total, concurrency)
    finally:
        for client in clients:
            await client.aclose()


async def raw_load(port: int, path: str, total: int, concurrency: int) -> float:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {DEFAULT_TOKEN}\r\n\r\n".encode()
    )
    streams = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(concurrency)]

    async def one(stream: anyio.abc.SocketStream, buffer: bytearray) -> None:
        await stream.send(request)
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                match = re.search(rb"content-length: (\d+)", bytes(buffer[:end]).lower())
                size = end + 4 + int(match.group(1) if match else 0)
                if len(buffer) >= size:
                    if not buffer.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(bytes(buffer[:40]))
                    del buffer[:size]
                    return
            buffer.extend(await stream.receive())

    async def worker(index: int) -> None:
        buffer = bytearray()
        for _ in range(total // concurrency):
            await one(streams[index], buffer)

    try:
        return await run_clients(worker, total, concurrency)
    finally:
        for stream in streams:
            await stream.aclose()


async def transport_only(tenant: SandboxTenant, path: str, total: int) -> float:
    transport = SandboxTransport(tenant)
    start = time.perf_counter()
    for _ in range(total):
        request = httpx2.Request("GET", "http://sandbox" + path, headers=AUTH)
        response = await transport.handle_async_request(request)
        await response.aread()
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to measure the server's own cost per request."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_subprocess_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "klink_mcp.sandbox", "--port", "0"],
        cwd=Path(__file__).resolve().parents[1],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"listening on (http://[\d.]+:\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"sandbox server did not start: {line!r}")
    return proc, match.group(1)


async def main(total: int, concurrency: int) -> None:
    tenant = SandboxTenant.seeded()
    contact_path = f"/api/v1/contacts/{next(iter(tenant.contacts))}"
    paths = (("GET contact", contact_path), ("GET tickets page (20)", TICKETS_PAGE))
    print(
        f"sandbox throughput: {total} requests per row, python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )

    print("in process")
    for label, path in paths:
        report(f"{label}: transport only (no client)", total, await transport_only(tenant, path, total))
        seconds = await httpx_load("http://sandbox", path, total, 1, transport=SandboxTransport(tenant))
        report(f"{label}: httpx2 client + SandboxTransport", total, seconds)

    print(f"loopback, server in this process, {concurrency} keep-alive httpx2 clients")
    async with serve_sandbox(tenant) as server:
        for label, path in paths:
            report(label, total, await httpx_load(server.url, path, total, concurrency))

    print(f"loopback, server in a subprocess (one core), {concurrency} keep-alive connections")
    proc, url = start_subprocess_server()
    try:
        port = int(url.rsplit(":", 1)[1])
        for label, path in paths:
            report(f"{label}: httpx2 clients", total, await httpx_load(url, path, total, concurrency))
            before = cpu_seconds(proc.pid)
            report(f"{label}: raw sockets", total, await raw_load(port, path, total, concurrency))
            used = cpu_seconds(proc.pid) - before
            print(
                f"    server CPU {used / total * 1e6:,.0f} us/req -> one core serves ~{total / used:,.0f} req/s"
                if used > 0
                else "    server CPU below clock resolution"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    anyio.run(main, args.requests, args.concurrency)
