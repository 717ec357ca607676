"""K-LINK webhook events: what counts as one, how it is identified, and how it is signed.

A delivery body is `{"event": "contact.create", "timestamp": "...", "data": {...}}` (see "Webhooks"
in the API contract). `parse_event` turns a decoded JSON value into a `KlinkEvent` or raises
`InvalidEvent`; it is the single definition of "an event" used by the receiver, the store and the
emitter, so they cannot disagree.

Decisions:

- **Unknown event names are accepted** when well formed (`word.word`, lower case). K-LINK publishes
  only some of its event names; refusing a new one would make the sender retry it forever, and
  storing it loses nothing. `KNOWN_EVENTS` lists the five this project understands.
- **`timestamp` is required** and must be ISO-8601; a value without a zone is read as UTC. It is
  normalised to `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), which sorts lexicographically in time order.
- **Dedupe key** = SHA-256 of the canonical JSON (sorted keys, no whitespace, UTF-8) of
  `{event, timestamp, data}` as received. No event ids are documented, so identity is the content:
  a redelivery of the same event is recognised even if the sender re-serialises it with other key
  order or whitespace, and two events that differ in any field are never merged. Merging on
  `data.id + event + timestamp` was rejected: it would silently drop a second, different payload
  that happens to share those three values (data loss), whereas the content hash can at worst keep
  a duplicate if a sender re-stamps `timestamp` on redelivery (harmless, and visible).
- **contact_id** is derived: `data.id` for `contact.*`, `data.contactId` for `message.*`,
  `room.solved` and any other event.

This module must not do I/O, log payloads (they carry customer data), or import `mcp`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

__all__ = [
    "KNOWN_EVENTS",
    "EventType",
    "InvalidEvent",
    "KlinkEvent",
    "compute_signature",
    "contact_id_of",
    "dedupe_key_of",
    "format_timestamp",
    "parse_event",
    "parse_timestamp",
    "verify_signature",
]

EventType = Literal["contact.create", "contact.update", "message.inbound", "message.outbound", "room.solved"]
KNOWN_EVENTS: Final[tuple[str, ...]] = get_args(EventType)

_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}(?:\.[a-z][a-z0-9_]{0,31}){1,3}")
_MAX_TIMESTAMP_LEN = 64
_MAX_CONTACT_ID_LEN = 200


class InvalidEvent(ValueError):
    """The value is not a K-LINK webhook event. The message names the problem, never the payload."""


@dataclass(frozen=True, slots=True)
class KlinkEvent:
    """One validated webhook event, not yet stored."""

    event: str
    timestamp: datetime  # aware, UTC
    data: dict[str, Any] = field(repr=False)  # customer data: kept out of reprs and logs
    dedupe_key: str
    contact_id: str | None

    @property
    def timestamp_text(self) -> str:
        """The normalised timestamp (`YYYY-MM-DDTHH:MM:SS.ffffffZ`)."""
        return format_timestamp(self.timestamp)


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 timestamp; a value without a zone is taken as UTC. Returns an aware UTC datetime.

    Raises:
        InvalidEvent: not an ISO-8601 date-time.
    """
    if not value or len(value) > _MAX_TIMESTAMP_LEN:
        raise InvalidEvent("timestamp must be a non-empty ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("timestamp is not ISO-8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise InvalidEvent("timestamp is out of range") from None


def format_timestamp(value: datetime) -> str:
    """Format an aware (or naive = UTC) datetime as `YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    v = value.astimezone(UTC)
    # Not strftime: "%Y" does not zero-pad years below 1000 on every platform, which would break ordering.
    date = f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
    return f"{date}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}Z"


def _canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def dedupe_key_of(event: str, timestamp: str, data: Mapping[str, Any]) -> str:
    """An event's identity: hex SHA-256 of the canonical JSON of `{event, timestamp, data}` as received."""
    return hashlib.sha256(_canonical_json({"event": event, "timestamp": timestamp, "data": data})).hexdigest()


def contact_id_of(event: str, data: Mapping[str, Any]) -> str | None:
    """The contact an event is about: `data.id` for contact.* events, `data.contactId` otherwise."""
    value = data.get("id") if event.startswith("contact.") else data.get("contactId")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and 0 < len(value) <= _MAX_CONTACT_ID_LEN:
        return value
    return None


def parse_event(value: Any) -> KlinkEvent:
    """Validate a decoded JSON value as a webhook event.

    Raises:
        InvalidEvent: not an object, or `event`/`timestamp`/`data` missing or of the wrong shape.
    """
    if not isinstance(value, Mapping):
        raise InvalidEvent("an event must be a JSON object")
    name = value.get("event")
    if not isinstance(name, str) or _EVENT_NAME.fullmatch(name) is None:
        raise InvalidEvent("'event' must be a name like 'contact.create'")
    raw_timestamp = value.get("timestamp")
    if not isinstance(raw_timestamp, str):
        raise InvalidEvent("'timestamp' must be an ISO-8601 string")
    timestamp = parse_timestamp(raw_timestamp)
    data = value.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEvent("'data' must be a JSON object")
    data = dict(data)
    try:
        key = dedupe_key_of(name, raw_timestamp, data)
    except (TypeError, ValueError):  # NaN/Infinity or a non-JSON value handed in by a Python caller
        raise InvalidEvent("'data' must be plain JSON") from None
    return KlinkEvent(
        event=name, timestamp=timestamp, data=data, dedupe_key=key, contact_id=contact_id_of(name, data)
    )


def compute_signature(secret: bytes, body: bytes) -> str:
    """The `x-signature` value for a body: lower-case hex HMAC-SHA256 with the webhook's signing secret."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, provided: str | None) -> bool:
    """Whether `provided` is the signature of `body`, compared in constant time.

    Accepts upper- or lower-case hex and an optional `sha256=` prefix (as some senders add).
    """
    if not provided:
        return False
    candidate = provided.strip()
    if candidate[:7].lower() == "sha256=":
        candidate = candidate[7:]
    expected = compute_signature(secret, body).encode("ascii")
    # Encode leniently: a header with non-ASCII bytes must compare unequal, not raise.
    return hmac.compare_digest(expected, candidate.lower().encode("utf-8", "replace"))
