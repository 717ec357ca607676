"""Profile the real server process with py-spy where a benchmark target is missed; print the hot spots.

    python bench/profile_server.py stdio   [--calls 2000]   # per-call cost over stdio
    python bench/profile_server.py startup [--runs 5]       # spawn -> tools/list
    python bench/profile_server.py http    [--seconds 15]   # 32 Streamable HTTP readers
    python bench/profile_server.py all

Needs `py-spy` (PyPI; `pip install py-spy`) on PATH or given with --py-spy. The server runs as
`py-spy record -f raw -- python -m klink_mcp ...` against the loopback sandbox, driven by the same
clients as the benchmarks; the raw (collapsed) stacks land in bench/results/profile-<kind>.raw and
a summary in bench/results/profile-<kind>.txt:
- CPU ms per call (samples / rate / calls; py-spy leaves idle samples out);
- self time by package (the innermost frame's package: the parts add up to 100%);
- inclusive time of the heaviest klink_mcp and mcp functions, and the top self functions.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from _harness import PROTOCOL, SANDBOX_TOKEN, StdioRpc, clean_env, free_port, sandbox_process, stop
from anyio.streams.buffered import BufferedByteReceiveStream

from klink_mcp.api.client import KlinkClient

RESULTS = Path(__file__).resolve().parent / "results"
FRAME = re.compile(r"(?P<fn>.*) \((?P<file>.*):(?P<line>\d+)\)$")


IDLE_LEAVES = {  # a thread parked in these is waiting, not working (py-spy cannot tell)
    "Condition.wait (threading.py)",
    "EpollSelector.select (selectors.py)",
    "WorkerThread.run (anyio/_backends/_asyncio.py)",
}
INTERESTING = ("klink_mcp/", "mcp/", "anyio/to_thread", "anyio/_core/_fileio", "httpx2/_client")


def _short(frame: str) -> tuple[str, str]:
    """(package, 'function (file)') of one py-spy frame (py-spy gives paths relative to sys.path)."""
    match = FRAME.match(frame)
    if not match:
        return "?", frame
    rel = match["file"]
    if "site-packages/" in rel:
        rel = rel.split("site-packages/", 1)[1]
    parts = rel.split("/")
    package = parts[0].removesuffix(".py")
    if package == "klink_mcp" and len(parts) > 1:
        package = f"klink_mcp.{parts[1].removesuffix('.py')}"
    if package.startswith("<frozen"):
        package = "import machinery"
    return package, f"{match['fn']} ({rel})"


def summarize(raw: Path, rate: int, calls: int, title: str) -> str:
    self_pkg: collections.Counter[str] = collections.Counter()
    self_fn: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        package, fn = frames[-1]
        if fn in IDLE_LEAVES:
            idle += n
            continue
        total += n
        self_pkg[package] += n
        self_fn[fn] += n
        for name in {f for _, f in frames}:
            incl[name] += n
    total = max(total, 1)

    def ms(n: int) -> float:
        return n / rate / max(calls, 1) * 1000

    out = [
        f"# {title}",
        f"{total} working samples at {rate} Hz over {calls} calls: {ms(total):.2f} ms of CPU per call "
        f"({idle} samples of threads parked in waits left out)",
        "",
        "self time by package (innermost frame):",
    ]
    out += [f"  {100 * n / total:5.1f}%  {ms(n):6.3f} ms/call  {p}" for p, n in self_pkg.most_common(18)]
    out += ["", "inclusive, by function (klink_mcp, mcp, thread hops, HTTP client):"]
    chosen = [(f, n) for f, n in incl.most_common() if any(k in f for k in INTERESTING)]
    out += [f"  {100 * n / total:5.1f}%  {ms(n):6.3f} ms/call  {f}" for f, n in chosen[:40]]
    out += ["", "top self functions:"]
    out += [f"  {100 * n / total:5.1f}%  {ms(n):6.3f} ms/call  {f}" for f, n in self_fn.most_common(25)]
    return "\n".join(out) + "\n"


def _spy(args: argparse.Namespace) -> str:
    found = args.py_spy or shutil.which("py-spy")
    if not found:
        sys.exit("py-spy not found: pip install py-spy (or pass --py-spy /path/to/py-spy)")
    return str(found)


async def _spawn_stdio(spy: str, rate: int, raw: Path, base_url: str) -> StdioRpc:
    env = clean_env(KLINK_API_TOKEN=SANDBOX_TOKEN, KLINK_BASE_URL=base_url)
    process = await anyio.open_process(
        [
            spy,
            "record",
            "-r",
            str(rate),
            "-f",
            "raw",
            "-o",
            str(raw),
            "--",
            sys.executable,
            "-m",
            "klink_mcp",
        ],
        env=env,
        stderr=open(os.devnull, "wb"),  # noqa: SIM115, ASYNC230 - handed to the child
    )
    assert process.stdout is not None
    return StdioRpc(process, BufferedByteReceiveStream(process.stdout))


async def _finish(rpc: StdioRpc) -> None:
    assert rpc.process.stdin is not None
    await rpc.process.stdin.aclose()  # the server exits on EOF; py-spy then writes its file
    with anyio.fail_after(60):
        await rpc.process.wait()


async def profile_stdio(spy: str, calls: int, rate: int) -> list[str]:
    reports = []
    with sandbox_process() as sandbox:
        async with KlinkClient(sandbox.url, SANDBOX_TOKEN) as client:
            contact = str((await client.list_contacts(page=1, page_size=1)).items[0].id)
        for op, args in (("get_contact", {"contact_id": contact}), ("list_tickets", {"page_size": 10})):
            raw = RESULTS / f"profile-stdio-{op}.raw"
            rpc = await _spawn_stdio(spy, rate, raw, sandbox.url)
            await rpc.initialize()
            for _ in range(50):  # warm: imports on first call, pools
                await rpc.call_tool(op, args)
            await rpc.request("ping")
            # py-spy samples the whole life; the startup part is cut below by running many calls.
            for _ in range(calls):
                await rpc.call_tool(op, args)
            await _finish(rpc)
            reports.append(
                summarize(raw, rate, calls + 50, f"stdio {op} x{calls} (includes start-up samples)")
            )
    return reports


async def profile_startup(spy: str, runs: int, rate: int) -> list[str]:
    raws = []
    with sandbox_process() as sandbox:
        for i in range(runs):
            raw = RESULTS / f"profile-startup-{i}.raw"
            rpc = await _spawn_stdio(spy, rate, raw, sandbox.url)
            await rpc.request(
                "initialize",
                {
                    "protocolVersion": PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "p", "version": "1"},
                },
            )
            await rpc.notify("notifications/initialized")
            await rpc.request("tools/list")
            await _finish(rpc)
            raws.append(raw)
    merged = RESULTS / "profile-startup.raw"
    merged.write_text("".join(r.read_text() for r in raws))
    for r in raws:
        r.unlink()
    return [
        summarize(merged, rate, runs, f"startup: spawn -> initialize -> tools/list, {runs} runs (per run)")
    ]


def _http_under_spy(spy: str, rate: int, raw: Path, base_url: str, port: int) -> subprocess.Popen[bytes]:
    command = [spy, "record", "-r", str(rate), "-f", "raw", "-o", str(raw), "--", sys.executable, "-m"]
    command += ["klink_mcp", "serve", "--http", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        command,
        env=clean_env(KLINK_API_TOKEN=SANDBOX_TOKEN, KLINK_BASE_URL=base_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def profile_http(spy: str, seconds: float, rate: int) -> list[str]:
    import bench_http

    raw = RESULTS / "profile-http.raw"
    port = free_port()
    with sandbox_process() as sandbox:
        ids = await bench_http._ids(sandbox.url, 32)
        proc = _http_under_spy(spy, rate, raw, sandbox.url, port)
        try:
            with anyio.fail_after(30):
                while True:
                    try:
                        stream = await anyio.connect_tcp("127.0.0.1", port)
                        await stream.aclose()
                        break
                    except OSError:
                        await anyio.sleep(0.1)
            result: dict[str, Any] = await bench_http.load(port, ids, 32, seconds)
        finally:
            proc.send_signal(signal.SIGINT)  # py-spy stops the child and writes the profile
            try:
                await anyio.to_thread.run_sync(proc.wait, 30)
            except subprocess.TimeoutExpired:
                stop(proc)
    title = f"HTTP 32 readers x {seconds:.0f} s: {result['reads_per_s']:.0f} reads/s (includes start-up)"
    return [summarize(raw, rate, result["calls"], title)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("kind", choices=["stdio", "startup", "http", "all"])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument(
        "--rate",
        type=int,
        default=0,
        help="samples/s (default 200; py-spy falls behind above that on 2 busy cores)",
    )
    parser.add_argument("--py-spy", help="path of the py-spy binary")
    args = parser.parse_args()
    spy = _spy(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    kinds = ["startup", "stdio", "http"] if args.kind == "all" else [args.kind]
    for kind in kinds:
        if kind == "stdio":
            reports = anyio.run(profile_stdio, spy, args.calls, args.rate or 200)
        elif kind == "startup":
            reports = anyio.run(profile_startup, spy, args.runs, args.rate or 200)
        else:
            reports = anyio.run(profile_http, spy, args.seconds, args.rate or 200)
        text = "\n".join(reports)
        (RESULTS / f"profile-{kind}.txt").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
