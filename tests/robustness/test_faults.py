"""Fault suite: the real server over a sandbox tenant that fails 20% of requests.

Faults (one per faulty request, drawn uniformly): a connection reset before the request (nothing
applied), a 500/502/503, a 429 with `Retry-After: 1`, a reset after the request was applied, and a body
that arrives after the client's read timeout (-> ReadTimeout; the request was applied). Every request
also has a little latency.

Time is virtual (see `_support.VirtualClock`): backoff waits, Retry-After waits, latency and slow bodies
advance a clock shared by the K-LINK client and the tenant, so "within the call deadline" is measured in
the time the retry layer reasons in, and nothing really sleeps.

Why reads succeed at least 99.5% of the time: a read is idempotent and every injected fault is retryable
for it, so a read fails only when all `max_attempts` = 5 attempts are hit, independently with p = 0.2:
P(fail) = 0.2^5 = 0.032%. Over 1,000 reads the expected number of failures is 0.32, and the 0.5% floor
(5 failures) is broken with P(X >= 5) for Binomial(1000, 0.00032) < 1e-5, whatever the seed. The worst case
of five attempts (4 x 0.5 s of read timeouts plus up to 7.5 s of backoff) can exceed the 10 s deadline:
then the retry is not made (never a wait past the deadline), so a read may also fail after fewer than 5
attempts, but only when every attempt it made was hit. Retries are paid from the client-wide retry budget
(see `api/_http.py`); at 20% faults successes keep refilling it, so it never refuses a retry here (the
"looks down" message would show it). The run is seeded (FAULT_SEED) for a reproducible figure.

With the upstream fully down (every request fails), the budget makes the client fail fast instead of
multiplying the load: 100 reads make at most 150 upstream attempts in all (120 with the default budget of
100 tokens, 5 per retry), and every failure is a clear tool error; once the budget is spent a call makes one
attempt and says K-LINK looks down.

Writes (POST create_ticket / create_contact) are never resent once their bytes may have left: a 5xx, a
reset after sending or a read timeout is reported as `ambiguous_write`, a 429 as `rate_limited`; only a
reset before sending (nothing reached the tenant) is retried. So the tenant never holds more records than
calls, each reported success created exactly one record, and each ambiguous call created at most one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from mcp import Client

from klink_mcp.sandbox import SandboxTenant
from klink_mcp.sandbox.faults import NO_FAULT, FaultConfig, FaultDecision

from ._support import (
    VirtualClock,
    error_code,
    error_meta,
    healthy_read_calls,
    make_server,
    result_text,
    virtual_time,
)

pytestmark = pytest.mark.anyio

FAULT_RATE = 0.2
READ_TIMEOUT_S = 0.5
CALL_DEADLINE_S = 10.0
MAX_ATTEMPTS = 5
RETRY_AFTER_S = 1.0
LATENCY_S = 0.01
N_READS = 1000
FAULT_SEED = 3
N_DOWN_CALLS = 100
N_WRITES_EACH = 60
READ_FAILURE_CODES = {"upstream_error", "timeout", "rate_limited", "unreachable"}
WRITE_FAILURE_CODES = {"ambiguous_write", "rate_limited"}


@dataclass
class MixedFaults(FaultConfig):
    """`fault_rate` of requests get exactly one fault, the kind drawn uniformly from `kinds`.

    The sandbox's own FaultConfig draws each kind with its own probability and applies a slow body to
    every request; this variant mixes read timeouts in with the other faults at a single overall rate.
    """

    fault_rate: float = FAULT_RATE
    slow_s: float = 4 * READ_TIMEOUT_S
    kinds: tuple[str, ...] = ("reset_before", "server_error", "rate_limited", "reset_after", "slow_body")
    drawn: list[str] = field(default_factory=list)  # the decision for each request, in order

    @property
    def active(self) -> bool:
        return True

    def decide(self, method: str) -> FaultDecision:
        if self.only_methods is not None and method.upper() not in self.only_methods:
            return NO_FAULT
        rng = self._rng
        if rng.random() >= self.fault_rate:
            self.drawn.append("none")
            return FaultDecision(latency_s=self.latency_s)
        kind = rng.choice(self.kinds)
        self.drawn.append(kind)
        return FaultDecision(
            latency_s=self.latency_s,
            reset_before=kind == "reset_before",
            error_status=rng.choice((500, 502, 503)) if kind == "server_error" else None,
            rate_limited=kind == "rate_limited",
            reset_after=kind == "reset_after",
            slow_body_s=self.slow_s if kind == "slow_body" else 0.0,
        )


@dataclass
class Faulty:
    client: Client
    tenant: SandboxTenant
    clock: VirtualClock

    async def timed_call(self, tool: str, args: dict[str, Any]) -> tuple[Any, float]:
        """The result and the virtual time the call took."""
        started = self.clock.now
        with anyio.fail_after(30):
            result = await self.client.call_tool(tool, args)
        return result, self.clock.now - started


@pytest.fixture
async def faulty(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Faulty]:
    tenant = SandboxTenant.seeded()
    clock = VirtualClock()
    with virtual_time(monkeypatch, clock, tenant):
        server = make_server(
            tenant,
            read_timeout_s=READ_TIMEOUT_S,
            call_deadline_s=CALL_DEADLINE_S,
            max_attempts=MAX_ATTEMPTS,
        )
        async with Client(server) as client:
            # Faults start after the server has read the form fields at start-up.
            tenant.faults = MixedFaults(latency_s=LATENCY_S, retry_after_s=RETRY_AFTER_S, seed=FAULT_SEED)
            yield Faulty(client, tenant, clock)


def assert_clean_failure(result: Any, allowed: set[str]) -> str:
    """A failure is a tool error with a known code and a plain message; returns the code."""
    assert result.is_error
    code = error_code(result)
    assert code in allowed, (code, result_text(result))
    assert "Traceback" not in result_text(result)
    if code == "rate_limited":
        assert error_meta(result).get("retry_after_s") == RETRY_AFTER_S
    return str(code)


async def test_reads_succeed_at_least_99_5_percent_of_the_time_within_the_deadline(faulty: Faulty) -> None:
    faults: MixedFaults = faulty.tenant.faults  # type: ignore[assignment]
    calls = healthy_read_calls(faulty.tenant)
    never_succeeded = {tool for tool, _ in calls}
    outcomes: Counter[str] = Counter()
    for i in range(N_READS):
        tool, args = calls[i % len(calls)]
        first = len(faults.drawn)
        result, took = await faulty.timed_call(tool, args)
        attempts = faults.drawn[first:]
        assert took <= CALL_DEADLINE_S, f"{tool} took {took:.2f} s of virtual time"
        if result.is_error:
            outcomes[assert_clean_failure(result, READ_FAILURE_CODES)] += 1
            # A read fails only when every attempt it made was hit by a fault (all 5, unless the deadline
            # left no room for the last ones), and never because the retry budget ran dry.
            assert "none" not in attempts and len(attempts) >= 3, (tool, attempts)
            assert "looks down" not in result_text(result)
        else:
            outcomes["ok"] += 1
            never_succeeded.discard(tool)
            assert attempts[-1] == "none" and len(attempts) <= MAX_ATTEMPTS, (tool, attempts)

    drawn = Counter(faults.drawn)
    # The run really was ~20% faulty, with every kind represented.
    assert math.isclose(1 - drawn["none"] / len(faults.drawn), FAULT_RATE, abs_tol=0.03), drawn
    assert all(drawn[kind] > 0 for kind in MixedFaults.kinds), drawn
    success_rate = outcomes["ok"] / N_READS
    assert success_rate >= 0.995, (success_rate, outcomes)
    assert never_succeeded == set()


async def test_an_upstream_that_is_down_is_not_hammered_and_every_call_fails_fast_and_clearly(
    faulty: Faulty, caplog: pytest.LogCaptureFixture
) -> None:
    # Every request fails (connection resets before or after, 5xx, read timeouts): the upstream is down.
    down = MixedFaults(
        fault_rate=1.0,
        kinds=("reset_before", "server_error", "reset_after", "slow_body"),
        latency_s=LATENCY_S,
        seed=FAULT_SEED,
    )
    faulty.tenant.faults = down
    calls = healthy_read_calls(faulty.tenant)
    attempts_per_call: list[int] = []
    for i in range(N_DOWN_CALLS):
        tool, args = calls[i % len(calls)]
        first = len(down.drawn)
        result, took = await faulty.timed_call(tool, args)
        attempts_per_call.append(len(down.drawn) - first)
        assert_clean_failure(result, READ_FAILURE_CODES)
        assert took <= CALL_DEADLINE_S
        if i >= 20:  # by now the budget is long spent: one attempt and a fast answer
            assert attempts_per_call[-1] == 1, attempts_per_call
            assert took <= READ_TIMEOUT_S + LATENCY_S + 1e-9, took
    total = sum(attempts_per_call)
    assert total <= 150, (total, attempts_per_call)
    assert total == len(down.drawn) > N_DOWN_CALLS
    # The operator is told once (stderr log), not once per call.
    down_lines = [r for r in caplog.records if "K-LINK looks down" in r.getMessage()]
    assert len(down_lines) == 1 and down_lines[0].levelname == "WARNING"

    # When K-LINK is back, calls succeed at once: first attempts never need the budget.
    faulty.tenant.faults = MixedFaults(fault_rate=0.0, latency_s=LATENCY_S, seed=FAULT_SEED)
    for tool, args in calls:
        result, _ = await faulty.timed_call(tool, args)
        assert not result.is_error, (tool, result_text(result))
    assert any("K-LINK answers again" in r.getMessage() for r in caplog.records)


async def test_a_call_never_outlives_a_tight_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every answer comes too slowly, so every attempt times out; with 10 attempts allowed, the retry layer
    # must still give up at the 1.2 s deadline instead of running all attempts and backoffs.
    tenant = SandboxTenant.seeded()
    clock = VirtualClock()
    with virtual_time(monkeypatch, clock, tenant):
        server = make_server(tenant, read_timeout_s=READ_TIMEOUT_S, call_deadline_s=1.2, max_attempts=10)
        async with Client(server) as client:
            tenant.faults = MixedFaults(fault_rate=1.0, kinds=("slow_body",), latency_s=LATENCY_S)
            tenant.reset_requests()
            started = clock.now
            with anyio.fail_after(30):
                result = await client.call_tool("list_tags", {})
            took = clock.now - started
    assert assert_clean_failure(result, {"timeout"}) == "timeout"
    # The last attempt's latency is the only overshoot: in virtual time the client's real-time guard
    # (anyio.move_on_after on the remaining budget) cannot fire, only its per-read timeout does.
    assert 1.2 - READ_TIMEOUT_S < took <= 1.2 + LATENCY_S + 1e-9, took
    assert 2 <= len(tenant.requests) < 10


async def test_a_retry_after_beyond_a_minute_is_returned_at_once_with_its_value(faulty: Faulty) -> None:
    faulty.tenant.faults = MixedFaults(fault_rate=1.0, kinds=("rate_limited",), retry_after_s=120.0)
    faulty.tenant.reset_requests()
    result, took = await faulty.timed_call("list_tags", {})
    assert error_code(result) == "rate_limited"
    assert error_meta(result).get("retry_after_s") == 120.0
    assert "120" in result_text(result)
    assert len(faulty.tenant.requests) == 1 and took < 1.0


def _count(records: dict[str, dict[str, Any]], key: str, prefix: str) -> Counter[str]:
    return Counter(str(r.get(key)) for r in records.values() if str(r.get(key, "")).startswith(prefix))


@pytest.mark.parametrize(
    ("tool", "records", "key", "args_for", "id_of"),
    [
        pytest.param(
            "create_ticket",
            lambda t: t.tickets,
            "title",
            lambda t, label: {"contact_id": _live_contact(t), "title": label, "priority": "high"},
            lambda sc: sc["ticket"]["id"],
            id="create_ticket",
        ),
        pytest.param(
            "create_contact",
            lambda t: t.contacts,
            "name",
            lambda t, label: {"name": label, "emails": [f"{label.lower()}@example.com"]},
            lambda sc: sc["contact"]["id"],
            id="create_contact",
        ),
    ],
)
async def test_writes_under_faults_are_never_duplicated(
    faulty: Faulty,
    tool: str,
    records: Callable[[SandboxTenant], dict[str, dict[str, Any]]],
    key: str,
    args_for: Callable[[SandboxTenant, str], dict[str, Any]],
    id_of: Callable[[dict[str, Any]], str],
) -> None:
    prefix = f"Fault{tool.replace('_', '')}"
    before = len(records(faulty.tenant))
    outcomes: dict[str, str] = {}
    created_ids: dict[str, str] = {}
    for i in range(N_WRITES_EACH):
        label = f"{prefix}{i:03d}"
        result, took = await faulty.timed_call(tool, args_for(faulty.tenant, label))
        assert took <= CALL_DEADLINE_S
        if result.is_error:
            outcomes[label] = assert_clean_failure(result, WRITE_FAILURE_CODES)
        else:
            assert result.structured_content["status"] == "done"
            outcomes[label] = "done"
            created_ids[label] = id_of(result.structured_content)

    stored = _count(records(faulty.tenant), key, prefix)
    tally = Counter(outcomes.values())
    # Never more records than calls, and never two records for one call.
    assert len(records(faulty.tenant)) - before <= N_WRITES_EACH
    assert all(n == 1 for n in stored.values()), {k: n for k, n in stored.items() if n != 1}
    for label, outcome in outcomes.items():
        if outcome == "done":
            assert stored[label] == 1, label
            assert records(faulty.tenant)[created_ids[label]][key] == label
        elif outcome == "rate_limited":
            assert stored[label] == 0, label  # a 429 is a refusal: nothing was applied
        else:
            assert stored[label] <= 1, label  # ambiguous: applied at most once, never resent
    assert len(records(faulty.tenant)) - before == tally["done"] + sum(
        stored[label] for label, outcome in outcomes.items() if outcome == "ambiguous_write"
    )
    # The run exercised both kinds of failure and still created most records.
    assert tally["ambiguous_write"] > 0 and tally["done"] >= N_WRITES_EACH * 0.7, tally


def _live_contact(tenant: SandboxTenant) -> str:
    return str(next(c["id"] for c in tenant.contacts.values() if not c.get("deletedAt")))
