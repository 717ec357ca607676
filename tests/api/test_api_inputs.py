"""Bad input gets a clear KlinkInputError and sends nothing; good ids are URL-quoted into one segment."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klink_mcp.api import errors
from klink_mcp.api._http import quote_path_id
from klink_mcp.api.client import KlinkClient

from .conftest import Script, contact_body, paged

pytestmark = pytest.mark.anyio

HOSTILE_IDS = [
    "",
    " ",
    "  \t",
    "../x",
    "a?b=c",
    "a/b",
    "%2e%2e",
    ".",
    "..",
    "a#b",
    "a\\b",
    "a\nb",
    "a\x00b",
    " c1",
    "c1 ",
    "x" * 257,
    "a\x7fb",
]

# Every method that takes an id, called with that id.
ID_CALLS: dict[str, Callable[[KlinkClient, Any], Awaitable[object]]] = {
    "get_contact": lambda c, i: c.get_contact(i),
    "update_contact": lambda c, i: c.update_contact(i, {"name": "x"}),
    "delete_contact": lambda c, i: c.delete_contact(i),
    "update_contact_tags": lambda c, i: c.update_contact_tags(i, action="MERGE", tags=["vip"]),
    "find_contacts_by_social_platform_id": lambda c, i: c.find_contacts_by_social_platform_id(i),
    "list_contact_tickets": lambda c, i: c.list_contact_tickets(i),
    "update_ticket": lambda c, i: c.update_ticket(i, {"title": "x"}),
    "update_ticket_status": lambda c, i: c.update_ticket_status(i, "resolved"),
    "send_message": lambda c, i: c.send_message(contact_id=i, message="hi"),
}


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
@pytest.mark.parametrize("method", sorted(ID_CALLS))
async def test_empty_or_hostile_ids_are_refused_before_any_request(
    make_client: Callable[..., KlinkClient], method: str, bad_id: str
) -> None:
    script = Script((200, contact_body()))
    with pytest.raises(errors.KlinkInputError) as caught:
        await ID_CALLS[method](make_client(script), bad_id)
    assert caught.value.field in {"contact_id", "ticket_id", "social_platform_id"}
    assert caught.value.field in str(caught.value)
    assert script.requests == []


@pytest.mark.parametrize("bad_id", [None, 5, 1.5, b"c1", ["c1"]])
async def test_ids_of_the_wrong_type_are_refused(
    make_client: Callable[..., KlinkClient], bad_id: object
) -> None:
    script = Script((200, contact_body()))
    with pytest.raises(errors.KlinkInputError, match="must be a string id"):
        await make_client(script).get_contact(bad_id)  # type: ignore[arg-type]
    assert script.requests == []


WRONG_CALLS: list[tuple[str, str, Callable[[KlinkClient], Awaitable[object]]]] = [
    ("page zero", "page", lambda c: c.list_contacts(page=0)),
    ("page as text", "page", lambda c: c.list_contacts(page="2")),  # type: ignore[arg-type]
    ("page as bool", "page", lambda c: c.list_tickets(page=True)),
    ("page_size too big", "page_size", lambda c: c.list_tickets(page_size=101)),
    ("page_size zero", "page_size", lambda c: c.get_contact_form_fields(page_size=0)),
    ("page_size float", "page_size", lambda c: c.list_contact_tickets("c1", page_size=10.0)),  # type: ignore[arg-type]
    ("keyword not text", "keyword", lambda c: c.list_contacts(keyword=5)),  # type: ignore[arg-type]
    ("ticket_number as text", "ticket_number", lambda c: c.list_tickets(ticket_number="5")),  # type: ignore[arg-type]
    ("status filter not text", "status", lambda c: c.list_tickets(status=["open"])),  # type: ignore[arg-type]
    ("body a list", "body", lambda c: c.create_contact([{"name": "x"}])),  # type: ignore[arg-type]
    ("body a string", "body", lambda c: c.create_ticket("title")),  # type: ignore[arg-type]
    ("body not JSON", "body", lambda c: c.update_contact("c1", {"when": datetime.now(UTC)})),
    ("empty contact update", "body", lambda c: c.update_contact("c1", {})),
    ("empty ticket update", "body", lambda c: c.update_ticket("t1", {})),
    ("body with NaN", "body", lambda c: c.update_ticket("t1", {"cf_amount": float("nan")})),
    ("body non-text keys", "body", lambda c: c.create_contact({1: "x"})),  # type: ignore[dict-item]
    ("unknown tag action", "action", lambda c: c.update_contact_tags("c1", action="ADD", tags=["a"])),  # type: ignore[arg-type]
    ("tags a string", "tags", lambda c: c.update_contact_tags("c1", action="MERGE", tags="vip")),  # type: ignore[arg-type]
    ("empty tag name", "tags", lambda c: c.update_contact_tags("c1", action="MERGE", tags=["vip", " "])),
    ("empty status", "status", lambda c: c.update_ticket_status("t1", "")),
    ("channel without name", "name", lambda c: c.create_channel(name="", type="custom")),
    ("channel type not text", "type", lambda c: c.create_channel(name="x", type=None)),  # type: ignore[arg-type]
    ("empty message", "message", lambda c: c.send_message(contact_id="c1", message="  ")),
    ("message not text", "message", lambda c: c.send_message(contact_id="c1", message=None)),  # type: ignore[arg-type]
    (
        "created_at as text",
        "created_at",
        lambda c: c.send_message(contact_id="c1", message="hi", created_at="now"),
    ),  # type: ignore[arg-type]
    ("max_items zero", "max_items", lambda c: c.fetch_all_pages(c.get_contact_form_fields, max_items=0)),
]


@pytest.mark.parametrize(("case", "field", "call"), WRONG_CALLS, ids=[case for case, _, _ in WRONG_CALLS])
async def test_wrong_types_and_values_are_refused_before_any_request(
    make_client: Callable[..., KlinkClient],
    case: str,
    field: str,
    call: Callable[[KlinkClient], Awaitable[object]],
) -> None:
    script = Script((200, paged([])))
    with pytest.raises(errors.KlinkInputError) as caught:
        await call(make_client(script))
    assert caught.value.field == field
    assert script.requests == []


START = datetime(2026, 10, 1, 0, 0, 0)
END = datetime(2026, 10, 31, 23, 59, 0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"start": END, "end": START, "timezone": "Asia/Singapore"}, "end"),
        ({"start": START, "end": END, "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"start": START, "end": END, "timezone": "../../etc/passwd"}, "timezone"),
        ({"start": START, "end": END, "timezone": ""}, "timezone"),
        ({"start": START, "end": END, "timezone": 8}, "timezone"),
        ({"start": "2026-10-01", "end": END, "timezone": "UTC"}, "start"),
        ({"start": START, "end": END, "timezone": "UTC", "page_size": 500}, "page_size"),
    ],
)
async def test_a_bad_cx_log_range_or_zone_is_refused_before_any_request(
    make_client: Callable[..., KlinkClient], kwargs: dict[str, Any], field: str
) -> None:
    script = Script((200, {"requestId": "r", "cxLogs": paged([])}))
    with pytest.raises(errors.KlinkInputError) as caught:
        await make_client(script).list_cx_logs(**kwargs)
    assert caught.value.field == field
    assert script.requests == []


async def test_cx_log_range_is_wall_time_in_the_zone_and_aware_times_are_converted(
    make_client: Callable[..., KlinkClient],
) -> None:
    script = Script((200, {"requestId": "r", "cxLogs": paged([{"id": "x1"}])}))
    client = make_client(script)
    await client.list_cx_logs(start=START, end=END, timezone="Asia/Singapore")
    aware_start = datetime(2026, 9, 30, 16, 0, tzinfo=UTC)  # = 2026-10-01 00:00 in Singapore
    aware_end = datetime(2026, 10, 31, 23, 59, tzinfo=timezone(timedelta(hours=8)))
    await client.list_cx_logs(
        start=aware_start, end=aware_end, timezone="Asia/Singapore", page=2, page_size=50
    )
    for sent in script.requests:
        assert sent.url.params["selectedDate"] == "2026/10/01 00:00:00-2026/10/31 23:59:00"
        assert sent.headers["x-client-timezone"] == "Asia/Singapore"
    assert script.requests[1].url.params["page"] == "2"
    assert script.requests[1].url.params["pageSize"] == "50"


async def test_send_message_stamps_created_at_in_utc_milliseconds(
    make_client: Callable[..., KlinkClient],
) -> None:
    script = Script((200, {"status": 200, "message": "Message sent successfully", "data": {"id": "m1"}}))
    when = datetime(2026, 1, 8, 23, 3, 39, 923456, tzinfo=timezone(timedelta(hours=7)))
    sent = await make_client(script).send_message(contact_id="c1", message="Hello", created_at=when)
    assert sent.id == "m1"
    assert json.loads(script.requests[0].content) == {
        "contactId": "c1",
        "messageType": "text",
        "message": "Hello",
        "createdAt": "2026-01-08T16:03:39.923Z",
    }


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("c1", "/api/v1/contacts/c1"),
        ("a b", "/api/v1/contacts/a%20b"),
        ("Ünïcode", "/api/v1/contacts/%C3%9Cn%C3%AFcode"),
        ("a;b=c&d", "/api/v1/contacts/a%3Bb%3Dc%26d"),
        ("...", "/api/v1/contacts/..."),
    ],
)
async def test_good_ids_are_url_quoted_into_one_path_segment(
    make_client: Callable[..., KlinkClient], raw: str, path: str
) -> None:
    script = Script((200, contact_body(raw)))
    contact = await make_client(script).get_contact(raw)
    assert contact.id == raw
    assert script.requests[0].url.raw_path.decode() == path


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_text_id_is_either_refused_or_quoted_into_a_single_safe_segment(value: str) -> None:
    try:
        quoted = quote_path_id(value, field="contact_id")
    except errors.KlinkInputError as exc:
        assert exc.field == "contact_id"
        return
    assert "/" not in quoted and "?" not in quoted and "#" not in quoted
    assert unquote(quoted) == value
    assert value.strip() == value and value not in {".", ".."}
