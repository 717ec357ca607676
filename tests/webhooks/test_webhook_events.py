"""What counts as a webhook event, how it is identified, and how signatures are checked."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klink_mcp.webhooks.events import (
    KNOWN_EVENTS,
    InvalidEvent,
    compute_signature,
    format_timestamp,
    parse_event,
    verify_signature,
)

from ._support import event_dict


@pytest.mark.parametrize(
    ("name", "expected_contact"),
    [
        ("contact.create", "contact-1"),
        ("contact.update", "contact-1"),
        ("message.inbound", "contact-1"),
        ("message.outbound", "contact-1"),
        ("room.solved", "contact-1"),
    ],
)
def test_documented_events_parse_and_name_their_contact(name: str, expected_contact: str) -> None:
    event = parse_event(event_dict(name))
    assert event.event == name
    assert event.contact_id == expected_contact
    assert event.timestamp == datetime(2026, 1, 9, 3, 42, 38, tzinfo=UTC)
    assert len(event.dedupe_key) == 64


def test_the_five_known_events_are_the_documented_ones() -> None:
    assert set(KNOWN_EVENTS) == {
        "contact.create",
        "contact.update",
        "message.inbound",
        "message.outbound",
        "room.solved",
    }


def test_a_well_formed_unknown_event_name_is_accepted_for_forward_compatibility() -> None:
    event = parse_event(
        {"event": "ticket.assigned", "timestamp": "2026-01-09T00:00:00Z", "data": {"contactId": 7}}
    )
    assert event.event == "ticket.assigned"
    assert event.contact_id == "7"


@pytest.mark.parametrize(
    "value",
    [
        [],
        "contact.create",
        None,
        {"timestamp": "2026-01-09T00:00:00Z", "data": {}},
        {"event": "", "timestamp": "2026-01-09T00:00:00Z", "data": {}},
        {"event": "Contact.Create", "timestamp": "2026-01-09T00:00:00Z", "data": {}},
        {"event": "contact", "timestamp": "2026-01-09T00:00:00Z", "data": {}},
        {"event": "contact.create; drop table", "timestamp": "2026-01-09T00:00:00Z", "data": {}},
        {"event": "contact.create", "data": {}},
        {"event": "contact.create", "timestamp": 1736394158, "data": {}},
        {"event": "contact.create", "timestamp": "yesterday", "data": {}},
        {"event": "contact.create", "timestamp": "0001-01-01T00:00:00+01:00", "data": {}},
        {"event": "contact.create", "timestamp": "2026-01-09T00:00:00Z"},
        {"event": "contact.create", "timestamp": "2026-01-09T00:00:00Z", "data": [1, 2]},
        {"event": "contact.create", "timestamp": "2026-01-09T00:00:00Z", "data": {"x": float("nan")}},
    ],
    ids=lambda v: repr(v)[:40],
)
def test_values_that_are_not_events_are_rejected(value: Any) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(value)


def test_dedupe_key_ignores_key_order_and_whitespace_of_a_reserialised_redelivery() -> None:
    original = event_dict("contact.update")
    reordered = json.loads(
        json.dumps({"data": dict(reversed(list(original["data"].items()))), **original}, indent=2)
    )
    assert parse_event(original).dedupe_key == parse_event(reordered).dedupe_key


@pytest.mark.parametrize("field", ["event", "timestamp", "data"])
def test_dedupe_key_changes_when_any_field_changes(field: str) -> None:
    original = event_dict("contact.update")
    changed = dict(original)
    changed[field] = {
        "event": "contact.create",
        "timestamp": "2026-01-09T03:42:38.000001Z",
        "data": {**original["data"], "name": "Other"},
    }[field]
    assert parse_event(original).dedupe_key != parse_event(changed).dedupe_key


def test_a_timestamp_without_zone_is_utc_and_normalised_to_sortable_text() -> None:
    event = parse_event(event_dict(timestamp="2026-01-09 10:00:00"))
    assert event.timestamp_text == "2026-01-09T10:00:00.000000Z"
    shifted = parse_event(event_dict(timestamp="2026-01-09T17:00:00+07:00"))
    assert shifted.timestamp_text == "2026-01-09T10:00:00.000000Z"
    assert format_timestamp(datetime(5, 1, 1)) == "0005-01-01T00:00:00.000000Z"


def test_signature_check_accepts_either_hex_case_and_a_sha256_prefix() -> None:
    body = b'{"event":"contact.create"}'
    signature = compute_signature(b"secret", body)
    assert len(signature) == 64
    assert verify_signature(b"secret", body, signature)
    assert verify_signature(b"secret", body, signature.upper())
    assert verify_signature(b"secret", body, "sha256=" + signature)


@pytest.mark.parametrize("provided", [None, "", "0" * 64, "zz", "é" * 64, "sha256="])
def test_signature_check_rejects_anything_else_without_raising(provided: str | None) -> None:
    assert not verify_signature(b"secret", b"{}", provided)


def test_signature_of_a_tampered_body_does_not_verify() -> None:
    signature = compute_signature(b"secret", b'{"a":1}')
    assert not verify_signature(b"secret", b'{"a":2}', signature)
    assert not verify_signature(b"other", b'{"a":1}', signature)


def test_the_event_repr_does_not_show_customer_data() -> None:
    event = parse_event(event_dict(data={"id": "m1", "contactId": "c1", "message": "my card is 4111"}))
    assert "4111" not in repr(event)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "event": st.one_of(st.sampled_from(KNOWN_EVENTS), st.text(max_size=30), json_values),
                "timestamp": st.one_of(
                    st.datetimes().map(datetime.isoformat), st.text(max_size=40), json_values
                ),
                "data": st.one_of(
                    st.dictionaries(st.text(max_size=10), json_values, max_size=5), json_values
                ),
            },
        ),
    )
)
def test_parsing_arbitrary_json_either_yields_an_event_or_raises_invalid_event(value: Any) -> None:
    try:
        event = parse_event(value)
    except InvalidEvent:
        return
    assert event.timestamp.tzinfo is UTC
    assert event.timestamp_text.endswith("Z")
