"""Shared pieces of the klink-mcp benchmarks: statistics, processes, a raw stdio JSON-RPC client.

Used by `run_all.py` and the `bench_*` modules next to it. Everything here measures; nothing
asserts. The loopback sandbox runs in its own process (`python -m klink_mcp sandbox --port 0`) so
that its work never shares an event loop with the client being timed, and so that the server
processes under test talk to it over real HTTP, as they would to K-LINK.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

SANDBOX_TOKEN = "sandbox-token"  # the public demo credential of the embedded tenant
PROTOCOL = "2025-11-25"  # handshake era: what most MCP hosts speak today
MAX_LINE = 16 * 1024 * 1024


# -- statistics ---------------------------------------------------------------------------------------


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples)) if samples else float("nan")


def p95(samples: Sequence[float]) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return float(statistics.quantiles(samples, n=20, method="inclusive")[18])


def summary(samples_ms: Sequence[float]) -> dict[str, float]:
    return {"n": len(samples_ms), "median_ms": median(samples_ms), "p95_ms": p95(samples_ms)}


# -- environment --------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any KLINK_* setting (a developer's token must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINK_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import mcp

    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "mcp": getattr(mcp, "__version__", None) or _dist_version("mcp"),
        "httpx2": _dist_version("httpx2"),
        "klink_mcp": _dist_version("klink-mcp"),
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def rss_mb(pid: int) -> float:
    """Resident set size of a live process, in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the loopback sandbox in its own process ------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    url: str
    pid: int


@contextlib.contextmanager
def sandbox_process() -> Iterator[Sandbox]:
    """Run `python -m klink_mcp sandbox --port 0`; yield its base URL and pid; stop it on exit.

    Raises:
        RuntimeError: it did not announce a URL within 30 s.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "klink_mcp", "sandbox", "--port", "0"],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _await_line(proc, re.compile(r"listening on (http://[\d.]+:\d+)"), 30.0)
        yield Sandbox(url, proc.pid)
    finally:
        stop(proc)


@contextlib.contextmanager
def http_server_process(base_url: str | None, port: int) -> Iterator[subprocess.Popen[str]]:
    """Run `python -m klink_mcp serve --http` on 127.0.0.1:port against `base_url` (None: embedded
    sandbox); wait until it accepts connections.

    Raises:
        RuntimeError: it did not come up within 30 s.
    """
    env = clean_env(**({"KLINK_API_TOKEN": SANDBOX_TOKEN, "KLINK_BASE_URL": base_url} if base_url else {}))
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed below, read on failure
    proc = subprocess.Popen(
        [sys.executable, "-m", "klink_mcp", "serve", "--http", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        import socket

        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"serve --http exited early: {log.read()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("serve --http did not come up within 30 s")
            time.sleep(0.05)
        yield proc
    finally:
        stop(proc)
        log.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _await_line(proc: subprocess.Popen[str], pattern: re.Pattern[str], timeout_s: float) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = pattern.search(line)
        if match:
            # Keep draining stderr so the child never blocks on a full pipe.
            import threading

            threading.Thread(target=_drain, args=(proc,), daemon=True).start()
            return match.group(1)
    stop(proc)
    raise RuntimeError(f"process did not announce itself: {''.join(seen)[-2000:]}")


def _drain(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    with contextlib.suppress(ValueError, OSError):
        for _ in proc.stderr:
            pass


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate one child we started (SIGTERM, then SIGKILL after 5 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- a raw JSON-RPC client over stdio -------------------------------------------------------------------


class RpcError(RuntimeError):
    pass


@dataclass
class StdioRpc:
    """A minimal line-delimited JSON-RPC client for `python -m klink_mcp` over stdio.

    It does as little as a client can (encode, write a line, read lines, decode), so what it
    times is the server's work plus the pipe, not a client SDK's validation.
    """

    process: anyio.abc.Process
    reader: BufferedByteReceiveStream
    next_id: int = 1
    last_raw: bytes = b""
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and wait for its response; returns `result`.

        Raises:
            RpcError: the server answered with a JSON-RPC error or closed the pipe.
        """
        rid = self.next_id
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        assert self.process.stdin is not None
        await self.process.stdin.send(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        while True:
            try:
                line = await self.reader.receive_until(b"\n", MAX_LINE)
            except (anyio.EndOfStream, anyio.IncompleteRead) as exc:
                raise RpcError("the server closed stdout") from exc
            if not line.startswith(b"{"):
                continue  # not protocol (e.g. a profiler wrapping the server writes its notes here)
            decoded = json.loads(line)
            if decoded.get("id") == rid and ("result" in decoded or "error" in decoded):
                self.last_raw = line
                if "error" in decoded:
                    raise RpcError(f"{method}: {decoded['error']}")
                result: dict[str, Any] = decoded["result"]
                return result
            if "method" in decoded and "id" not in decoded:
                if len(self.notifications) < 100:
                    self.notifications.append(decoded)
                continue
            if "method" in decoded:  # a server->client request we do not support
                assert self.process.stdin is not None
                reply = {"jsonrpc": "2.0", "id": decoded["id"], "error": {"code": -32601, "message": "no"}}
                await self.process.stdin.send(json.dumps(reply).encode() + b"\n")

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        assert self.process.stdin is not None
        await self.process.stdin.send(json.dumps(message).encode() + b"\n")

    async def initialize(self) -> dict[str, Any]:
        result = await self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "klink-bench", "version": "1"},
            },
        )
        await self.notify("notifications/initialized")
        return result

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Raises:
        RpcError: a protocol error, or the tool reported an error (isError).
        """
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            raise RpcError(f"{name} failed: {str(result.get('content'))[:300]}")
        return result


def stdio_server_env(base_url: str | None) -> dict[str, str]:
    """Env for `python -m klink_mcp` over stdio: against a loopback sandbox, or (None) the embedded one."""
    if base_url is None:
        return clean_env()
    return clean_env(KLINK_API_TOKEN=SANDBOX_TOKEN, KLINK_BASE_URL=base_url)


@contextlib.asynccontextmanager
async def stdio_server(base_url: str | None, *, initialize: bool = True) -> AsyncIterator[StdioRpc]:
    """Spawn `python -m klink_mcp` (stdio) and yield a raw client; the process is ended on exit.

    Raises:
        RpcError: the server did not answer.
    """
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below; read when the server fails
    process = await anyio.open_process(
        [sys.executable, "-m", "klink_mcp"],
        env=stdio_server_env(base_url),
        stderr=log,
    )
    assert process.stdout is not None
    rpc = StdioRpc(process, BufferedByteReceiveStream(process.stdout))
    try:
        if initialize:
            await rpc.initialize()
        yield rpc
    except RpcError:
        log.seek(0)
        sys.stderr.write(log.read()[-3000:].decode("utf-8", "replace"))
        raise
    finally:
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            await process.stdin.aclose()
        with anyio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
            with anyio.move_on_after(5, shield=True):
                await process.wait()
        await process.aclose()
        log.close()


def text_bytes(result: dict[str, Any]) -> int:
    """Bytes of the text a model reads from a tool result: every text content block, UTF-8."""
    return sum(
        len(str(block.get("text", "")).encode())
        for block in result.get("content", [])
        if block.get("type") == "text"
    )
