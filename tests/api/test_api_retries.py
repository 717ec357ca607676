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
    assert len(script.requests) == 3
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert [a.retrying for a in attempts] == [True, True, False]
    assert len(fake_time.sleeps) == 2
    assert client.stats.attempts == 3
    assert client.stats.retries == 2
    assert client.stats.max_attempts_per_call == 3


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
