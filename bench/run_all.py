"""Run every klink-mcp benchmark, print the figures and the targets, write bench/results/latest.json.

    python bench/run_all.py            # the full run (about 3.5 minutes on 2 cores)
    python bench/run_all.py --quick    # a short run (about a minute), same sections, fewer samples
    python bench/run_all.py --only latency,http

Sections (each is also a script of its own in this folder):
  compact  bench_compact.py  text a model reads / raw upstream bytes (tickets page, contact, CX logs)
  startup  bench_startup.py  cold start (spawn -> tools/list over stdio) and tools/list size
  latency  bench_latency.py  per-call latency in process / stdio / bare KlinkClient, interleaved
  soak     bench_soak.py     server RSS over 10,000 stdio calls (against the loopback sandbox)
  soak_embedded              the same with no token: the server's own embedded sandbox (demo mode)
  http     bench_http.py     Streamable HTTP, 32 concurrent clients doing reads for 30 s

Figures, not pass/fail: the exit status is 0 whether or not a target is met (1 only if a section
crashed). Every section also records how busy the rest of the machine was while it ran
("other load", in cores), because on a shared 2-core box other processes move the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import bench_compact
import bench_http
import bench_latency
import bench_soak
import bench_startup
from _harness import machine

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "latest.json"
KIB = 1024


@dataclass(frozen=True)
class Plan:
    latency_iterations: int
    latency_warmup: int
    cold_runs: int
    soak_calls: int
    http_seconds: float
    http_clients: int = 32


FULL = Plan(latency_iterations=400, latency_warmup=30, cold_runs=5, soak_calls=10_000, http_seconds=30)
QUICK = Plan(latency_iterations=100, latency_warmup=10, cold_runs=5, soak_calls=2_000, http_seconds=5)


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _measured(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Run one section; also return how many cores other processes kept busy meanwhile."""
    hz = os.sysconf("SC_CLK_TCK")
    busy0, _ = _busy_jiffies()
    t0, wall0 = os.times(), time.monotonic()
    result = fn()
    busy1, _ = _busy_jiffies()
    t1, wall = os.times(), time.monotonic() - wall0
    ours = (t1.user - t0.user) + (t1.system - t0.system)
    ours += (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    machine_busy = (busy1 - busy0) / hz
    return result, {
        "wall_s": wall,
        "machine_busy_cores": machine_busy / wall,
        "ours_cores": ours / wall,
        "other_load_cores": max(0.0, (machine_busy - ours) / wall),
    }


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()

    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(run("status", "--porcelain", "--", "klink_mcp")),
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets next to the figures reached (None where a section did not run)."""
    rows: list[dict[str, Any]] = []

    def add(
        name: str, figure: float | None, target: float, unit: str, higher_is_better: bool = False
    ) -> None:
        met = None if figure is None else (figure >= target if higher_is_better else figure <= target)
        sign = ">=" if higher_is_better else "<="
        rows.append({"metric": name, "figure": figure, "target": f"{sign} {target:g} {unit}", "met": met})

    def dig(*keys: str) -> Any:
        node: Any = results
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    add(
        "stdio overhead get_contact (ms)",
        dig("latency", "ops", "get_contact", "overhead", "stdio", "overhead_ms"),
        1.2,
        "ms",
    )
    add(
        "stdio overhead list_tickets page (ms)",
        dig("latency", "ops", "list_tickets", "overhead", "stdio", "overhead_ms"),
        1.3,
        "ms",
    )
    add("cold start spawn->tools/list (s)", dig("startup", "cold_start", "median_s"), 0.55, "s")
    kb = dig("startup", "tools_list", "bytes")
    add("tools/list size (KiB)", None if kb is None else kb / KIB, 24, "KiB")
    add("text/raw, tickets page of 10", dig("compact", "list_tickets", "ratio_text_raw"), 0.35, "")
    add("server RSS after soak (MiB)", dig("soak", "rss_end_mb"), 80, "MiB")
    # "No growth": the least-squares slope from 1k calls on stays under 0.2 MiB per 1,000 calls.
    add("RSS growth slope in soak (MiB/1k calls)", dig("soak", "slope_mb_per_1k_calls"), 0.2, "MiB/1k")
    add("  same, embedded sandbox (demo mode)", dig("soak_embedded", "slope_mb_per_1k_calls"), 0.2, "MiB/1k")
    add(
        "HTTP 32 readers throughput (reads/s)",
        dig("http", "reads_per_s"),
        300,
        "reads/s",
        higher_is_better=True,
    )
    add("HTTP 32 readers p95 (ms)", dig("http", "p95_ms"), 50, "ms")
    add("  p95 when paced at 300 calls/s (ms)", dig("http", "paced", "p95_ms"), 50, "ms")
    return rows


SECTIONS: dict[str, tuple[Callable[[Plan], Any], Callable[[Any], None]]] = {
    "compact": (lambda p: anyio.run(bench_compact.run), bench_compact.report),
    "startup": (lambda p: anyio.run(bench_startup.run, p.cold_runs), bench_startup.report),
    "latency": (
        lambda p: anyio.run(bench_latency.run, p.latency_iterations, p.latency_warmup),
        bench_latency.report,
    ),
    "soak": (lambda p: anyio.run(bench_soak.run, p.soak_calls), bench_soak.report),
    "soak_embedded": (lambda p: anyio.run(bench_soak.run, p.soak_calls, True), bench_soak.report),
    "http": (lambda p: anyio.run(bench_http.run, p.http_clients, p.http_seconds), bench_http.report),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, same sections (about a minute)")
    parser.add_argument("--only", help=f"comma-separated sections ({', '.join(SECTIONS)})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    chosen = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")

    info = machine()
    print(
        f"klink-mcp benchmarks ({'quick' if args.quick else 'full'}): {info['nproc']} CPUs ({info['cpu_model']}), "
        f"Python {info['python']}, mcp {info['mcp']}, load average {os.getloadavg()[0]:.2f}"
    )
    results: dict[str, Any] = {}
    load: dict[str, Any] = {}
    failed: list[str] = []
    started = time.monotonic()
    for name in chosen:
        run, report = SECTIONS[name]
        print(f"\n== {name}")
        try:
            results[name], load[name] = _measured(lambda run=run: run(plan))  # type: ignore[misc]
        except Exception:
            failed.append(name)
            traceback.print_exc()
            continue
        report(results[name])
        print(
            f"  [{load[name]['wall_s']:.0f} s; this benchmark {load[name]['ours_cores']:.2f} cores, "
            f"other processes {load[name]['other_load_cores']:.2f} cores]"
        )

    rows = targets(results)
    print("\n== targets")
    for row in rows:
        if row["figure"] is None:
            continue
        verdict = "met" if row["met"] else "MISSED"
        print(f"  {row['metric']:<40} {row['figure']:>10.3f}   target {row['target']:<22} {verdict}")
    document = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "plan": plan.__dict__,
        "machine": info,
        "git": _git(),
        "load": load,
        "total_wall_s": time.monotonic() - started,
        "targets": rows,
        "results": results,
        "failed_sections": failed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out} ({document['total_wall_s']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
