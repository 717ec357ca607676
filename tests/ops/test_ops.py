"""Operations over real loopback HTTP: health, readiness, request ids, JSON logs, Prometheus metrics."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp.server import MCPServer

from klink_mcp import ops
from klink_mcp.webhooks.events import compute_signature
from tests.auth.harness import STATIC_TOKEN, authed_client, running_klink

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AUTH = {"authorization": f"Bearer {STATIC_TOKEN}"}


def sample(name: str, **labels: str) -> float:
    return ops.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_healthz_and_readyz_answer_without_auth_and_readyz_checks_store_and_klink() -> None:
    with anyio.fail_after(30):
        async with running_klink(None, http_auth_token=STATIC_TOKEN) as srv, httpx2.AsyncClient() as http:
            health = await http.get(f"{srv.url}/healthz")
            before = len(srv.tenant.requests)
            ready = await http.get(f"{srv.url}/readyz")
            again = await http.get(f"{srv.url}/readyz")
            after = len(srv.tenant.requests)
            mcp_without_token = await http.post(f"{srv.url}/mcp", json={})
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"klink": "ok", "store": "ok"}}
    assert again.json() == ready.json()
    # One cheap upstream read for both probes: the result is cached for a few seconds.
    assert after - before == 1
    assert mcp_without_token.status_code == 401


async def test_readyz_is_503_with_the_reason_when_klink_refuses() -> None:
    async with running_klink(None) as srv, httpx2.AsyncClient() as http:
        srv.upstream.refuse_with = 401  # K-LINK now refuses the API token
        ready = await http.get(f"{srv.url}/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False and body["checks"]["store"] == "ok"
    assert "401" in body["checks"]["klink"]


async def test_readiness_times_out_a_hanging_check_and_caches_the_answer() -> None:
    calls = {"n": 0}
    now = [0.0]
    never = anyio.Event()

    async def hangs() -> None:
        calls["n"] += 1
        await never.wait()

    async def fine() -> None:
        calls["n"] += 1

    readiness = ops.Readiness({"upstream": hangs, "store": fine}, timeout_s=0.05, clock=lambda: now[0])
    with anyio.fail_after(5):
        ready, checks = await readiness.status()
        assert ready is False and checks == {"upstream": "no answer within 0.05 s", "store": "ok"}
        assert (await readiness.status())[1] == checks and calls["n"] == 2
        now[0] += ops.READY_CACHE_S + 1
        await readiness.status()
    assert calls["n"] == 4


def _request_id_tool(server: MCPServer[Any]) -> None:
    @server.tool(name="test_request_id", description="the request id the audit would record (test only)")
    def test_request_id() -> dict[str, Any]:
        return {"request_id": ops.current_request_id()}


async def test_request_ids_are_echoed_or_made_and_reach_the_tool_layer() -> None:
    with anyio.fail_after(30):
        async with running_klink(None, prepare=_request_id_tool) as srv, httpx2.AsyncClient() as http:
            given = await http.get(f"{srv.url}/healthz", headers={"x-request-id": "lb-abc.123"})
            made = await http.get(f"{srv.url}/healthz")
            hostile = await http.get(f"{srv.url}/healthz", headers={"x-request-id": "bad id\twith spaces"})
            async with authed_client(srv.mcp_url, "unused") as client:
                result = await client.call_tool("test_request_id", {})
    assert given.headers["x-request-id"] == "lb-abc.123"
    assert len(made.headers["x-request-id"]) == 32
    assert (
        hostile.headers["x-request-id"] != "bad id\twith spaces"
        and len(hostile.headers["x-request-id"]) == 32
    )
    seen = result.structured_content["request_id"]
    assert isinstance(seen, str) and len(seen) == 32


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(ops.JsonLogFormatter())
    logger = logging.getLogger("klink_mcp.access")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


async def test_one_json_access_line_per_request_with_its_request_id(json_lines: io.StringIO) -> None:
    async with running_klink(None, http_auth_token=STATIC_TOKEN) as srv, httpx2.AsyncClient() as http:
        await http.get(f"{srv.url}/healthz", headers={"x-request-id": "req-1"})
        await http.get(f"{srv.url}/metrics", headers={**AUTH, "x-request-id": "req-2"})
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["req-1", "req-2"]
    first, second = lines
    assert first["http"]["path"] == "/healthz" and first["http"]["status"] == 200
    assert second["principal"] == "operator" and second["level"] == "INFO"
    assert STATIC_TOKEN not in json_lines.getvalue()


async def test_metrics_need_auth_unless_public_and_count_tool_calls() -> None:
    ok_before = sample("klink_tool_calls_total", tool="list_tags", outcome="ok")
    seconds_before = sample("klink_tool_call_seconds_count", tool="list_tags")
    errors_before = sample("klink_tool_calls_total", tool="get_contact", outcome="error")
    with anyio.fail_after(30):
        async with running_klink(None, http_auth_token=STATIC_TOKEN) as srv, httpx2.AsyncClient() as http:
            async with authed_client(srv.mcp_url, STATIC_TOKEN) as client:
                assert not (await client.call_tool("list_tags", {})).is_error
                assert (await client.call_tool("get_contact", {"contact_id": "no-such-contact"})).is_error
            refused = await http.get(f"{srv.url}/metrics")
            scraped = await http.get(f"{srv.url}/metrics", headers=AUTH)
        async with (
            running_klink(None, http_auth_token=STATIC_TOKEN, metrics_public=True) as srv,
            httpx2.AsyncClient() as http,
        ):
            public = await http.get(f"{srv.url}/metrics")
    assert refused.status_code == 401
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    assert 'klink_tool_calls_total{outcome="ok",tool="list_tags"}' in scraped.text
    assert public.status_code == 200 and "klink_tool_call_seconds_bucket" in public.text
    assert sample("klink_tool_calls_total", tool="list_tags", outcome="ok") == ok_before + 1
    assert sample("klink_tool_call_seconds_count", tool="list_tags") == seconds_before + 1
    assert sample("klink_tool_calls_total", tool="get_contact", outcome="error") == errors_before + 1


async def test_webhook_deliveries_are_counted_by_result() -> None:
    secret = "whsec-ops-test-0123456789abcdef0123456789"
    body = json.dumps(
        {
            "event": "message.inbound",
            "timestamp": "2026-01-09T03:42:38.000000Z",
            "data": {"id": "msg-ops-1", "contactId": "c-1", "channel": "line", "message": "hi"},
        }
    ).encode()
    signed = {"content-type": "application/json", "x-signature": compute_signature(secret.encode(), body)}
    before = {
        r: sample("klink_webhook_events_total", result=r) for r in ("stored", "duplicate", "unauthorized")
    }
    with anyio.fail_after(30):
        async with running_klink(None, webhook_secret=secret) as srv, httpx2.AsyncClient() as http:
            assert (
                await http.post(f"{srv.url}/webhooks/klink", content=body, headers=signed)
            ).status_code == 200
            assert (
                await http.post(f"{srv.url}/webhooks/klink", content=body, headers=signed)
            ).status_code == 200
            unsigned = {"content-type": "application/json"}
            assert (
                await http.post(f"{srv.url}/webhooks/klink", content=body, headers=unsigned)
            ).status_code == 401
    for result in ("stored", "duplicate", "unauthorized"):
        assert sample("klink_webhook_events_total", result=result) == before[result] + 1


def test_the_other_hooks_count_with_bounded_labels() -> None:
    retries = sample("klink_upstream_retries_total", op="list_contacts")
    ok = sample("klink_upstream_responses_total", op="list_contacts", status="200")
    ops.observe_upstream("list_contacts", 503, 1)
    ops.observe_upstream("list_contacts", 200, 2)
    ops.observe_upstream("Weird Op!", "<script>", 1)
    assert sample("klink_upstream_responses_total", op="list_contacts", status="200") == ok + 1
    assert sample("klink_upstream_retries_total", op="list_contacts") == retries + 1
    assert sample("klink_upstream_responses_total", op="other", status="other") >= 1

    granted = sample("klink_approvals_total", outcome="granted")
    ops.observe_approval("granted")
    ops.observe_approval("made-up outcome")
    assert sample("klink_approvals_total", outcome="granted") == granted + 1
    assert sample("klink_approvals_total", outcome="other") >= 1

    ops.observe_tool_call("Not A Tool Name", 0.01, "ok")
    assert sample("klink_tool_calls_total", tool="other", outcome="ok") >= 1
