"""Retries under faults: how many reads survive, and how hard a down upstream is hit.

    python bench/bench_retries.py

Runs the real `KlinkClient` (retry rules, deadline, retry budget) against the embedded sandbox tenant
through its in-process transport, on a virtual clock (backoff, Retry-After, latency and slow bodies cost
no real time), so the figures depend only on the retry policy and the seeded faults:

1. 20% transient faults (one per faulty request: reset before sending, 500/502/503, 429 with
   Retry-After 1 s, reset after the request was applied, a body slower than the read timeout), 1,000
   reads per seed, seeds 1-5, with 3 attempts (the old default) and 5 (the new one): reads that
   succeeded, attempts per read, retries the budget refused;
2. the upstream fully down, 100 reads: upstream attempts in all and virtual seconds per call, with the
   default retry budget and with the budget made unlimited (what a client without one would do).
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

import anyio

from klink_mcp.api.client import KlinkClient
from klink_mcp.api.errors import KlinkError
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.sandbox.faults import FaultConfig, FaultDecision

TOKEN = "sandbox-token"
READ_TIMEOUT_S = 0.5
DEADLINE_S = 10.0
KINDS = ("reset_before", "server_error", "rate_limited", "reset_after", "slow_body")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass
class Mixed(FaultConfig):
    """`rate` of requests get exactly one fault, its kind drawn uniformly."""

    rate: float = 0.2
    drawn: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return True

    def decide(self, method: str) -> FaultDecision:
        rng = self._rng
        if rng.random() >= self.rate:
            self.drawn.append("none")
            return FaultDecision(latency_s=0.01)
        kind = rng.choice(KINDS)
        self.drawn.append(kind)
        return FaultDecision(
            latency_s=0.01,
            reset_before=kind == "reset_before",
            error_status=rng.choice((500, 502, 503)) if kind == "server_error" else None,
            rate_limited=kind == "rate_limited",
            reset_after=kind == "reset_after",
            slow_body_s=4 * READ_TIMEOUT_S if kind == "slow_body" else 0.0,
        )


async def run(n: int, rate: float, seed: int, max_attempts: int, budget: float) -> dict[str, float]:
    tenant = SandboxTenant.seeded()
    clock = Clock()
    tenant.sleep = clock.sleep
    contact_ids = [c["id"] for c in tenant.contacts.values() if not c.get("deletedAt")][:50]
    client = KlinkClient(
        "http://sandbox.invalid",
        TOKEN,
        transport=SandboxTransport(tenant, token=TOKEN),
        read_timeout_s=READ_TIMEOUT_S,
        call_deadline_s=DEADLINE_S,
        max_attempts=max_attempts,
        retry_budget=budget,
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(seed),
    )
    faults = Mixed(rate=rate, retry_after_s=1.0, seed=seed)
    tenant.faults = faults
    ok = 0
    took: list[float] = []
    async with client:
        for i in range(n):
            started = clock.now
            try:
                if i % 2:
                    await client.list_tags()
                else:
                    await client.get_contact(contact_ids[i % len(contact_ids)])
                ok += 1
            except KlinkError:
                pass
            took.append(clock.now - started)
    return {
        "ok": ok / n,
        "attempts": len(faults.drawn),
        "refused": client.stats.retries_refused,
        "late_call_s": statistics.mean(took[n // 2 :]),
    }


async def main() -> None:
    print("1. 20% transient faults, 1,000 reads per seed (seeds 1-5)")
    for attempts in (3, 5):
        rows = [await run(1000, 0.2, seed, attempts, 100.0) for seed in range(1, 6)]
        rates = [r["ok"] for r in rows]
        print(
            f"   max_attempts={attempts}: reads succeeded {min(rates):.2%} .. {max(rates):.2%} "
            f"(mean {statistics.mean(rates):.3%}); attempts/read {statistics.mean(r['attempts'] for r in rows) / 1000:.3f}; "
            f"retries refused by the budget {sum(r['refused'] for r in rows):.0f}"
        )
    print("2. upstream fully down, 100 reads (max_attempts=5)")
    for label, budget in (("default budget (100 tokens)", 100.0), ("no budget (unlimited)", 10_000.0)):
        row = await run(100, 1.0, 3, 5, budget)
        print(
            f"   {label}: {row['attempts']:.0f} upstream attempts; last 50 calls took "
            f"{row['late_call_s']:.2f} s each (virtual)"
        )


if __name__ == "__main__":
    anyio.run(main)
