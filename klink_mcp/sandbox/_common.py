"""Small shared pieces of the sandbox tenant: timestamps, ids, the API error type and body readers.

This module must not know about HTTP frameworks or sockets; it only shapes data the way the
K-LINK contract (`docs/klink-api.md`) does.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

# Seeded data is dated relative to this fixed instant, so the same seed gives the same tenant.
REFERENCE_NOW = datetime(2026, 11, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100


def iso(moment: datetime) -> str:
    """Format an instant the way K-LINK does: `2026-01-09T03:42:38.000000Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (a trailing `Z` allowed); naive values are taken as UTC.

    Raises:
        ValueError: the text is not an ISO-8601 timestamp.
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def uuid_from(rng: random.Random) -> str:
    """A version-4-shaped UUID drawn from `rng`, so seeded ids are reproducible."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class TenantClock:
    """A clock that never repeats: each reading is strictly later than the previous one.

    Records use `updatedAt` as a version, so two writes in the same microsecond (or a wall
    clock behind the seeded data) must still produce strictly increasing timestamps.
    """

    def __init__(self, floor: datetime, source: Callable[[], datetime] | None = None) -> None:
        self._last = floor
        self._source = source or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        candidate = self._source()
        if candidate.tzinfo is None:
            candidate = candidate.replace(tzinfo=UTC)
        if candidate <= self._last:
            candidate = self._last + ONE_MICROSECOND
        self._last = candidate
        return candidate

    def raise_floor(self, floor: datetime) -> None:
        """Never hand out an instant at or before `floor` (used after loading dated records)."""
        self._last = max(self._last, floor)


class ApiError(Exception):
    """An HTTP error answer of the tenant: `{"statusCode", "error", "message"}`."""

    def __init__(self, status: int, message: str | list[str], headers: Mapping[str, str] | None = None):
        super().__init__(message if isinstance(message, str) else "; ".join(message))
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message)


def error_body(status: int, message: str | list[str]) -> dict[str, Any]:
    """The NestJS-style error body the contract infers for every 4xx/5xx."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"statusCode": status, "error": phrase, "message": message}


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def bad_request(messages: list[str]) -> ApiError:
    return ApiError(400, messages)


def page_params(query: Mapping[str, str]) -> tuple[int, int]:
    """Read `page` (1-based) and `pageSize` (default 10, 1..100) from a query.

    Raises:
        ApiError: 400 when either is not an integer or out of range.
    """
    errors: list[str] = []
    page = _int_param(query, "page", 1, errors)
    size = _int_param(query, "pageSize", DEFAULT_PAGE_SIZE, errors)
    if page is not None and page < 1:
        errors.append("page must not be less than 1")
    if size is not None and size < 1:
        errors.append("pageSize must not be less than 1")
    if size is not None and size > MAX_PAGE_SIZE:
        errors.append(f"pageSize must not be greater than {MAX_PAGE_SIZE}")
    if errors:
        raise bad_request(errors)
    assert page is not None and size is not None
    return page, size


def _int_param(query: Mapping[str, str], name: str, default: int, errors: list[str]) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw.strip())
    except ValueError:
        errors.append(f"{name} must be an integer number")
        return None


def paged(
    items: list[Any], page: int, size: int, render: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """The paged envelope. `lastPage` is the page count, and at least 1 (an empty list has one empty page)."""
    total = len(items)
    chunk = items[(page - 1) * size : page * size]
    return {
        "total": total,
        "page": page,
        "pageSize": size,
        "lastPage": max(1, math.ceil(total / size)),
        "data": [render(item) for item in chunk] if render else chunk,
    }


class BodyReader:
    """Reads a JSON request body and collects class-validator-style messages instead of failing fast.

    The tenant rejects unknown top-level keys ("property x should not exist"), like a NestJS API
    with `forbidNonWhitelisted`, so a client sending a wrong key name finds out at once.
    """

    def __init__(self, body: Any, allowed: Iterable[str]) -> None:
        if not isinstance(body, dict):
            raise bad_request(["request body must be a JSON object"])
        self.data: dict[str, Any] = body
        self.errors: list[str] = []
        allowed_set = set(allowed)
        for key in body:
            if key not in allowed_set:
                self.errors.append(f"property {key} should not exist")

    def given(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, *, required: bool = False, nullable: bool = False, max_len: int = 5000) -> Any:
        """The string at `key` (stripped of nothing), None if absent/null and allowed."""
        if key not in self.data or (self.data[key] is None and nullable and not required):
            if required:
                self.errors.append(f"{key} should not be empty")
            return None
        value = self.data[key]
        if not isinstance(value, str):
            self.errors.append(f"{key} must be a string")
            return None
        if required and not value.strip():
            self.errors.append(f"{key} should not be empty")
            return None
        if len(value) > max_len:
            self.errors.append(f"{key} must be shorter than or equal to {max_len} characters")
            return None
        return value

    def choice(
        self, key: str, choices: Iterable[str], *, required: bool = False, nullable: bool = False
    ) -> Any:
        options = list(choices)
        if key not in self.data or (self.data[key] is None and nullable and not required):
            if required:
                self.errors.append(f"{key} should not be empty")
            return None
        value = self.data[key]
        if value not in options:
            self.errors.append(f"{key} must be one of the following values: {', '.join(options)}")
            return None
        return value

    def string_list(
        self, key: str, *, required: bool = False, check: Callable[[str], bool] | None = None, what: str = ""
    ) -> list[str] | None:
        if key not in self.data:
            if required:
                self.errors.append(f"{key} should not be empty")
            return None
        value = self.data[key]
        if not isinstance(value, list):
            self.errors.append(f"{key} must be an array")
            return None
        result: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.errors.append(f"each value in {key} must be a non-empty string")
                return None
            if check is not None and not check(item):
                self.errors.append(f"{key}.{index} must be {what}")
                return None
            result.append(item)
        return result

    def done(self) -> None:
        """Raises:
        ApiError: 400 with every collected message.
        """
        if self.errors:
            raise bad_request(self.errors)
