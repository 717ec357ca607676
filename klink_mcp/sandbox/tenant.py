"""The sandbox K-LINK tenant: in-memory state, the request core and the webhook-style listener hook.

`SandboxTenant` is the one implementation of the contract in `docs/klink-api.md`; the
in-process transport, the ASGI app and the loopback server are thin frontends over
`SandboxTenant.handle` (plus fault injection, see `faults.py` and `exchange.py`).

Conventions this sandbox fixes where the contract is silent (all [inferred]):

- Paged envelope `{total, page, pageSize, lastPage, data}`: `lastPage` is the page count and is
  at least 1 (zero items -> `lastPage: 1`, page 1 is an empty page). A page past the last one
  answers 200 with empty `data`. `pageSize` defaults to 10 (also for form fields, so a client
  must fetch every page), must be 1..100; `page` >= 1; otherwise 400.
- Auth is checked before routing: any request without `Authorization: Bearer <token>` (or, when
  `tenant.basic_auth` is set, `Authorization: Basic base64(user:password)`) gets 401, even for an
  unknown path. An unknown path or method answers 404 `Cannot <METHOD> <path>`.
- A non-empty body that is not JSON answers 400. Unknown query parameters are ignored.
- Timestamps: ISO-8601 UTC with microseconds and `Z`. Every write stamps `updatedAt` from a
  tenant clock that never repeats and never goes back, so `updatedAt` works as a version.
- Soft delete: DELETE sets `deletedAt`; the contact disappears from lists, detail (404), the
  social-platform lookup, ticket create and message send; its record stays in `tenant.contacts`.
- Ticket list filters: `status`, `priority` (validated, 400 on unknown values), `channel`,
  `keyword` (case-insensitive substring of title or description), `ticketNumber` (exact int),
  `contactId`, `assigneeId`; sorted by `ticketNumber` descending (`ignore_ticket_filters` turns
  them off, like a tenant without these inferred filters; `ignore_contact_keyword` likewise).
  Contact list `keyword` is a case-insensitive substring of name, e-mails, phones (digits also
  match ignoring punctuation) and `contactNumber`; contacts are sorted newest first.
- CX logs: `selectedDate` (`YYYY/MM/DD HH:mm:ss-YYYY/MM/DD HH:mm:ss`, inclusive at both ends)
  is read in the IANA zone of header `x-client-timezone` and matched against `startedDate`;
  sorted newest first. Missing/invalid range or zone -> 400.

Fixture file format (JSON object, every key optional; absent sections are generated from the
seed and stay consistent with the fixture's fields)::

    {
      "seed": 7,
      "contact_fields": [<form-field definition>, ...],   # contract shape; id/flags default
      "ticket_fields":  [<form-field definition>, ...],
      "tags":      [{"id"?, "name", "color"?}],
      "channels":  [{"id"?, "name", "type"}],
      "groups":    [{"id"?, "name", "description"?, "contactCount"?}],
      "categories": [{"id"?, "value", "childCategoryList"?: [...]}],   # a tree, or flat with parentId
      "agents":    [{"id"?, "name", "email"?}],
      "contacts":  [{"id"?, "name", "emails"?: [str], "phones"?: [str], "tags"?: [tag names],
                     "company"?: str, "customFields"?: {...}, any other contact key}],
      "tickets":   [{"id"?, "title", "contactId", "status"?, "priority"?, "tags"?: [tag ids or names],
                     "assigneeId"?, "customFields"?: {...}, any other ticket key}],
      "cx_logs":   [{"id"?, "startedDate", ...}]
    }

This module must not do network or socket I/O, and never writes the token anywhere.
"""

from __future__ import annotations

import base64
import copy
import gc
import hmac
import json
import logging
import os
import pickle
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

import anyio
from pydantic import SecretStr

from klink_mcp.sandbox._common import (
    REFERENCE_NOW,
    ApiError,
    TenantClock,
    error_body,
    iso,
    parse_iso,
    uuid_from,
)
from klink_mcp.sandbox.faults import FaultConfig
from klink_mcp.sandbox.fields import normalize_fields
from klink_mcp.sandbox.routes import ApiRequest, Router
from klink_mcp.sandbox.seed import DEFAULT_SEED, Dataset, build_dataset, contact_summary

logger = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
JSON_HEADERS: tuple[tuple[str, str], ...] = (("content-type", "application/json; charset=utf-8"),)
_ROUTER = Router()


