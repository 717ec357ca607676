"""Helpers for the K-LINK SDK tests: scripted mock transports and a fake clock whose sleeps are instant."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from klink_mcp.api.client import KlinkClient

TOKEN = "kpt_test_secret_token_123"
BASE_URL = "https://k.test"

Step = (
    BaseException
    | tuple[int, Any]
    | tuple[int, Any, dict[str, str]]
    | Callable[[httpx2.Request], httpx2.Response]
)


def response(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx2.Response:
    """A fresh response: dict/list bodies as JSON, str as text, bytes as they are."""
    if isinstance(body, (dict, list)):
        return httpx2.Response(
            status,
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json", **(headers or {})},
        )
    if isinstance(body, str):
        return httpx2.Response(status, text=body, headers=headers)
    return httpx2.Response(status, content=body or b"", headers=headers)


class Script:
    """A MockTransport handler that plays `steps` in order (the last one repeats) and records requests."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(request)
        return response(*step)

    @property
    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


class FakeTime:
    """An injectable clock and sleep: sleeping records the wait and moves the clock, instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class MaxJitter(random.Random):
    """Full jitter always drawing its upper bound, so backoff waits are exact and checkable."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def make_client(fake_time: FakeTime) -> AsyncIterator[Callable[..., KlinkClient]]:
    """Build clients over a Script (or any handler); all are closed at the end of the test."""
    made: list[KlinkClient] = []

    def build(handler: Callable[[httpx2.Request], httpx2.Response], **kwargs: Any) -> KlinkClient:
        kwargs.setdefault("sleep", fake_time.sleep)
        kwargs.setdefault("clock", fake_time.clock)
        client = KlinkClient(BASE_URL, TOKEN, transport=httpx2.MockTransport(handler), **kwargs)
        made.append(client)
        return client

    yield build
    for client in made:
        await client.aclose()


def contact_body(contact_id: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"status": "success", "message": "contact", "data": {"id": contact_id, "name": "Ann", **extra}}


def paged(
    items: list[Any],
    *,
    total: int | None = None,
    page: int = 1,
    page_size: int = 10,
    last_page: int | None = None,
) -> dict[str, Any]:
    total = len(items) if total is None else total
    last = last_page if last_page is not None else -(-total // page_size)
    return {"total": total, "page": page, "pageSize": page_size, "lastPage": last, "data": items}
