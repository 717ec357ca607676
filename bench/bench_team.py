"""Team deployment: reads/s and p95 through the real HAProxy for 1 and 3 replicas, and what a replica
costs in memory.

    python bench/bench_team.py [--clients 32] [--seconds 15] [--replicas 1,3] [--postgres | --database-url URL]

`--postgres` starts a throwaway PostgreSQL (Debian's package) and the replicas share it as their
store (`KLINK_DATABASE_URL`), as a team deployment does; `--database-url` uses an existing one.

For each replica count, in the same run on the same machine: the team harness
(`tests/team/harness.py`) starts one sandbox upstream process, N `klink-mcp serve --http` replicas
and HAProxy (round-robin, legacy sessions sticky by Mcp-Session-Id); then `--clients` MCP sessions
(handshake era, thin h11 clients from `bench_http.py` plus the bearer token, so the load generator
costs little CPU) call get_contact / list_tickets in a closed loop for `--seconds`. Every response
is decoded and checked. Reported: completed reads/s, median and p95 latency, errors, how the calls
spread over the replicas (HAProxy's stats), and per replica RSS idle (after start) and after the
load (/proc). `uptime` is printed beside the figures: the machine may be shared, and with N
replicas on few cores the replicas compete with each other, HAProxy, the sandbox and the load
generator for CPU, so 3 replicas measure the cost of the extra hop and the spread, not 3x capacity.

Prints figures; asserts nothing. Needs haproxy (`.ci/install-haproxy.sh`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for tests.team

from _harness import cpu_seconds, median, p95
from bench_http import McpHttpSession

from tests.team.harness import TeamCluster, running_cluster, throwaway_postgres


async def _contact_ids(cluster: TeamCluster, count: int) -> list[str]:
    session = McpHttpSession("127.0.0.1", cluster.lb_port, cluster.http_token)
    await session.connect()
    try:
        await session.initialize()
        result = await session.request(
            "tools/call", {"name": "list_contacts", "arguments": {"page_size": count}}
        )
    finally:
        await session.aclose()
    ids = [str(item["id"]) for item in result["structuredContent"]["items"]]
    if not ids:
        raise RuntimeError("the sandbox returned no contacts")
    return ids


async def load(
    cluster: TeamCluster, contacts: list[str], clients: int, seconds: float, port: int | None = None
) -> dict[str, Any]:
    """`clients` sessions through the load balancer (or straight to `port`), closed loop, for `seconds`."""
    latencies: list[float] = []
    errors: list[str] = []
    target = port or cluster.lb_port
    sessions = [McpHttpSession("127.0.0.1", target, cluster.http_token) for _ in range(clients)]
    with anyio.fail_after(60):
        for session in sessions:
            await session.connect()
        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(session.initialize)
    began = time.perf_counter()
    deadline = began + seconds

    async def worker(index: int, session: McpHttpSession) -> None:
        n = index
        while (start := time.perf_counter()) < deadline:
            n += 1
            name, args = (
                ("get_contact", {"contact_id": contacts[n % len(contacts)]})
                if n % 2
                else ("list_tickets", {"page_size": 10})
            )
            try:
                result = await session.request("tools/call", {"name": name, "arguments": args})
                if result.get("isError"):
                    raise RuntimeError(f"{name}: isError {str(result.get('content'))[:200]}")
            except (RuntimeError, ConnectionError, OSError) as exc:
                if len(errors) < 1000:
                    errors.append(str(exc))
                continue
            latencies.append((time.perf_counter() - start) * 1000)

    with anyio.fail_after(seconds + 60):
        async with anyio.create_task_group() as tg:
            for index, session in enumerate(sessions):
                tg.start_soon(worker, index, session)
    wall = time.perf_counter() - began
    for session in sessions:
        await session.aclose()
    return {
        "calls": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "reads_per_s": len(latencies) / wall,
        "median_ms": median(latencies),
        "p95_ms": p95(latencies),
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


async def measure(
    replicas: int, clients: int, seconds: float, database_url: str | None = None
) -> dict[str, Any]:
    with running_cluster(replicas, database_url=database_url, health_path="/readyz") as cluster:
        contacts = await _contact_ids(cluster, 20)
        idle_kib = [r.rss_kib() for r in cluster.replicas]
        await load(cluster, contacts, 4, 1.0)  # warm-up: imports on first call, upstream pool
        before = cluster.answers_per_replica()
        cpu0 = [cpu_seconds(r.pid) for r in cluster.replicas]
        load_before = os.getloadavg()[0]
        result = await load(cluster, contacts, clients, seconds)
        after = cluster.answers_per_replica()
        calls = max(result["calls"], 1)
        result.update(
            {
                "replicas": replicas,
                "clients": clients,
                "seconds": seconds,
                "spread": {name: after[name] - before.get(name, 0) for name in after},
                "replica_cpu_ms_per_call": sum(
                    cpu_seconds(r.pid) - c for r, c in zip(cluster.replicas, cpu0, strict=True)
                )
                * 1000
                / calls,
                "rss_idle_mib": [k / 1024 for k in idle_kib],
                "rss_after_mib": [r.rss_kib() / 1024 for r in cluster.replicas],
                "haproxy_rss_mib": cluster.haproxy.rss_kib() / 1024 if cluster.haproxy else float("nan"),
                "loadavg_1m_before": load_before,
                "uptime_after": uptime(),
            }
        )
        if replicas == 1:
            # The same replica without HAProxy, same moment: what the extra hop costs.
            result["direct"] = await load(cluster, contacts, clients, seconds, port=cluster.replicas[0].port)
    return result


def report(r: dict[str, Any]) -> None:
    print(
        f"{r['replicas']} replica(s) behind HAProxy, {r['clients']} clients x {r['seconds']:.0f} s: "
        f"{r['reads_per_s']:.0f} reads/s, median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
        f"{r['calls']} calls, {r['errors']} errors"
    )
    print(f"  spread (HAProxy answers per replica): {r['spread']}")
    print(f"  replica CPU per call (all replicas): {r['replica_cpu_ms_per_call']:.2f} ms")
    idle = ", ".join(f"{m:.0f}" for m in r["rss_idle_mib"])
    after = ", ".join(f"{m:.0f}" for m in r["rss_after_mib"])
    print(
        f"  replica RSS MiB idle: [{idle}]  after load: [{after}]  haproxy RSS {r['haproxy_rss_mib']:.0f} MiB"
    )
    print(f"  load average before: {r['loadavg_1m_before']:.2f}; after: {r['uptime_after']}")
    for sample in r["error_samples"]:
        print(f"  error: {sample}")
    direct = r.get("direct")
    if direct:
        print(
            f"  same replica without HAProxy: {direct['reads_per_s']:.0f} reads/s, median {direct['median_ms']:.1f} ms, "
            f"p95 {direct['p95_ms']:.1f} ms, {direct['errors']} errors"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--replicas", default="1,3", help="comma-separated replica counts, run in order")
    parser.add_argument("--postgres", action="store_true", help="replicas share a throwaway PostgreSQL store")
    parser.add_argument("--database-url", help="replicas share this PostgreSQL store")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; {uptime()}")
    if args.postgres and not args.database_url:
        with throwaway_postgres() as url:
            print("store: throwaway PostgreSQL (KLINK_DATABASE_URL)")
            for count in (int(n) for n in args.replicas.split(",")):
                report(anyio.run(measure, count, args.clients, args.seconds, url))
        return
    print(f"store: {'PostgreSQL' if args.database_url else 'per-replica SQLite'}")
    for count in (int(n) for n in args.replicas.split(",")):
        report(anyio.run(measure, count, args.clients, args.seconds, args.database_url))


if __name__ == "__main__":
    main()