@dataclass
class RecordedRequest:
    """One HTTP request that reached the tenant. `status` is None when no answer was sent."""

    method: str
    path: str
    query: dict[str, str]
    json: Any | None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass(slots=True)
class HandledResponse:
    status: int
    body: bytes
    headers: list[tuple[str, str]]


def encode_json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers fit for a record or a log line: the Authorization value never kept."""
    return {k: ("[redacted]" if k == "authorization" else v) for k, v in headers.items()}


class SandboxTenant:
    """An in-memory K-LINK tenant. Build one with `seeded()` or `from_fixture()`.

    State is plain dicts keyed by id (`contacts`, `tickets`, `tags`, `channels`, `groups`,
    `categories`, `agents`, `companies`, `cx_logs`, `messages`) plus the two ordered lists of
    form-field definitions (`contact_fields`, `ticket_fields`). Tests may read it freely.
    """

    def __init__(
        self,
        *,
        seed: int = DEFAULT_SEED,
        fixture: Mapping[str, Any] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Raises:
        ValueError: the fixture is malformed.
        """
        data, latest = _cached_dataset(seed, fixture)
        self.seed = seed
        self.contact_fields = data.contact_fields
        self.ticket_fields = data.ticket_fields
        self.tags = data.tags
        self.channels = data.channels
        self.groups = data.groups
        self.categories = data.categories
        self.agents = data.agents
        self.companies = data.companies
        self.contacts = data.contacts
        self.tickets = data.tickets
        self.cx_logs = data.cx_logs
        self.messages = data.messages
        self.requests: list[RecordedRequest] = []
        # None keeps every request (tests count them); a long-running demo server sets a cap.
        self.max_recorded_requests: int | None = None
        self.faults = FaultConfig()
        # Behave like a real tenant that does not know the [inferred] list filters: True answers
        # `GET /tickets` with the unfiltered listing (status, priority, channel, keyword, ticketNumber,
        # contactId, assigneeId are ignored) and `GET /contacts` as if no `keyword` was given;
        # `ignore_contact_path` answers `GET /tickets/contact/{id}` with every contact's tickets.
        self.ignore_ticket_filters = False
        self.ignore_contact_keyword = False
        self.ignore_contact_path = False
        # K-LINK also accepts Basic authentication; None = the sandbox answers Basic with 401.
        self.basic_auth: tuple[str, SecretStr] | None = None
        # Every wait of the tenant (latency, slow bodies) goes through this; tests may replace it.
        self.sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self.id_rng = random.Random(f"klink-sandbox:{seed}:runtime-ids")
        self.api_user_record = {"id": uuid_from(self.id_rng), "name": "API Token (sandbox)", "email": None}
        self._listeners: list[Listener] = []
        self._started_cache: dict[str, tuple[str, datetime]] = {}
        self.clock = TenantClock(REFERENCE_NOW, clock)
        self.clock.raise_floor(latest)

    # ------------------------------------------------------------------------------ constructors

    @classmethod
    def seeded(
        cls, seed: int = DEFAULT_SEED, *, clock: Callable[[], datetime] | None = None
    ) -> SandboxTenant:
        """The default tenant, generated deterministically from `seed`."""
        return cls(seed=seed, clock=clock)

    @classmethod
    def from_fixture(
        cls,
        path: str | os.PathLike[str],
        *,
        seed: int | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> SandboxTenant:
        """A tenant from a JSON fixture file (format in the module docstring).

        Raises:
            OSError: the file cannot be read.
            ValueError: the file is not JSON or does not follow the fixture format.
        """
        text = Path(path).read_text(encoding="utf-8")
        try:
            fixture = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"fixture {path} is not valid JSON: {exc}") from None
        if not isinstance(fixture, dict):
            raise ValueError(f"fixture {path} must hold a JSON object")
        chosen = seed if seed is not None else fixture.get("seed", DEFAULT_SEED)
        if not isinstance(chosen, int):
            raise ValueError(f"fixture {path}: seed must be an integer")
        try:
            return cls(seed=chosen, fixture=fixture, clock=clock)
        except ValueError as exc:
            raise ValueError(f"fixture {path}: {exc}") from None

    # ------------------------------------------------------------------------------ public hooks

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        self.requests.clear()

    def set_form_fields(self, kind: Literal["contact", "ticket"], fields: list[dict[str, Any]]) -> None:
        """Replace the contact or ticket form-field definitions (existing values are left alone).

        Raises:
            ValueError: an unknown kind or a malformed definition.
        """
        if kind not in ("contact", "ticket"):
            raise ValueError(f"kind must be 'contact' or 'ticket', got {kind!r}")
        normalized = normalize_fields(copy.deepcopy(fields), self.id_rng, f"{kind}_fields")
        if kind == "contact":
            self.contact_fields = normalized
        else:
            self.ticket_fields = normalized

    def add_listener(self, cb: Listener) -> None:
        """Call `cb(event_name, data)` on every event (contact.create, contact.update,
        message.inbound, message.outbound, room.solved). `data` is a copy the callback may keep.
        """
        self._listeners.append(cb)

    def remove_listener(self, cb: Listener) -> None:
        """Stop calling `cb` (no error if it was not registered)."""
        if cb in self._listeners:
            self._listeners.remove(cb)

    def simulate_inbound_message(
        self, contact_id: str, text: str, channel: str | None = None
    ) -> dict[str, Any]:
        """A customer writes in: store the message and emit `message.inbound`; returns the payload.

        Raises:
            KeyError: no live contact has this id.
        """
        contact = self.contacts.get(contact_id)
        if contact is None or contact.get("deletedAt"):
            raise KeyError(f"no live contact with id {contact_id!r}")
        payload: dict[str, Any] = {
            "id": self.new_id(),
            "contactId": contact_id,
            "channel": channel or contact.get("channel"),
            "messageType": "text",
            "message": text,
            "createdAt": self.stamp(),
        }
        self.messages[payload["id"]] = {**payload, "direction": "inbound"}
        self.emit("message.inbound", payload)
        return dict(payload)

    # ------------------------------------------------------------------- helpers for the routes

    def emit(self, event: str, data: Mapping[str, Any]) -> None:
        """Deliver an event to every listener; a failing listener is logged, never breaks the API."""
        if not self._listeners:
            return
        snapshot = copy.deepcopy(dict(data))
        for cb in list(self._listeners):
            try:
                cb(event, snapshot)
            except Exception:
                logger.exception("sandbox listener failed on %s", event)

    def stamp(self) -> str:
        return iso(self.clock.now())

    def new_id(self) -> str:
        return uuid_from(self.id_rng)

    def api_user(self) -> dict[str, Any]:
        """The user behind the API token: the `creator` of tickets created through the API."""
        return self.api_user_record

    def next_contact_number(self) -> str:
        numbers = [
            int(m.group(1))
            for c in self.contacts.values()
            if (m := re.fullmatch(r"C(\d+)", str(c.get("contactNumber"))))
        ]
        return f"C{max(numbers, default=100000) + 1}"

    def next_ticket_number(self) -> int:
        return max((int(t.get("ticketNumber") or 0) for t in self.tickets.values()), default=1000) + 1

    def company_named(self, name: str) -> dict[str, Any]:
        for company in self.companies.values():
            if str(company["name"]).lower() == name.lower():
                return company
        company = {"id": self.new_id(), "name": name, "domain": None}
        self.companies[company["id"]] = company
        return company

    def tags_named(self, names: Iterable[str], *, create: bool) -> list[dict[str, Any]]:
        """Tags for these names (case-insensitive, de-duplicated, in order); unknown ones created if asked."""
        by_name = {str(t["name"]).lower(): t for t in self.tags.values()}
        result: list[dict[str, Any]] = []
        for raw in names:
            name = raw.strip()
            tag = by_name.get(name.lower())
            if tag is None:
                if not create:
                    continue
                stamp = self.stamp()
                tag = {
                    "id": self.new_id(),
                    "name": name,
                    "color": "#8395a7",
                    "createdAt": stamp,
                    "updatedAt": stamp,
                }
                self.tags[tag["id"]] = tag
                by_name[name.lower()] = tag
            if all(t["id"] != tag["id"] for t in result):
                result.append(tag)
        return result

    def refresh_contact_copies(self, contact: Mapping[str, Any]) -> None:
        """Tickets and CX logs embed a contact summary: keep it in step with the contact."""
        summary = contact_summary(contact)
        for record in (*self.tickets.values(), *self.cx_logs.values()):
            if record.get("contactId") == contact["id"]:
                record["contact"] = dict(summary)

    def cx_started(self, log: Mapping[str, Any]) -> datetime:
        raw = str(log["startedDate"])
        cached = self._started_cache.get(log["id"])
        if cached is None or cached[0] != raw:
            cached = (raw, parse_iso(raw))
            self._started_cache[log["id"]] = cached
        return cached[1]

    # -------------------------------------------------------------------------- the request core

    def handle(
        self,
        method: str,
        raw_path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        payload: Any,
        *,
        token: SecretStr,
        body_is_json: bool = True,
    ) -> HandledResponse:
        """Answer one request (auth, routing, validation, the state change). Never raises.

        `raw_path` is the path as sent (percent-encoded segments are decoded one by one, so an id
        holding `%2F` stays one segment); `headers` have lower-case names.
        """
        try:
            status, body = self._dispatch(
                method.upper(), raw_path, query, headers, payload, token, body_is_json
            )
        except ApiError as exc:
            return HandledResponse(exc.status, encode_json(exc.body()), [*JSON_HEADERS, *exc.headers.items()])
        except Exception:
            logger.exception("sandbox bug while handling %s %s", method, raw_path)
            return HandledResponse(
                500, encode_json(error_body(500, "Internal server error")), list(JSON_HEADERS)
            )
        return HandledResponse(status, encode_json(body), list(JSON_HEADERS))

    def _dispatch(
        self,
        method: str,
        raw_path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        payload: Any,
        token: SecretStr,
        body_is_json: bool,
    ) -> tuple[int, Any]:
        if not _authorized(headers.get("authorization", ""), token, self.basic_auth):
            challenge = 'Bearer, Basic realm="K-LINK sandbox"' if self.basic_auth else "Bearer"
            raise ApiError(401, "Unauthorized", {"www-authenticate": challenge})
        segments = [unquote(s) for s in raw_path.strip("/").split("/")]
        found = _ROUTER.match(method, segments)
        if found is None:
            raise ApiError(404, f"Cannot {method} {unquote(raw_path)}")
        if not body_is_json:
            raise ApiError(400, ["request body must be valid JSON"])
        handler, params = found
        request = ApiRequest(method, raw_path, params, dict(query), dict(headers), payload)
        return handler(self, request)


