"""Retries only where safe: caps, full-jitter backoff, Retry-After, the call deadline, POST ambiguity.

All waits go through an injected sleep that records them and moves a fake clock, so nothing here
really sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx2
import pytest

from klink_mcp.api import errors
from klink_mcp.api._http import Attempt, parse_retry_after
from klink_mcp.api.client import KlinkClient

from .conftest import FakeTime, MaxJitter, Script, contact_body

pytestmark = pytest.mark.anyio

OK = (200, contact_body())
TICKET_OK = (201, {"success": True, "data": {"id": "t1", "ticketNumber": 7}})
NEW_TICKET = {"title": "Broken", "contact_id": "c1"}


@pytest.mark.parametrize(
    "failure",
    [
        (500, {"message": "boom"}),
        (502, "<html><title>Bad Gateway</title></html>"),
        (503, b""),
        (408, b""),
        (429, {"message": "slow down"}),
        httpx2.ConnectError("connection refused"),
        httpx2.ConnectTimeout("connect timed out"),
        httpx2.ReadTimeout("read timed out"),
        httpx2.RemoteProtocolError("Server disconnected without sending a response."),
        httpx2.ReadError("connection reset by peer"),
    ],
)
async def test_a_read_is_retried_after_a_transient_failure_and_succeeds(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime, failure: object
) -> None:
    script = Script(failure, OK)  # type: ignore[arg-type]
    contact = await make_client(script).get_contact("c1")
    assert contact.id == "c1"
    assert len(script.requests) == 2
    assert len(fake_time.sleeps) == 1
    assert 0.0 <= fake_time.sleeps[0] <= 0.5


async def test_a_read_that_keeps_failing_stops_after_max_attempts(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((503, {"message": "down"}))
    attempts: list[Attempt] = []
    client = make_client(script, on_attempt=attempts.append)
    with pytest.raises(errors.ServerError):
        await client.get_contact("c1")
    # Five attempts by default (the budget is full: 4 retries cost 20 of its 100 tokens).
    assert len(script.requests) == 5
    assert [a.attempt for a in attempts] == [1, 2, 3, 4, 5]
    assert [a.retrying for a in attempts] == [True, True, True, True, False]
    assert len(fake_time.sleeps) == 4
    assert client.stats.attempts == 5
    assert client.stats.retries == 4
    assert client.stats.max_attempts_per_call == 5
    assert client.stats.retries_refused == 0


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
async def test_the_attempt_cap_is_configurable(
    make_client: Callable[..., KlinkClient], max_attempts: int
) -> None:
    script = Script(httpx2.ConnectError("refused"))
    with pytest.raises(errors.KlinkConnectionError):
        await make_client(script, max_attempts=max_attempts).list_tags()
    assert len(script.requests) == max_attempts


async def test_backoff_doubles_from_half_a_second_and_is_capped_at_eight(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    client = make_client(Script((500, b"")), max_attempts=8, rng=MaxJitter(), call_deadline_s=1000)
    with pytest.raises(errors.ServerError):
        await client.list_tags()
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


async def test_backoff_uses_full_jitter_below_the_exponential_bound(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    for _ in range(20):
        with pytest.raises(errors.ServerError):
            await make_client(Script((500, b"")), max_attempts=6, call_deadline_s=1000).list_tags()
    assert len(fake_time.sleeps) == 100
    bounds = [0.5, 1.0, 2.0, 4.0, 8.0] * 20
    assert all(0.0 <= slept <= bound for slept, bound in zip(fake_time.sleeps, bounds, strict=True))
    assert len(set(fake_time.sleeps)) > 50  # really random, not a fixed schedule


async def test_retry_after_in_seconds_is_honoured(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((429, {"message": "slow down"}, {"Retry-After": "7"}), OK)
    await make_client(script).get_contact("c1")
    assert fake_time.sleeps == [7.0]


async def test_retry_after_on_a_503_is_honoured_too(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((503, b"", {"Retry-After": "3"}), OK)
    await make_client(script).get_contact("c1")
    assert fake_time.sleeps == [3.0]


async def test_retry_after_as_an_http_date_is_honoured(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    script = Script((429, b"", {"Retry-After": when}), OK)
    await make_client(script).get_contact("c1")
    assert len(fake_time.sleeps) == 1
    assert 27.0 <= fake_time.sleeps[0] <= 30.0


async def test_retry_after_above_sixty_seconds_is_not_waited_for(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((429, {"message": "quota"}, {"Retry-After": "120"}), OK)
    with pytest.raises(errors.RateLimited) as caught:
        await make_client(script, call_deadline_s=1000).get_contact("c1")
    assert caught.value.retry_after == 120.0
    assert fake_time.sleeps == []
    assert len(script.requests) == 1


async def test_retry_after_of_exactly_sixty_seconds_is_waited_for(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((429, b"", {"Retry-After": "60"}), OK)
    await make_client(script, call_deadline_s=1000).get_contact("c1")
    assert fake_time.sleeps == [60.0]


async def test_a_retry_after_past_the_call_deadline_raises_instead_of_sleeping(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((429, b"", {"Retry-After": "10"}), OK)
    with pytest.raises(errors.RateLimited) as caught:
        await make_client(script, call_deadline_s=5).get_contact("c1")
    assert caught.value.retry_after == 10.0
    assert fake_time.sleeps == []


async def test_backoff_never_sleeps_past_the_call_deadline(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((500, b""))
    client = make_client(script, max_attempts=10, rng=MaxJitter(), call_deadline_s=4.0)
    with pytest.raises(errors.ServerError):
        await client.list_tags()
    # 0.5 + 1 + 2 = 3.5 s fits; the next 4 s wait would end after the 4 s deadline.
    assert fake_time.sleeps == [0.5, 1.0, 2.0]
    assert len(script.requests) == 4


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_values_are_parsed_tolerantly(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_dates_are_measured_from_now() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:45 GMT", now=now) == 45.0


# ---------------------------------------------------------------------------------------- writes


@pytest.mark.parametrize(
    "failure",
    [
        httpx2.ReadTimeout("read timed out"),
        httpx2.RemoteProtocolError("Server disconnected without sending a response."),
        httpx2.ReadError("connection reset by peer"),
        httpx2.WriteError("broken pipe"),
        httpx2.WriteTimeout("write timed out"),
    ],
)
async def test_a_create_whose_bytes_may_have_left_is_never_resent(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime, failure: Exception
) -> None:
    script = Script(failure, TICKET_OK)
    with pytest.raises(errors.AmbiguousWriteError, match="may or may not have been applied"):
        await make_client(script).create_ticket(NEW_TICKET)
    assert len(script.requests) == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_create_answered_with_a_5xx_is_ambiguous_and_not_resent(
    make_client: Callable[..., KlinkClient], status: int
) -> None:
    script = Script((status, {"message": "internal"}, {"Retry-After": "1"}), TICKET_OK)
    with pytest.raises(errors.AmbiguousWriteError) as caught:
        await make_client(script).create_ticket(NEW_TICKET)
    assert caught.value.status == status
    assert isinstance(caught.value.__cause__, errors.ServerError)
    assert "internal" in str(caught.value)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx2.ConnectError("connection refused"),
        httpx2.ConnectTimeout("timed out"),
        httpx2.PoolTimeout("pool"),
    ],
)
async def test_a_create_is_resent_only_when_nothing_was_sent(
    make_client: Callable[..., KlinkClient], failure: Exception
) -> None:
    script = Script(failure, TICKET_OK)
    ticket = await make_client(script).create_ticket(NEW_TICKET)
    assert ticket.ticket_number == 7
    assert len(script.requests) == 2


async def test_a_rate_limited_create_is_refused_not_resent(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((429, {"message": "slow down"}, {"Retry-After": "2"}), TICKET_OK)
    with pytest.raises(errors.RateLimited) as caught:
        await make_client(script).create_ticket(NEW_TICKET)
    assert caught.value.retry_after == 2.0
    assert len(script.requests) == 1
    assert fake_time.sleeps == []


async def test_send_message_is_never_resent_after_a_disconnect(
    make_client: Callable[..., KlinkClient],
) -> None:
    script = Script(
        httpx2.RemoteProtocolError("Server disconnected"), (200, {"status": 200, "data": {"id": "m"}})
    )
    with pytest.raises(errors.AmbiguousWriteError):
        await make_client(script).send_message(contact_id="c1", message="hello")
    assert len(script.requests) == 1


async def test_an_idempotent_update_is_retried_after_a_server_error(
    make_client: Callable[..., KlinkClient],
) -> None:
    script = Script((502, b""), (200, {"success": True, "data": {"id": "t1", "status": "resolved"}}))
    ticket = await make_client(script).update_ticket_status("t1", "resolved")
    assert ticket.status == "resolved"
    assert [r.method for r in script.requests] == ["PUT", "PUT"]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_client_errors_are_never_retried(make_client: Callable[..., KlinkClient], status: int) -> None:
    script = Script((status, {"message": "no"}), OK)
    with pytest.raises(errors.KlinkAPIError):
        await make_client(script).get_contact("c1")
    assert len(script.requests) == 1


# ---------------------------------------------------------------------------------------- deadline


def _hang_until_cancelled() -> Callable[[httpx2.Request], object]:
    async def handler(request: httpx2.Request) -> httpx2.Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return handler


async def test_a_read_that_gets_no_answer_times_out_at_the_call_deadline() -> None:
    client = KlinkClient(
        "https://k.test", "t", transport=httpx2.MockTransport(_hang_until_cancelled()), call_deadline_s=0.05
    )
    async with client:
        with anyio.fail_after(5), pytest.raises(errors.KlinkTimeout, match="call deadline"):
            await client.get_contact("c1")


async def test_a_create_that_gets_no_answer_by_the_deadline_is_ambiguous() -> None:
    client = KlinkClient(
        "https://k.test", "t", transport=httpx2.MockTransport(_hang_until_cancelled()), call_deadline_s=0.05
    )
    async with client:
        with anyio.fail_after(5), pytest.raises(errors.AmbiguousWriteError):
            await client.create_contact({"name": "Ann"})


async def test_a_wait_that_overruns_the_deadline_ends_the_call_without_another_attempt(
    make_client: Callable[..., KlinkClient],
) -> None:
    clock = FakeTime()

    async def oversleep(seconds: float) -> None:
        clock.now += seconds + 10  # a sleep that returns late (a suspended laptop, an overloaded loop)

    script = Script(httpx2.ConnectError("refused"), TICKET_OK)
    client = make_client(script, sleep=oversleep, clock=clock.clock, call_deadline_s=5)
    with pytest.raises(errors.KlinkTimeout, match="ran out before another attempt") as caught:
        await client.create_ticket(NEW_TICKET)
    assert not isinstance(caught.value, errors.AmbiguousWriteError)  # nothing was ever sent
    assert len(script.requests) == 1


# ---------------------------------------------------------------------------------------------- the budget


async def test_an_upstream_that_is_down_gets_at_most_120_attempts_from_100_calls(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    # The default budget (100 tokens, 5 per retry) pays for 20 retries when nothing succeeds: the first
    # calls use their 5 attempts, then every call fails after its first attempt, saying K-LINK looks down.
    script = Script((503, {"message": "Service Unavailable"}))
    client = make_client(script)
    messages: list[str] = []
    for _ in range(100):
        with pytest.raises(errors.ServerError) as caught:
            await client.get_contact("c1")
        messages.append(str(caught.value))
    assert len(script.requests) == 5 * 5 + 95 == 120
    assert client.stats.retries == 20
    assert client.stats.retries_refused == 95  # calls 6..100 wanted a retry and were refused
    assert all("looks down" not in m for m in messages[:5])
    assert all("K-LINK looks down or overloaded" in m and "(HTTP 503)" in m for m in messages[5:])
    assert len(fake_time.sleeps) == 20


async def test_timeouts_cost_the_budget_twice_as_much(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script(httpx2.ReadTimeout("read timed out"))
    client = make_client(script, call_deadline_s=10_000)
    for _ in range(10):
        with pytest.raises(errors.KlinkTimeout):
            await client.list_tags()
    # 100 tokens / 10 per timeout retry = 10 retries in all, then first attempts only.
    assert len(script.requests) == 10 + 10
    assert client.stats.retries == 10


async def test_successes_refill_the_budget_and_retries_resume(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    down = (503, b"")
    script = Script(*([down] * 26), *([OK] * 4), down, OK, down, OK)
    client = make_client(script)
    for _ in range(6):  # 5 calls x 5 attempts empty the bucket; the 6th gets one attempt
        with pytest.raises(errors.ServerError):
            await client.get_contact("c1")
    assert len(script.requests) == 26 and client.stats.retries == 20
    for _ in range(4):  # 4 tokens back: not yet enough for a retry (5)
        await client.get_contact("c1")
    with pytest.raises(errors.ServerError, match="looks down"):
        await client.get_contact("c1")
    await client.get_contact("c1")  # the 5th token
    contact = await client.get_contact("c1")  # 503, retried, OK
    assert contact.id == "c1"
    assert client.stats.retries == 21 and len(script.requests) == 34


async def test_a_retry_that_succeeds_gives_its_tokens_back(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    # 30 calls each needing one retry cost 150 tokens in all, more than the budget holds, yet none is
    # refused: each successful retry refunds what it took.
    steps = [(500, b""), OK] * 30
    script = Script(*steps)
    client = make_client(script)
    for _ in range(30):
        await client.get_contact("c1")
    assert client.stats.retries == 30 and client.stats.retries_refused == 0


async def test_a_budget_of_zero_turns_retries_off_without_claiming_an_outage(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((500, {"message": "boom"}))
    with pytest.raises(errors.ServerError) as caught:
        await make_client(script, retry_budget=0).get_contact("c1")
    assert len(script.requests) == 1 and fake_time.sleeps == []
    assert "looks down" not in str(caught.value)


async def test_the_budget_never_lets_a_write_be_resent(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    script = Script((502, b""))
    with pytest.raises(errors.AmbiguousWriteError):
        await make_client(script).create_ticket(NEW_TICKET)
    assert len(script.requests) == 1


@pytest.mark.parametrize("capacity", [-1.0, float("nan"), float("inf")])
async def test_a_negative_or_non_finite_budget_is_refused(capacity: float) -> None:
    from klink_mcp.api._http import RetryBudget
    from klink_mcp.config import ConfigError

    with pytest.raises(ConfigError, match="retry budget"):
        RetryBudget(capacity)


async def test_a_refused_retry_flags_the_error_as_upstream_down(
    make_client: Callable[..., KlinkClient], fake_time: FakeTime
) -> None:
    client = make_client(Script(httpx2.ConnectError("connection refused")))
    flags: list[bool] = []
    for _ in range(6):
        with pytest.raises(errors.KlinkConnectionError) as caught:
            await client.list_tags()
        flags.append(caught.value.upstream_looks_down)
    assert flags == [False] * 5 + [True]
