"""Benchmark the shared store: webhook events per second into PostgreSQL, and into SQLite for comparison.

    python bench/bench_store.py [--events 5000] [--writers 1,10,50] [--url postgresql://...] [--skip-sqlite]

N distinct events from M concurrent writers, each through the store interface
(`store.events.add`, deduplicated, committed before it returns), like M webhook deliveries at
once. Without `--url` it starts two throwaway PostgreSQL clusters (Debian's server, temp folder,
127.0.0.1): one durable (`fsync=on`, `synchronous_commit=on`: what a deployment has) and one with
`fsync=off` (what the tests use; an upper bound). SQLite runs with `synchronous=FULL` in WAL mode
(the embedded default) on a temp file. Also prints the nonce and approval round trips
(consume_nonce, create+decide+consume) per second at the highest writer count.

Figures, not pass/fail: they depend on the disk's fsync time and on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from klink_mcp.store import SQLiteStore, Store
from klink_mcp.webhooks.events import KlinkEvent, parse_event


def make_event(run: str, n: int) -> dict[str, object]:
    return {
        "event": "message.inbound",
        "timestamp": f"2026-01-09T03:{(n // 60) % 60:02d}:{n % 60:02d}.{n % 1_000_000:06d}Z",
        "data": {
            "id": f"{run}-msg-{n}",
            "contactId": f"contact-{n % 97}",
            "text": "Hello, where is my order?",
        },
    }


async def timed(total: int, writers: int, one: Callable[[int], Awaitable[object]]) -> float:
    """Run `one(i)` for i in range(total) from `writers` concurrent tasks; returns calls per second."""
    next_i = iter(range(total))

    async def worker() -> None:
        for i in next_i:
            await one(i)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(writers):
            tg.start_soon(worker)
    return total / (time.perf_counter() - start)


async def bench_events(label: str, store: Store, events: int, writer_counts: list[int]) -> None:
    parsed: list[KlinkEvent] = []

    async def add(i: int) -> object:
        return await store.events.add(parsed[i])

    for writers in writer_counts:
        run = f"{label}-{writers}-{time.monotonic_ns()}"
        parsed[:] = [parse_event(make_event(run, n)) for n in range(events)]  # parse outside the timing
        before = (getattr(store.events, "batches", 0), getattr(store.events, "batched", 0))
        rate = await timed(events, writers, add)
        batches = getattr(store.events, "batches", 0) - before[0]
        mean = (
            f", {(getattr(store.events, 'batched', 0) - before[1]) / batches:.1f} per commit"
            if batches
            else ""
        )
        print(f"  {label:<28} {writers:>3} writers: {rate:8.0f} events/s  ({events} events{mean})")
    # redeliveries: the same events again
    rate = await timed(events, writer_counts[-1], add)
    print(f"  {label:<28} {writer_counts[-1]:>3} writers: {rate:8.0f} redeliveries/s (deduplicated)")


async def bench_guard(label: str, store: Store, count: int, writers: int) -> None:
    later = datetime.now(UTC) + timedelta(minutes=5)
    tag = time.monotonic_ns()
    rate = await timed(count, writers, lambda i: store.consume_nonce(f"nonce-{tag}-{i}", later))
    print(f"  {label:<28} {writers:>3} writers: {rate:8.0f} consume_nonce/s")

    async def approval(i: int) -> None:
        key = f"appr-{tag}-{i}"
        await store.create_approval(key, {"tool": "send_message", "n": i}, later)
        await store.decide_approval(key, True, {"sub": "bench"})
        await store.consume_approval(key)

    rate = await timed(count // 3, writers, approval)
    print(f"  {label:<28} {writers:>3} writers: {rate:8.0f} approvals/s (create+decide+consume)")


async def bench_postgres(url: str, label: str, args: argparse.Namespace, writer_counts: list[int]) -> None:
    from klink_mcp.store.postgres import PostgresStore

    async with PostgresStore(url, retention=max(args.events * 4, 10_000), max_size=args.pool) as store:
        await bench_events(label, store, args.events, writer_counts)
        await bench_guard(label, store, args.events, writer_counts[-1])


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--writers", default="1,10,50")
    parser.add_argument("--pool", type=int, default=10, help="PostgreSQL pool size per store")
    parser.add_argument("--url", help="an existing PostgreSQL database (else throwaway clusters)")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    writer_counts = [int(w) for w in args.writers.split(",")]
    print(f"store benchmark: {args.events} events per writer count; cores={os.cpu_count()}")

    if args.url:
        await bench_postgres(args.url, "postgresql (--url)", args, writer_counts)
    else:
        from tests.store.pgcluster import PostgresCluster, find_pg_bin

        bin_dir = find_pg_bin()
        if bin_dir is None:
            print("  postgresql: SKIPPED (no initdb/pg_ctl; run .ci/install-postgresql.sh)")
        else:
            for durable in (True, False):
                cluster = PostgresCluster(bin_dir, durable=durable)
                try:
                    cluster.start()
                    url = cluster.create_database("bench")
                    label = "postgresql fsync=on" if durable else "postgresql fsync=off"
                    await bench_postgres(url, label, args, writer_counts)
                finally:
                    cluster.stop()

    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory(prefix="klink-bench-") as folder:
            retention = max(args.events * 4, 10_000)
            async with SQLiteStore(Path(folder) / "events.sqlite3", retention=retention) as store:
                await bench_events("sqlite synchronous=FULL", store, args.events, writer_counts)
                await bench_guard("sqlite synchronous=FULL", store, args.events, writer_counts[-1])


if __name__ == "__main__":
    anyio.run(main)
