"""The sandbox emitter: real signed deliveries, bounded retries, at-least-once semantics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import pytest

from klink_mcp.sandbox import SandboxTenant
from klink_mcp.webhooks.emitter import WebhookEmitter
from klink_mcp.webhooks.events import parse_event, verify_signature

from ._support import SECRET

pytestmark = pytest.mark.anyio

URL = "http://receiver.test/webhooks/klink"


class Recorder:
    """A MockTransport handler answering from a script of statuses (or exceptions), recording requests."""

    def __init__(
        self, script: list[int | type[Exception]] | None = None, retry_after: str | None = None
    ) -> None:
        self.script = list(script or [])
        self.retry_after = retry_after
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        outcome = self.script.pop(0) if self.script else 200
        if isinstance(outcome, type):
            raise outcome("simulated", request=request)
        headers = {"retry-after": self.retry_after} if self.retry_after and outcome != 200 else {}
        return httpx2.Response(outcome, json={"duplicate": False}, headers=headers)

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await anyio.lowlevel.checkpoint()


def emitter(recorder: Recorder, sleep: FakeSleep | None = None, **kwargs: Any) -> WebhookEmitter:
    return WebhookEmitter(
        URL, SECRET, transport=recorder.transport(), sleep=sleep or FakeSleep(), seed=1, **kwargs
    )


async def test_each_event_is_posted_once_as_json_signed_with_the_secret() -> None:
    recorder = Recorder()
    sender = emitter(recorder)
    async with sender.running():
        sender.emit("contact.create", {"id": "c1", "name": "Ann"})
        await sender.drain()
    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["content-type"] == "application/json"
    assert verify_signature(SECRET.encode(), request.content, request.headers["x-signature"])
    event = parse_event(json.loads(request.content))
    assert (event.event, event.contact_id, event.data["name"]) == ("contact.create", "c1", "Ann")
    assert sender.stats.delivered == 1


async def test_transient_failures_are_retried_with_capped_jittered_backoff_and_identical_bytes() -> None:
    recorder = Recorder([503, 502, 429, 200])
    sleep = FakeSleep()
    sender = emitter(recorder, sleep, backoff_base_s=0.2, backoff_cap_s=1.0)
    async with sender.running():
        sender.emit("message.inbound", {"id": "m1", "contactId": "c1", "message": "hi"})
        await sender.drain()
    assert len(recorder.requests) == 4
    assert len({r.content for r in recorder.requests}) == 1
    assert len({r.headers["x-signature"] for r in recorder.requests}) == 1
    assert len(sleep.delays) == 3
    assert all(0 <= d <= 1.0 for d in sleep.delays)
    assert (sender.stats.delivered, sender.stats.retries, sender.stats.failed) == (1, 3, 0)


async def test_connection_errors_and_timeouts_are_retried() -> None:
    recorder = Recorder([httpx2.ConnectError, httpx2.ReadTimeout, 200])
    sender = emitter(recorder)
    async with sender.running():
        sender.emit("contact.update", {"id": "c1"})
        await sender.drain()
    assert sender.stats.delivered == 1
    assert sender.stats.attempts == 3


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    recorder = Recorder([429, 200], retry_after="3")
    sleep = FakeSleep()
    sender = emitter(recorder, sleep, backoff_cap_s=2.0)
    async with sender.running():
        sender.emit("contact.update", {"id": "c1"})
        await sender.drain()
    assert sleep.delays == [2.0]


async def test_delivery_gives_up_after_max_attempts() -> None:
    recorder = Recorder([500] * 10)
    sender = emitter(recorder, max_attempts=3)
    async with sender.running():
        sender.emit("contact.update", {"id": "c1"})
        await sender.drain()
    assert len(recorder.requests) == 3
    assert (sender.stats.delivered, sender.stats.failed) == (0, 1)


@pytest.mark.parametrize("status", [400, 401, 413])
async def test_a_client_error_is_final_and_not_retried(status: int) -> None:
    recorder = Recorder([status])
    sender = emitter(recorder)
    async with sender.running():
        sender.emit("contact.update", {"id": "c1"})
        await sender.drain()
    assert len(recorder.requests) == 1
    assert sender.stats.failed == 1


async def test_events_emitted_before_running_wait_and_are_delivered_when_it_starts() -> None:
    recorder = Recorder()
    sender = emitter(recorder)
    sender.emit("contact.create", {"id": "c1"})
    sender.emit("contact.create", {"id": "c2"})
    with pytest.raises(RuntimeError):
        await sender.drain()
    async with sender.running():
        await sender.drain()
    assert [json.loads(r.content)["data"]["id"] for r in recorder.requests] == ["c1", "c2"]


async def test_emit_from_another_thread_is_delivered() -> None:
    recorder = Recorder()
    sender = emitter(recorder)
    async with sender.running():
        await anyio.to_thread.run_sync(sender.emit, "contact.create", {"id": "from-thread"})
        await sender.drain()
    assert json.loads(recorder.requests[0].content)["data"]["id"] == "from-thread"


async def test_duplicate_rate_redelivers_the_identical_body_on_purpose() -> None:
    recorder = Recorder()
    sender = emitter(recorder, duplicate_rate=1.0)
    async with sender.running():
        sender.emit("contact.update", {"id": "c1"})
        await sender.drain()
    assert len(recorder.requests) == 2
    assert recorder.requests[0].content == recorder.requests[1].content
    assert (sender.stats.delivered, sender.stats.duplicates_sent) == (1, 1)


async def test_several_workers_deliver_every_event() -> None:
    recorder = Recorder()
    sender = emitter(recorder, concurrency=4)
    async with sender.running():
        for n in range(50):
            sender.emit("contact.update", {"id": f"c{n}"})
        await sender.drain()
    assert sorted(json.loads(r.content)["data"]["id"] for r in recorder.requests) == sorted(
        f"c{n}" for n in range(50)
    )


async def test_attach_forwards_every_sandbox_tenant_event() -> None:
    recorder = Recorder()
    sender = emitter(recorder)
    tenant = SandboxTenant.seeded()
    sender.attach(tenant)
    contact_id = next(iter(tenant.contacts))
    async with sender.running():
        tenant.simulate_inbound_message(contact_id, "Where is my order?")
        await sender.drain()
    [request] = recorder.requests
    event = parse_event(json.loads(request.content))
    assert (event.event, event.contact_id, event.data["message"]) == (
        "message.inbound",
        contact_id,
        "Where is my order?",
    )


async def test_leaving_running_stops_waiting_after_the_shutdown_timeout() -> None:
    release = anyio.Event()

    async def stuck(_: httpx2.Request) -> httpx2.Response:
        await release.wait()
        return httpx2.Response(200)

    sender = WebhookEmitter(URL, SECRET, transport=httpx2.MockTransport(stuck), shutdown_timeout_s=0.05)
    with anyio.fail_after(5):
        async with sender.running():
            sender.emit("contact.update", {"id": "c1"})
    assert sender.stats.failed == 1


@pytest.mark.parametrize(
    "bad",
    [
        lambda: WebhookEmitter(URL, ""),
        lambda: WebhookEmitter(URL, SECRET, max_attempts=0),
        lambda: WebhookEmitter(URL, SECRET, duplicate_rate=2.0),
    ],
)
def test_invalid_configuration_is_refused(bad: Callable[[], WebhookEmitter]) -> None:
    with pytest.raises(ValueError):
        bad()


def test_the_secret_is_not_in_the_repr() -> None:
    sender = WebhookEmitter(URL, SECRET)
    assert SECRET not in repr(sender)
    assert SECRET not in repr(vars(sender))
