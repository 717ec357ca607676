"""Memory soak: RSS of the stdio server process over N tool calls (default 10,000).

    python bench/bench_soak.py [--calls 10000] [--embedded]

The server is `python -m klink_mcp` over stdio against the loopback sandbox (its own process, so
the sandbox's recorded requests and new tickets do not count against the server); `--embedded`
runs it with no token instead, on its in-process sandbox tenant (the demo mode), where they do. The calls
cycle through a realistic mix: get_contact over 50 contacts, list_tickets pages 1-5, list_cx_logs,
list_contacts with a keyword, create_ticket every 20th call and tools/list every 250th.
RSS is read from /proc after the handshake ("start"), every 1,000 calls and at the end; growth
is reported from 1k to the end (the first thousand calls warm caches, imports and pools) with a
least-squares slope in MiB per 1,000 calls over the samples from 1k on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

import anyio
from _harness import SANDBOX_TOKEN, rss_mb, sandbox_process, stdio_server

from klink_mcp.api.client import KlinkClient


def _slope(points: list[tuple[int, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return cov / var * 1000 if var else 0.0


async def run(calls: int = 10_000, embedded: bool = False) -> dict[str, Any]:
    """`embedded`: the server serves its in-process sandbox tenant (no token) instead of the loopback one."""
    with sandbox_process() as sandbox:
        async with KlinkClient(sandbox.url, SANDBOX_TOKEN) as client:
            contacts = [str(c.id) for c in (await client.list_contacts(page=1, page_size=50)).items]
            names = [str(getattr(c, "name", "") or "a")[:3] for c in (await client.list_contacts()).items]
        end = dt.datetime(2026, 11, 1)
        start = end - dt.timedelta(days=30)
        async with stdio_server(None if embedded else sandbox.url) as rpc:
            await rpc.request("tools/list")
            samples: list[tuple[int, float]] = [(0, rss_mb(rpc.pid))]
            began = time.perf_counter()
            for i in range(1, calls + 1):
                if i % 250 == 0:
                    await rpc.request("tools/list")
                elif i % 20 == 0:
                    await rpc.call_tool(
                        "create_ticket", {"contact_id": contacts[i % 50], "title": f"Soak {i}"}
                    )
                elif i % 10 == 3:
                    await rpc.call_tool(
                        "list_cx_logs",
                        {
                            "start": start.isoformat(),
                            "end": end.isoformat(),
                            "page": 1 + i % 3,
                            "page_size": 10,
                        },
                    )
                elif i % 10 == 7:
                    await rpc.call_tool("list_contacts", {"keyword": names[i % len(names)], "page_size": 10})
                elif i % 2:
                    await rpc.call_tool("get_contact", {"contact_id": contacts[i % 50]})
                else:
                    await rpc.call_tool("list_tickets", {"page": 1 + i % 5, "page_size": 10})
                if i % 1000 == 0 or i == calls:
                    samples.append((i, rss_mb(rpc.pid)))
            seconds = time.perf_counter() - began
    by_count = dict(samples)
    after_1k = by_count.get(1000, samples[-1][1])
    steady = [(x, y) for x, y in samples if x >= 1000]
    return {
        "upstream": "embedded sandbox" if embedded else "loopback sandbox process",
        "calls": calls,
        "seconds": seconds,
        "calls_per_s": calls / seconds,
        "rss_start_mb": samples[0][1],
        "rss_after_1k_mb": after_1k,
        "rss_end_mb": samples[-1][1],
        "growth_1k_to_end_mb": samples[-1][1] - after_1k,
        "slope_mb_per_1k_calls": _slope(steady),
        "samples": samples,
    }


def report(r: dict[str, Any]) -> None:
    print(
        f"soak ({r['upstream']}), {r['calls']:,} stdio calls in {r['seconds']:.1f} s ({r['calls_per_s']:.0f}/s): RSS start "
        f"{r['rss_start_mb']:.1f} MiB, after 1k {r['rss_after_1k_mb']:.1f} MiB, end {r['rss_end_mb']:.1f} MiB; "
        f"growth 1k->end {r['growth_1k_to_end_mb']:+.1f} MiB, slope {r['slope_mb_per_1k_calls']:+.2f} MiB/1k calls"
    )
    print("  samples: " + ", ".join(f"{n}:{mb:.1f}" for n, mb in r["samples"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--embedded", action="store_true", help="the server uses its embedded sandbox tenant")
    args = parser.parse_args()
    report(anyio.run(run, args.calls, args.embedded))


if __name__ == "__main__":
    main()
