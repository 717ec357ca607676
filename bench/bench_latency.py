"""Per-call latency of get_contact, list_tickets (a page of 10) and create_ticket, four ways, interleaved.

    python bench/bench_latency.py [--iterations 400] [--warmup 30]

All four paths reach the same loopback sandbox (its own process) over real HTTP:
- inproc:    `mcp.Client(build_server(...))` in this process (2026-07-28 era, the SDK default);
- stdio:     `python -m klink_mcp` over stdio, driven by a raw line-delimited JSON-RPC client
             (handshake era), so the figure is the server's work plus the pipe;
- stdio_sdk: the same server command driven by `mcp.Client(StdioServerParameters(...))`, which
             adds the client SDK's own parsing and validation (for reference);
- bare:      `KlinkClient` (the SDK under the tools) calling the sandbox directly.
Each iteration runs every path once per operation, rotating which goes first, so drift in the
machine's load hits all of them alike. Overhead = median(tool) - median(bare), and the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from _harness import SANDBOX_TOKEN, clean_env, sandbox_process, stdio_server, summary
from mcp import Client, StdioServerParameters

from klink_mcp.api.client import KlinkClient
from klink_mcp.config import load_settings
from klink_mcp.server import build_server

OPS = ("get_contact", "list_tickets", "create_ticket")
PATHS = ("inproc", "stdio", "stdio_sdk", "bare")


async def _first_contact_id(client: KlinkClient) -> str:
    page = await client.list_contacts(page=1, page_size=1)
    return str(page.items[0].id)


async def run(iterations: int = 400, warmup: int = 30) -> dict[str, Any]:
    """Measure; returns per-op, per-path summaries and the overheads (ms)."""
    with sandbox_process() as sandbox:
        url = sandbox.url
        settings = load_settings(env={}, api_token=SANDBOX_TOKEN, base_url=url)
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "klink_mcp"],
            env=clean_env(KLINK_API_TOKEN=SANDBOX_TOKEN, KLINK_BASE_URL=url),
        )
        async with (
            KlinkClient(url, SANDBOX_TOKEN) as bare,
            Client(build_server(settings)) as inproc,
            stdio_server(url) as stdio,
            Client(params) as stdio_sdk,
        ):
            contact_id = await _first_contact_id(bare)
            counter = 0

            def title() -> str:
                nonlocal counter
                counter += 1
                return f"Bench ticket {counter}"

            async def sdk_call(client: Client, name: str, args: dict[str, Any]) -> None:
                result = await client.call_tool(name, args)
                if result.is_error:
                    raise RuntimeError(f"{name} failed: {result.content}")

            calls: dict[str, dict[str, Callable[[], Awaitable[Any]]]] = {
                "get_contact": {
                    "inproc": lambda: sdk_call(inproc, "get_contact", {"contact_id": contact_id}),
                    "stdio": lambda: stdio.call_tool("get_contact", {"contact_id": contact_id}),
                    "stdio_sdk": lambda: sdk_call(stdio_sdk, "get_contact", {"contact_id": contact_id}),
                    "bare": lambda: bare.get_contact(contact_id),
                },
                "list_tickets": {
                    "inproc": lambda: sdk_call(inproc, "list_tickets", {"page_size": 10}),
                    "stdio": lambda: stdio.call_tool("list_tickets", {"page_size": 10}),
                    "stdio_sdk": lambda: sdk_call(stdio_sdk, "list_tickets", {"page_size": 10}),
                    "bare": lambda: bare.list_tickets(page=1, page_size=10),
                },
                "create_ticket": {
                    "inproc": lambda: sdk_call(
                        inproc, "create_ticket", {"contact_id": contact_id, "title": title()}
                    ),
                    "stdio": lambda: stdio.call_tool(
                        "create_ticket", {"contact_id": contact_id, "title": title()}
                    ),
                    "stdio_sdk": lambda: sdk_call(
                        stdio_sdk, "create_ticket", {"contact_id": contact_id, "title": title()}
                    ),
                    "bare": lambda: bare.create_ticket({"title": title(), "contact_id": contact_id}),
                },
            }
            samples: dict[str, dict[str, list[float]]] = {op: {p: [] for p in PATHS} for op in OPS}
            for i in range(warmup + iterations):
                order = PATHS[i % len(PATHS) :] + PATHS[: i % len(PATHS)]
                for op in OPS:
                    for path in order:
                        start = time.perf_counter()
                        await calls[op][path]()
                        elapsed = (time.perf_counter() - start) * 1000
                        if i >= warmup:
                            samples[op][path].append(elapsed)

    results: dict[str, Any] = {"iterations": iterations, "warmup": warmup, "ops": {}}
    for op in OPS:
        per_path = {p: summary(samples[op][p]) for p in PATHS}
        bare_med = per_path["bare"]["median_ms"]
        overhead = {
            p: {
                "overhead_ms": per_path[p]["median_ms"] - bare_med,
                "ratio": per_path[p]["median_ms"] / bare_med,
            }
            for p in PATHS
            if p != "bare"
        }
        results["ops"][op] = {"paths": per_path, "overhead": overhead}
    return results


def report(results: dict[str, Any]) -> None:
    print(f"per-call latency, {results['iterations']} interleaved iterations (ms)")
    print(f"  {'operation':<14}{'path':<11}{'median':>8}{'p95':>8}{'overhead':>10}{'ratio':>7}")
    for op, data in results["ops"].items():
        for path, s in data["paths"].items():
            extra = data["overhead"].get(path)
            tail = f"{extra['overhead_ms']:>+10.3f}{extra['ratio']:>6.2f}x" if extra else ""
            print(f"  {op:<14}{path:<11}{s['median_ms']:>8.3f}{s['p95_ms']:>8.3f}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    args = parser.parse_args()
    results = anyio.run(run, args.iterations, args.warmup)
    report(results)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