_DATASETS: dict[str, tuple[bytes, datetime]] = {}
_DATASET_CACHE_SIZE = 8


def _cached_dataset(seed: int, fixture: Mapping[str, Any] | None) -> tuple[Dataset, datetime]:
    """A fresh copy of the dataset for (seed, fixture), and the latest timestamp it holds.

    Generating a tenant costs tens of milliseconds and every test builds one; a pickled copy
    of the deterministic result restores in a few. Each tenant gets its own objects.
    """
    key = f"{seed}|{json.dumps(fixture, sort_keys=True, default=str) if fixture is not None else ''}"
    cached = _DATASETS.get(key)
    if cached is None:
        built = build_dataset(seed, fixture)
        cached = (pickle.dumps(built, protocol=pickle.HIGHEST_PROTOCOL), _latest_stamp(built))
        if len(_DATASETS) >= _DATASET_CACHE_SIZE:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = cached
    # Unpickling thousands of small dicts would trigger several collections for nothing.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        data: Dataset = pickle.loads(cached[0])  # noqa: S301 - bytes we pickled ourselves, in this process
    finally:
        if gc_was_enabled:
            gc.enable()
    return data, cached[1]


def _latest_stamp(data: Dataset) -> datetime:
    latest = REFERENCE_NOW
    for collection in (data.contacts, data.tickets, data.tags, data.channels):
        for record in collection.values():
            for key in ("updatedAt", "createdAt", "deletedAt"):
                value = record.get(key)
                if isinstance(value, str):
                    try:
                        latest = max(latest, parse_iso(value))
                    except ValueError:
                        continue
    return latest


def _authorized(header: str, token: SecretStr, basic: tuple[str, SecretStr] | None) -> bool:
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if not presented:
        return False
    if scheme.lower() == "basic" and basic is not None:
        user, password = basic
        expected = base64.b64encode(f"{user}:{password.get_secret_value()}".encode()).decode("ascii")
        return hmac.compare_digest(presented.encode(), expected.encode())
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.encode(), token.get_secret_value().encode())


def parse_query(query_string: str | bytes) -> dict[str, str]:
    """Decode a query string into a dict (the last value wins for repeated keys)."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    return dict(parse_qsl(query_string, keep_blank_values=True))


def parse_body(body: bytes) -> tuple[Any, bool]:
    """(decoded JSON or None, whether the body was acceptable). An empty body is acceptable."""
    if not body.strip():
        return None, True
    try:
        return json.loads(body), True
    except (ValueError, UnicodeDecodeError):
        return None, False
