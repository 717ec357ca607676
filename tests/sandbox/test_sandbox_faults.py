"""Fault injection, as a client sees it, over the in-process transport and a real loopback socket."""

from __future__ import annotations

import anyio
import httpx2
import pytest

from klink_mcp.sandbox import FaultConfig
from klink_mcp.sandbox.faults import NO_FAULT

from .conftest import Sandbox

pytestmark = pytest.mark.anyio

NEW_CONTACT = {"name": "Fault Probe", "emails": ["probe@example.com"]}


def probes(sb: Sandbox) -> list[str]:
    return [c["id"] for c in sb.tenant.contacts.values() if c["name"] == "Fault Probe"]


async def test_error_rate_answers_5xx_before_touching_state(sandbox: Sandbox) -> None:
    sandbox.tenant.faults = FaultConfig(error_rate=1.0)
    r = await sandbox.client.post("/api/v1/contacts", json=NEW_CONTACT)
    assert r.status_code in (500, 502, 503)
    assert r.json()["statusCode"] == r.status_code
    assert probes(sandbox) == []
    assert sandbox.tenant.requests[-1].status == r.status_code


async def test_rate_limit_answers_429_with_retry_after(sandbox: Sandbox) -> None:
    sandbox.tenant.faults = FaultConfig(rate_limit_rate=1.0, retry_after_s=3)
    r = await sandbox.client.get("/api/v1/tags")
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json() == {"statusCode": 429, "error": "Too Many Requests", "message": "Too Many Requests"}
    sandbox.tenant.faults = FaultConfig(rate_limit_rate=1.0, retry_after_s=None)
    r = await sandbox.client.get("/api/v1/tags")
    assert r.status_code == 429 and "retry-after" not in r.headers


async def test_reset_before_drops_the_connection_and_applies_nothing(sandbox: Sandbox) -> None:
    sandbox.tenant.faults = FaultConfig(reset_before_rate=1.0)
    expected = httpx2.ConnectError if sandbox.frontend == "inprocess" else httpx2.TransportError
    with anyio.fail_after(5), pytest.raises(expected):
        await sandbox.client.post("/api/v1/contacts", json=NEW_CONTACT)
    assert probes(sandbox) == []
    assert sandbox.tenant.requests == []
    sandbox.tenant.faults = FaultConfig()
    with anyio.fail_after(5):
        assert (await sandbox.client.get("/api/v1/tags")).status_code == 200  # the client recovers


async def test_reset_after_applies_the_write_exactly_once_and_the_client_sees_a_disconnect(
    sandbox: Sandbox,
) -> None:
    sandbox.tenant.faults = FaultConfig(reset_after_rate=1.0)
    with anyio.fail_after(5), pytest.raises(httpx2.RemoteProtocolError, match="without sending a response"):
        await sandbox.client.post("/api/v1/contacts", json=NEW_CONTACT)
    assert len(probes(sandbox)) == 1
    recorded = sandbox.tenant.requests[-1]
    assert (recorded.method, recorded.path, recorded.status) == ("POST", "/api/v1/contacts", None)
    assert recorded.json == NEW_CONTACT


async def test_a_slow_body_makes_a_short_read_timeout_fire(sandbox: Sandbox) -> None:
    sandbox.tenant.faults = FaultConfig(slow_body_s=5.0)
    with anyio.fail_after(3), pytest.raises(httpx2.ReadTimeout):
        await sandbox.client.get("/api/v1/tags", timeout=httpx2.Timeout(2.0, read=0.05))


async def test_a_slow_body_within_the_read_timeout_still_arrives_whole(sandbox: Sandbox) -> None:
    sandbox.tenant.faults = FaultConfig(slow_body_s=0.01)
    with anyio.fail_after(3):
        r = await sandbox.client.get("/api/v1/tags")
    assert r.status_code == 200 and len(r.json()["data"]) == 20


async def test_latency_waits_through_the_tenant_sleep_before_answering(sandbox: Sandbox) -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    sandbox.tenant.sleep = fake_sleep
    sandbox.tenant.faults = FaultConfig(latency_s=0.75)
    r = await sandbox.client.get("/api/v1/tags")
    assert r.status_code == 200 and waits == [0.75]


async def test_only_methods_limits_faults_to_those_methods(sandbox: Sandbox) -> None:
    sandbox.tenant.faults = FaultConfig(error_rate=1.0, only_methods=frozenset({"post"}))
    assert (await sandbox.client.get("/api/v1/tags")).status_code == 200
    assert (await sandbox.client.post("/api/v1/contacts", json=NEW_CONTACT)).status_code >= 500


async def test_faults_can_be_changed_in_place(sandbox: Sandbox) -> None:
    sandbox.tenant.faults.rate_limit_rate = 1.0
    assert (await sandbox.client.get("/api/v1/tags")).status_code == 429
    sandbox.tenant.faults.rate_limit_rate = 0.0
    assert (await sandbox.client.get("/api/v1/tags")).status_code == 200


def test_the_same_fault_seed_gives_the_same_sequence_of_decisions() -> None:
    def run(seed: int) -> list[object]:
        config = FaultConfig(error_rate=0.3, rate_limit_rate=0.3, reset_after_rate=0.3, seed=seed)
        return [config.decide("GET") for _ in range(50)]

    first = run(1)
    assert first == run(1)
    assert first != run(2)
    kinds = {(d.error_status is not None, d.rate_limited, d.reset_after) for d in first}  # type: ignore[attr-defined]
    assert len(kinds) >= 3


def test_partial_rates_hit_some_requests_and_spare_others() -> None:
    config = FaultConfig(error_rate=0.5, seed=3)
    hits = sum(config.decide("GET").error_status is not None for _ in range(400))
    assert 120 < hits < 280


def test_a_default_fault_config_is_inactive_and_decides_no_fault() -> None:
    config = FaultConfig()
    assert not config.active and config.decide("POST") is NO_FAULT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": 1.5},
        {"reset_after_rate": -0.1},
        {"latency_s": -1},
        {"slow_body_s": float("nan")},
        {"error_rate": True},
    ],
)
def test_fault_config_rejects_impossible_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**kwargs)  # type: ignore[arg-type]


def test_fault_config_validates_assignments_too() -> None:
    config = FaultConfig()
    with pytest.raises(ValueError, match="probability"):
        config.error_rate = 2
    assert config.error_rate == 0.0


def test_retry_after_header_is_whole_seconds_or_a_decimal() -> None:
    assert FaultConfig(retry_after_s=1.0).retry_after_header() == "1"
    assert FaultConfig(retry_after_s=2.5).retry_after_header() == "2.5"
    assert FaultConfig(retry_after_s=None).retry_after_header() is None
