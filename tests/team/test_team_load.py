"""Team deployment under load, through the real HAProxy: reads are spread over the replicas, a legacy
session stays on its replica, and a replica killed mid-run costs only the calls it had in flight.

Counts come from HAProxy's own stats (answers per replica, UP/DOWN) and from the one shared sandbox
upstream (`/_sandbox/requests`), never from the replicas' word.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.team.harness import TeamCluster

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CALL_BOUND_S = 20.0  # no call may take longer: a hang is a failure of its own


async def _call(client: Client, tool: str, args: dict[str, Any]) -> Any:
    with anyio.fail_after(CALL_BOUND_S):
        return await client.call_tool(tool, args)


async def _contact_ids(cluster: TeamCluster, count: int) -> list[str]:
    async with cluster.client() as client:
        listed = await _call(client, "list_contacts", {"page_size": count})
    assert not listed.is_error, listed
    ids = [item["id"] for item in listed.structured_content["items"]]
    assert len(ids) == count
    return ids


def _read(worker: int, step: int, contacts: list[str]) -> tuple[str, dict[str, Any]]:
    if (worker + step) % 2:
        return "get_contact", {"contact_id": contacts[(worker + step) % len(contacts)]}
    return "list_tickets", {"page_size": 3}


class _ToolError(Exception):
    """A read or write answered with isError (never expected here, even on the dying replica)."""


def _leaf_exception(exc: BaseException) -> BaseException:
    """The error a caller really got: the innermost exception of a task-group wrapping."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _leaf(exc: BaseException) -> str:
    leaf = _leaf_exception(exc)
    return f"{type(leaf).__module__}.{type(leaf).__name__}: {leaf}"


# What a call in flight on a dead replica may end with: the connection dropped under it (HAProxy
# closes a stream whose replica died), or a 502/503 from HAProxy, surfaced as an MCP error.
CLEAR_ERRORS = ("httpx2.RemoteProtocolError", "httpx2.ReadError", "httpx2.HTTPStatusError", "mcp.")


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


async def test_concurrent_reads_through_the_lb_are_spread_over_the_three_replicas(
    cluster: TeamCluster,
) -> None:
    contacts = await _contact_ids(cluster, 6)
    clients, calls_each = 24, 4
    before = cluster.answers_per_replica()
    gets_before = len(await cluster.upstream_requests("GET"))
    results: list[Any] = []

    async def one_client(worker: int) -> None:
        async with cluster.client() as client:
            for step in range(calls_each):
                results.append(await _call(client, *_read(worker, step, contacts)))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for worker in range(clients):
                tg.start_soon(one_client, worker)

    assert len(results) == clients * calls_each
    assert [r for r in results if r.is_error] == []
    spread = _delta(cluster.answers_per_replica(), before)
    total = sum(spread.values())
    assert set(spread) == {"r0", "r1", "r2"}
    assert total >= clients * calls_each, spread
    # Round-robin: every replica served a real share (at least half of a fair third).
    assert min(spread.values()) >= total / 6, spread
    # ...and every read reached the one shared upstream.
    assert len(await cluster.upstream_requests("GET")) - gets_before >= clients * calls_each


async def test_a_legacy_session_stays_on_the_replica_that_created_it(cluster: TeamCluster) -> None:
    before = cluster.answers_per_replica()
    async with cluster.client(mode="legacy") as client:
        for _ in range(5):
            result = await _call(client, "list_tickets", {"page_size": 2})
            assert not result.is_error, result
    spread = _delta(cluster.answers_per_replica(), before)
    used = {name: n for name, n in spread.items() if n}
    # initialize + initialized + 5 calls (+ the session's GET stream and DELETE), all on one replica:
    # without stickiness on Mcp-Session-Id round-robin would answer 404 "unknown session".
    assert len(used) == 1 and sum(used.values()) >= 7, spread


@dataclass
class _Run:
    """What happened during the kill run."""

    reads_ok: int = 0
    reads_ok_after_down: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)  # (started at, error)
    hangs: list[str] = field(default_factory=list)
    writes: dict[str, str] = field(default_factory=dict)  # title -> "done" | the error
    down_at: float | None = None
    at_down: dict[str, int] = field(default_factory=dict)
    enough_reads: anyio.Event = field(default_factory=anyio.Event)
    survived: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)


async def test_a_replica_killed_mid_load_costs_only_its_calls_in_flight_and_duplicates_no_write(
    cluster: TeamCluster,
) -> None:
    victim = 1
    contacts = await _contact_ids(cluster, 4)
    titles = [f"team-kill-{secrets.token_hex(4)}-{n:03d}" for n in range(45)]
    pending = list(titles)
    run = _Run()

    def failed(started: float, exc: BaseException) -> None:
        leaf = _leaf_exception(exc)
        if isinstance(leaf, TimeoutError):
            run.hangs.append(f"a call did not answer within {CALL_BOUND_S} s")
        else:
            run.failures.append((started, _leaf(exc)))

    async def reader(worker: int) -> None:
        step = 0
        while not run.stop.is_set():
            started = time.monotonic()  # opening the client counts as part of the next call
            try:
                async with cluster.client(timeout_s=CALL_BOUND_S) as client:
                    while not run.stop.is_set():
                        step += 1
                        started = time.monotonic()
                        result = await _call(client, *_read(worker, step, contacts))
                        if result.is_error:
                            raise _ToolError(str(result.content))
                        run.reads_ok += 1
                        if run.down_at is not None:
                            run.reads_ok_after_down += 1
                            if run.reads_ok_after_down >= 60:
                                run.survived.set()
                        if run.reads_ok >= 40:
                            run.enough_reads.set()
            except Exception as exc:  # recorded and judged below; a fresh client, as an agent reconnects
                failed(started, exc)

    async def writer() -> None:
        while pending:
            started, title = time.monotonic(), None
            try:
                async with cluster.client(timeout_s=CALL_BOUND_S) as client:
                    while pending:
                        title = pending.pop(0)
                        run.writes[title] = "in flight"
                        started = time.monotonic()
                        args = {"contact_id": contacts[0], "title": title}
                        result = await _call(client, "create_ticket", args)
                        if result.is_error:
                            raise _ToolError(str(result.content))
                        run.writes[title] = result.structured_content["status"]
                        title = None
            except Exception as exc:
                if title is not None:
                    run.writes[title] = "failed"
                failed(started, exc)

    async def chaos() -> None:
        await run.enough_reads.wait()
        await anyio.to_thread.run_sync(cluster.kill_replica, victim)
        await cluster.wait_lb_state(victim, "DOWN", timeout_s=10)
        run.down_at = time.monotonic()
        run.at_down = await anyio.to_thread.run_sync(cluster.answers_per_replica)

    readers = 10
    try:
        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                tg.start_soon(chaos)
                for worker in range(readers):
                    tg.start_soon(reader, worker)
                async with anyio.create_task_group() as writers:
                    for _ in range(3):
                        writers.start_soon(writer)
                # Writes are all sent; keep reading until the survivors served plenty after the kill.
                await run.survived.wait()
                run.stop.set()
        after = cluster.answers_per_replica()
    finally:
        await anyio.to_thread.run_sync(cluster.restart_replica, victim)
        await cluster.wait_lb_state(victim, "UP", timeout_s=15)

    assert run.down_at is not None
    assert run.hangs == []
    # Only calls in flight on the dead replica, i.e. started before HAProxy marked it down, may fail.
    late = [error for started, error in run.failures if started >= run.down_at]
    assert late == [], late
    assert len(run.failures) <= readers + 3, run.failures  # at most one call in flight per client
    assert all(error.startswith(CLEAR_ERRORS) and error.split(": ", 1)[1] for _, error in run.failures), (
        run.failures
    )
    assert run.reads_ok_after_down >= 60
    name = cluster.replicas[victim].server_name
    assert after[name] == run.at_down[name]  # HAProxy sent nothing to the dead replica once DOWN

    # The upstream saw each create at most once, and every create reported done exactly once.
    seen = Counter(
        r["json"]["title"]
        for r in await cluster.upstream_requests("POST")
        if r["path"] == "/api/v1/tickets"
        and isinstance(r.get("json"), dict)
        and r["json"].get("title") in titles
    )
    assert set(run.writes) == set(titles) and "in flight" not in run.writes.values()
    assert max(seen.values()) == 1, seen.most_common(3)
    done = [t for t, status in run.writes.items() if status == "done"]
    assert all(seen[t] == 1 for t in done)
    assert len(done) >= len(titles) - 3  # only a write in flight at the kill may be lost to its client
