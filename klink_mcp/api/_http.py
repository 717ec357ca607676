"""The one transport layer of the K-LINK SDK: everything between "call operation X" and parsed JSON.

It owns, in one place: base URL + catalogue paths, `Authorization: Bearer`, `User-Agent`, `Accept`,
JSON encoding/decoding, validating and URL-quoting path ids (refused before any request), timeouts and the
per-call deadline, retries with backoff, the status -> exception map, tolerant error-body parsing and the
unwrapping of K-LINK's many response envelopes.

Retry rules (design.md pattern 3):
- An attempt is repeated only for an idempotent operation (see `catalog.Operation.idempotent`) after a
  connect error, a read/write timeout, a dropped connection, 408, 429 or 5xx; at most `max_attempts`
  (5 by default: at 20% independent transient faults, 0.2^5 = 0.03% of reads still fail).
- A non-idempotent operation (POST) is repeated ONLY when the failure proves nothing was sent
  (ConnectError, ConnectTimeout, PoolTimeout: no connection existed). Any other failure after its bytes
  may have left - read timeout, disconnect, the deadline, a 5xx - raises `AmbiguousWriteError`; a 4xx
  (incl. 429) is a refusal and raises the mapped error without a retry.
- Waits: full-jitter exponential backoff (uniform(0, min(8, 0.5 * 2**(n-1))) s), or the server's
  `Retry-After` (seconds or HTTP date) when given. A `Retry-After` above 60 s is not waited for: the error
  is raised with `retry_after` so the caller can decide. No wait ever runs past the call deadline; the
  last error is raised instead. All waits go through the injected `sleep`, so tests never really sleep.
- Retries do not amplify an outage: every retry (not first attempts) spends tokens from ONE client-wide
  `RetryBudget`, a token bucket as in the AWS SDKs' "standard" retry mode: a retry costs 5 tokens (10 after
  a timeout, which held a connection for long), a call that succeeds at once puts 1 token back, and a call
  that succeeds on a retry gives back what that retry cost. While K-LINK answers most calls the bucket stays
  full; when it is down, the bucket empties after a few calls and every later call fails after its first
  attempt with an error saying K-LINK looks down, instead of each call multiplying the load by 5. The
  default 100 tokens allow 20 retries with nothing succeeding: 100 calls against a dead upstream make at
  most 120 attempts.

It must never log or put into an error the token, the Authorization header, query strings or bodies
(they carry customer data); server text is scrubbed of the token before it reaches an error.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote

import anyio
import httpx2
from pydantic import SecretStr

from klink_mcp import USER_AGENT
from klink_mcp.api.auth import authorization_header
from klink_mcp.api.catalog import Catalog, Operation
from klink_mcp.api.errors import (
    AmbiguousWriteError,
    BadRequest,
    Conflict,
    Forbidden,
    KlinkAPIError,
    KlinkConnectionError,
    KlinkError,
    KlinkInputError,
    KlinkTimeout,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from klink_mcp.config import ConfigError
from klink_mcp.ops import observe_upstream

log = logging.getLogger("klink_mcp.api")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
# placeholder -> (the caller's parameter name for error messages, the raw value)
PathParams = Mapping[str, tuple[str, object]]

BACKOFF_BASE_S: Final = 0.5
BACKOFF_CAP_S: Final = 8.0
RETRY_AFTER_CAP_S: Final = 60.0
MAX_ID_LENGTH: Final = 256
_RETRY_STATUSES: Final = frozenset({408, 429})
_ID_FORBIDDEN: Final = frozenset("/\\?#%")
_MAX_TEXT: Final = 500
_PAGING_KEYS: Final = ("total", "lastPage", "pageSize")
_FAILURE_WORDS: Final = frozenset({"error", "fail", "failed", "failure"})
# Nothing reached the server: the connection never existed, so even a POST may be sent again.
_NOT_SENT: Final = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)
# Refused locally before any byte left, and repeating cannot help.
_LOCAL_FAILURE: Final = (httpx2.UnsupportedProtocol, httpx2.LocalProtocolError, httpx2.ProxyError)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one HTTP attempt did; passed to the `on_attempt` hook (tests, metrics)."""

    operation: str
    method: str
    path: str
    attempt: int
    status: int | None
    error: str | None
    elapsed_ms: float
    retrying: bool


@dataclass(slots=True)
class HttpStats:
    """Counters since the client was opened."""

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    max_attempts_per_call: int = 0
    retries_refused: int = 0  # retries the budget did not allow


RETRY_COST: Final = 5.0
TIMEOUT_RETRY_COST: Final = 10.0
SUCCESS_REFILL: Final = 1.0
DEFAULT_RETRY_BUDGET: Final = 100.0
_LOOKS_DOWN: Final = (
    " K-LINK looks down or overloaded: too many recent requests failed, so this client stopped retrying "
    "(its retry budget is spent) rather than add load. Retries resume as calls succeed again; "
    "try again in a minute, and check K-LINK's status if it persists."
)


class RetryBudget:
    """A client-wide token bucket that every retry must pay into (first attempts are free).

    `capacity` tokens to start with and at most; a retry costs `RETRY_COST` (`TIMEOUT_RETRY_COST` after a
    timeout); a call that succeeds at its first attempt refills `SUCCESS_REFILL`, one that succeeds on a
    retry refunds that retry's cost. Not thread-safe: one event loop owns a client. A capacity of 0 turns
    retries off.
    """

    __slots__ = ("capacity", "tokens")

    def __init__(self, capacity: float = DEFAULT_RETRY_BUDGET) -> None:
        """
        Raises:
            ConfigError: a negative or non-finite capacity.
        """
        if not math.isfinite(capacity) or capacity < 0:
            raise ConfigError("the retry budget must be a finite number of tokens, 0 or more")
        self.capacity = float(capacity)
        self.tokens = float(capacity)

    def __repr__(self) -> str:
        return f"RetryBudget({self.tokens:g}/{self.capacity:g})"

    def try_spend(self, cost: float) -> bool:
        """Take `cost` tokens for one retry; False (and nothing taken) when there are not enough."""
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True

    def refill(self, amount: float) -> None:
        """Give tokens back (a success), never above the capacity."""
        self.tokens = min(self.capacity, self.tokens + amount)


@dataclass(frozen=True, slots=True)
class RawPage:
    """A paged answer with its items still raw JSON."""

    items: list[Any]
    total: int
    page: int
    page_size: int
    last_page: int


class _NoBody:
    pass


NO_BODY: Final = _NoBody()


class _Failure(Exception):
    """Internal: one failed attempt, with whether it may be repeated."""

    def __init__(
        self,
        error: KlinkError,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


# ---------------------------------------------------------------------------------------------- inputs


def validate_id(value: object, *, field: str) -> str:
    """Check one record id (used in a path or a body) and return it unchanged.

    Refused: non-strings, empty or whitespace-only, ".", "..", anything containing "/", "\\", "?", "#",
    "%" (no pre-encoded input: "%2e%2e" would be ".." to some servers) or a control character, and
    anything longer than 256 characters. Surrounding whitespace is refused too, never silently trimmed.

    Raises:
        KlinkInputError: the id is unusable; `field` names the parameter.
    """
    if not isinstance(value, str):
        raise KlinkInputError(field, f"must be a string id, got {type(value).__name__}")
    if not value.strip():
        raise KlinkInputError(field, "must not be empty")
    if value != value.strip():
        raise KlinkInputError(field, "must not start or end with whitespace")
    if len(value) > MAX_ID_LENGTH:
        raise KlinkInputError(field, f"is longer than {MAX_ID_LENGTH} characters")
    if value in {".", ".."}:
        raise KlinkInputError(field, f"{value!r} is not an id")
    bad = sorted({ch for ch in value if ch in _ID_FORBIDDEN or ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        raise KlinkInputError(field, f"must not contain {shown}")
    return value


def quote_path_id(value: object, *, field: str) -> str:
    """`validate_id`, then URL-quote the id for use as one path segment.

    Raises:
        KlinkInputError: the id is unusable; `field` names the parameter.
    """
    return quote(validate_id(value, field=field), safe="")


def render_path(op: Operation, params: PathParams | None) -> str:
    """Fill the operation's path template with validated, quoted ids.

    Raises:
        KlinkInputError: an id is unusable.
    """
    given = dict(params or {})
    if set(given) != op.placeholders:
        # A programming error inside the SDK, not user input.
        raise RuntimeError(f"{op.name}: path needs {sorted(op.placeholders)}, got {sorted(given)}")
    return op.path.format_map(
        {key: quote_path_id(value, field=field) for key, (field, value) in given.items()}
    )


def encode_json(body: object, *, field: str = "body") -> bytes:
    """Serialise a request body strictly (no NaN/Infinity, only JSON types).

    Raises:
        KlinkInputError: the body cannot be represented as JSON.
    """
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise KlinkInputError(field, f"is not JSON-serialisable ({exc})") from None


# ---------------------------------------------------------------------------------------------- errors


class _Scrubber:
    """Removes the token (and any bearer credential) from text that came from the server."""

    _BEARER = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+")

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __call__(self, text: str) -> str:
        secret = self._token.get_secret_value()
        if secret:
            text = text.replace(secret, "[redacted]")
        return self._BEARER.sub("Bearer [redacted]", text)


def _as_text_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [text for item in value for text in _as_text_list(item)]
    if isinstance(value, Mapping):
        # {"field": ["msg"]} style validation errors, or {"message": ...} nested objects
        if "message" in value:
            return _as_text_list(value["message"])
        return [f"{key}: {text}" for key, item in value.items() for text in _as_text_list(item)]
    return [str(value)]


def _html_text(text: str) -> str:
    title = re.search(r"(?is)<title[^>]*>(.*?)</title>", text)
    if title and title.group(1).strip():
        return " ".join(title.group(1).split())
    stripped = re.sub(r"(?is)<(script|style)[^>]*>.*?</\1>", " ", text)
    stripped = re.sub(r"(?s)<[^>]+>", " ", stripped)
    return " ".join(stripped.split())


def parse_error_body(content: bytes, content_type: str = "") -> tuple[list[str], Any]:
    """Read an error body tolerantly: (messages, body).

    JSON objects give their `message` (a string or a list of strings), else `error`/`errors`/`detail`;
    a JSON list gives its strings; HTML gives its <title> or visible text; plain text gives itself.
    Long text is truncated. An empty body gives ([], None).
    """
    text = content.decode("utf-8", errors="replace").strip()
    if not text:
        return [], None
    try:
        body: Any = json.loads(text)
    except ValueError:
        looks_html = "html" in content_type.lower() or text.lstrip()[:1] == "<"
        plain = _html_text(text) if looks_html else " ".join(text.split())
        plain = plain[:_MAX_TEXT]
        return ([plain] if plain else []), text[:_MAX_TEXT]
    if isinstance(body, Mapping):
        for key in ("message", "errors", "detail", "error"):
            messages = _as_text_list(body.get(key))
            if messages:
                return [m[:_MAX_TEXT] for m in messages], body
        return [], body
    return [m[:_MAX_TEXT] for m in _as_text_list(body)], body


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """The wait a `Retry-After` header asks for, in seconds (never negative), or None if absent/invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_for_status(
    status: int,
    messages: list[str],
    body: Any,
    *,
    retry_after: float | None = None,
    operation: str | None = None,
) -> KlinkAPIError:
    """The SDK error for an HTTP error status (the one status -> exception map)."""
    reason = httpx2.codes.get_reason_phrase(status) or "Error"
    said = "; ".join(messages) if messages else reason
    message = f"{said} (HTTP {status})"
    kwargs: dict[str, Any] = {"messages": messages or [reason], "operation": operation}
    if status == 401:
        message = (
            f"K-LINK rejected the API token: {said} (HTTP 401). "
            "Check KLINK_API_TOKEN, its abilities and its expiry."
        )
        return Unauthorized(status, message, body, **kwargs)
    if status == 429:
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return RateLimited(status, f"{said} (HTTP 429{wait})", body, retry_after=retry_after, **kwargs)
    cls: type[KlinkAPIError] = KlinkAPIError
    if status in (400, 422):
        cls = BadRequest
    elif status == 403:
        cls = Forbidden
    elif status in (404, 410):
        cls = NotFound
    elif status == 409:
        cls = Conflict
    elif status >= 500:
        cls = ServerError
    return cls(status, message, body, **kwargs)


# ---------------------------------------------------------------------------------------------- envelopes


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _raise_if_failure(payload: Mapping[str, Any], http_status: int, operation: str) -> None:
    """Some envelopes report failure inside a 2xx: {"success": false} or {"status": "error" | 4xx}.

    Only envelopes are inspected: a bare record may well have a `status` of its own.
    """
    if not ("data" in payload or "success" in payload or ("status" in payload and "message" in payload)):
        return
    status = payload.get("status")
    failed = payload.get("success") is False
    failed = failed or (isinstance(status, str) and status.strip().lower() in _FAILURE_WORDS)
    code = _as_int(status)
    failed = failed or (code is not None and code >= 400)
    if failed:
        messages = _as_text_list(payload.get("message")) or _as_text_list(payload.get("error"))
        raise error_for_status(
            code if code and code >= 400 else http_status, messages, payload, operation=operation
        )


def _locate(payload: Any, http_status: int, operation: str) -> tuple[Any, Mapping[str, Any] | None]:
    """(data, paging metadata) from any of the contract's envelopes, whichever one actually came."""
    if payload is None or isinstance(payload, list):
        return payload, None
    if not isinstance(payload, Mapping):
        raise KlinkAPIError(
            http_status,
            f"unexpected response from K-LINK: a bare {type(payload).__name__}",
            operation=operation,
        )
    _raise_if_failure(payload, http_status, operation)
    cx = payload.get("cxLogs")
    if isinstance(cx, Mapping):
        return cx.get("data"), cx
    if "data" not in payload:
        return payload, None  # a bare record
    data = payload["data"]
    if (
        isinstance(data, Mapping)
        and isinstance(data.get("data"), list)
        and any(k in data for k in _PAGING_KEYS)
    ):
        return data["data"], data  # a paged envelope wrapped in a status/success envelope
    if isinstance(data, list) and any(k in payload for k in _PAGING_KEYS):
        return data, payload
    return data, None


def unwrap(payload: Any, *, op: Operation, http_status: int, page: int = 1, page_size: int = 10) -> Any:
    """The useful part of a successful answer: `RawPage` for paged operations, else the `data`.

    Tolerant: whichever of the contract's envelopes arrives (paged, status/message/data, success/data,
    numeric-status send, plain {data}, CX-log, a bare list or object) is unwrapped.

    Raises:
        KlinkAPIError: the envelope reports a failure, or the shape cannot hold what the operation returns.
    """
    data, meta = _locate(payload, http_status, op.name)
    if not op.paged:
        if meta is not None:
            last, current = _as_int(meta.get("lastPage")), _as_int(meta.get("page")) or 1
            if last is not None and last > current:
                log.warning(
                    "%s: K-LINK paged this list (%d pages); only page %d was read", op.name, last, current
                )
        return data
    if data is None:
        items: list[Any] = []
    elif isinstance(data, list):
        items = data
    else:
        raise KlinkAPIError(
            http_status, f"unexpected response from K-LINK for {op.name}: expected a list", operation=op.name
        )
    meta = meta or {}
    total = _as_int(meta.get("total"))
    got_size = _as_int(meta.get("pageSize")) or page_size
    last_page = _as_int(meta.get("lastPage"))
    if last_page is None:
        last_page = math.ceil(total / got_size) if total is not None and got_size > 0 else page
    return RawPage(
        items=items,
        total=total if total is not None else len(items),
        page=_as_int(meta.get("page")) or page,
        page_size=got_size,
        last_page=last_page,
    )


# ---------------------------------------------------------------------------------------------- the core


def _ambiguous(op: Operation, why: str, *, status: int | None = None) -> AmbiguousWriteError:
    return AmbiguousWriteError(
        f"{op.name}: {why}. The request may or may not have been applied; check before retrying.",
        status=status,
        operation=op.name,
    )


def _classify_transport_error(exc: httpx2.TransportError, op: Operation, scrub: _Scrubber) -> _Failure:
    """Whether a failed exchange may be repeated depends on whether its bytes may have left."""
    detail = scrub(str(exc))[:200]
    what = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    timeout_or_connection = KlinkTimeout if isinstance(exc, httpx2.TimeoutException) else KlinkConnectionError
    failure: _Failure
    if isinstance(exc, _NOT_SENT):
        message = f"could not connect to K-LINK ({what}); nothing was sent"
        failure = _Failure(timeout_or_connection(message, operation=op.name), retryable=True)
    elif isinstance(exc, _LOCAL_FAILURE):
        failure = _Failure(
            KlinkConnectionError(f"request to K-LINK failed ({what})", operation=op.name), retryable=False
        )
    elif not op.idempotent:
        failure = _Failure(
            _ambiguous(op, f"the connection failed after the request was sent ({what})"), retryable=False
        )
    else:
        message = f"no answer from K-LINK ({what})"
        failure = _Failure(timeout_or_connection(message, operation=op.name), retryable=True)
    failure.error.__cause__ = exc
    return failure


def _say_upstream_looks_down(error: KlinkError) -> None:
    """Append the budget's verdict to an error this call created (its type and code stay the same)."""
    error.message = error.message.rstrip() + _LOOKS_DOWN
    error.args = (error.message,)
    error.upstream_looks_down = True


class HttpCore:
    """Sends catalogue operations to K-LINK with auth, the deadline, retries and the error map."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        catalog: Catalog | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 20.0,
        call_deadline_s: float = 45.0,
        max_attempts: int = 5,
        retry_budget: RetryBudget | None = None,
        sleep: Sleep = anyio.sleep,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        """
        Raises:
            ConfigError: the base URL is not http(s), or a timeout/attempt count is not positive.
        """
        try:
            url = httpx2.URL(base_url)
        except httpx2.InvalidURL as exc:
            raise ConfigError(f"base_url is not a valid URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if min(connect_timeout_s, read_timeout_s, call_deadline_s) <= 0:
            raise ConfigError("timeouts and the call deadline must be positive")
        if url.scheme == "http" and transport is None and url.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("base_url %s is plain HTTP: the API token would travel unencrypted", url.host)
        self.catalog = catalog or Catalog()
        self.stats = HttpStats()
        self.base_url = str(url).rstrip("/")
        self.max_attempts = max_attempts
        self.retry_budget = retry_budget if retry_budget is not None else RetryBudget()
        self._budget_spent = False  # said once per outage in the log, not once per call
        self._scrub = _Scrubber(token)
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._call_deadline_s = call_deadline_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock: Clock = clock or anyio.current_time
        self._on_attempt = on_attempt
        self._client = httpx2.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            headers={
                # httpx2 masks this header in reprs; it is never logged here.
                "Authorization": authorization_header(token),  # Bearer or Basic: see api/auth.py
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=httpx2.Timeout(read_timeout_s, connect=connect_timeout_s),
            follow_redirects=False,  # a redirect elsewhere must not carry the token along
        )

    def __repr__(self) -> str:
        return f"HttpCore(base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def call(
        self,
        name: str,
        *,
        path_params: PathParams | None = None,
        query: Mapping[str, object] | None = None,
        body: object = NO_BODY,
        headers: Mapping[str, str] | None = None,
        page: int | None = None,
        page_size: int | None = None,
    ) -> Any:
        """Run one catalogue operation and return its unwrapped data (a `RawPage` for paged operations).

        `page`/`page_size` become the `page`/`pageSize` query parameters; `None` query values are left
        out. Every input is checked before the first byte is sent.

        Raises:
            KlinkInputError: an id or the body is unusable (nothing was sent).
            KlinkAPIError: K-LINK answered with an error (a subclass per status).
            AmbiguousWriteError: a non-idempotent write may or may not have been applied.
            KlinkConnectionError: no usable answer (KlinkTimeout for timeouts and the deadline).
        """
        op = self.catalog[name]
        path = render_path(op, path_params)
        params = {key: str(value) for key, value in (query or {}).items() if value is not None}
        if page is not None:
            params["page"] = str(page)
        if page_size is not None:
            params["pageSize"] = str(page_size)
        request_headers = dict(headers or {})
        content: bytes | None = None
        if not isinstance(body, _NoBody):
            content = encode_json(body)
            request_headers["Content-Type"] = "application/json"

        self.stats.calls += 1
        deadline = self._clock() + self._call_deadline_s
        attempt = 0
        spent = 0.0  # what the latest retry of this call took from the budget
        while True:
            attempt += 1
            started = self._clock()
            try:
                response = await self._attempt(op, path, params, content, request_headers, deadline)
            except _Failure as failure:
                delay = self._retry_delay(failure, attempt, deadline)
                if delay is not None:
                    spent = TIMEOUT_RETRY_COST if isinstance(failure.error, KlinkTimeout) else RETRY_COST
                    if not self.retry_budget.try_spend(spent):
                        delay = None
                        self.stats.retries_refused += 1
                        if self.retry_budget.capacity > 0:  # 0 means "retries off", not "K-LINK down"
                            _say_upstream_looks_down(failure.error)
                            if not self._budget_spent:
                                self._budget_spent = True
                                log.warning(
                                    "K-LINK looks down: too many requests failed and the retry budget is "
                                    "spent; calls now fail after one attempt until requests succeed again"
                                )
                self._record(
                    op, path, attempt, started, failure.status, failure.error, retrying=delay is not None
                )
                if delay is None:
                    raise failure.error from failure.error.__cause__
                self.stats.retries += 1
                await self._sleep(delay)
                continue
            self.retry_budget.refill(spent if attempt > 1 else SUCCESS_REFILL)
            if self._budget_spent:
                self._budget_spent = False
                log.warning("K-LINK answers again: retries resume as the retry budget refills")
            self._record(op, path, attempt, started, response.status_code, None, retrying=False)
            return self._success(op, response, page or 1, page_size or 10)

    async def _attempt(
        self,
        op: Operation,
        path: str,
        params: dict[str, str],
        content: bytes | None,
        headers: dict[str, str],
        deadline: float,
    ) -> httpx2.Response:
        remaining = deadline - self._clock()
        if remaining <= 0:
            # Only reachable after retries, which a write gets only when nothing was sent.
            why = f"the call deadline ({self._call_deadline_s:g} s) ran out before another attempt"
            raise _Failure(KlinkTimeout(why, operation=op.name), retryable=False)
        timeout = httpx2.Timeout(
            connect=min(self._connect_timeout_s, remaining),
            read=min(self._read_timeout_s, remaining),
            write=min(self._read_timeout_s, remaining),
            pool=min(self._connect_timeout_s, remaining),
        )
        request = self._client.build_request(
            # `params={}` would still cost a URL re-parse per request
            op.method,
            path,
            params=params or None,
            content=content,
            headers=headers,
            timeout=timeout,
        )
        response: httpx2.Response | None = None
        try:
            # The read timeout bounds each socket read; this scope bounds the whole exchange, so a body
            # trickling in slowly cannot outlive the call deadline.
            with anyio.move_on_after(remaining):
                response = await self._client.send(request)
        except httpx2.TransportError as exc:
            raise _classify_transport_error(exc, op, self._scrub) from None
        if response is None:
            raise _Failure(self._deadline_error(op), retryable=False)
        if response.is_success:
            return response
        raise self._status_failure(op, response)

    def _deadline_error(self, op: Operation) -> KlinkError:
        why = f"no answer from K-LINK within the call deadline ({self._call_deadline_s:g} s)"
        if not op.idempotent:
            return _ambiguous(op, why)
        return KlinkTimeout(why, operation=op.name)

    def _status_failure(self, op: Operation, response: httpx2.Response) -> _Failure:
        status = response.status_code
        messages, body = parse_error_body(response.content, response.headers.get("content-type", ""))
        messages = [self._scrub(m) for m in messages]
        if isinstance(body, str):
            body = self._scrub(body)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        error = error_for_status(status, messages, body, retry_after=retry_after, operation=op.name)
        if status >= 500 and not op.idempotent:
            # A 5xx says nothing about whether a create went through before the failure.
            ambiguous = _ambiguous(op, f"K-LINK answered {error.message}", status=status)
            ambiguous.__cause__ = error
            return _Failure(ambiguous, retryable=False, status=status)
        retryable = op.idempotent and (status in _RETRY_STATUSES or status >= 500)
        return _Failure(error, retryable=retryable, status=status, retry_after=retry_after)

    def _retry_delay(self, failure: _Failure, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before the next attempt, or None when the error must be raised now."""
        if not failure.retryable or attempt >= self.max_attempts:
            return None
        if failure.retry_after is not None:
            if failure.retry_after > RETRY_AFTER_CAP_S:
                return None  # not worth holding the caller; RateLimited.retry_after tells them when
            delay = failure.retry_after
        else:
            delay = self._rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))
        if self._clock() + delay >= deadline:
            return None
        return delay

    def _record(
        self,
        op: Operation,
        path: str,
        attempt: int,
        started: float,
        status: int | None,
        error: KlinkError | None,
        *,
        retrying: bool,
    ) -> None:
        elapsed_ms = (self._clock() - started) * 1000
        self.stats.attempts += 1
        self.stats.max_attempts_per_call = max(self.stats.max_attempts_per_call, attempt)
        outcome = str(status) if status is not None else type(error).__name__
        observe_upstream(op.name, status if status is not None else _metric_error(error), attempt)
        # The template, not the filled path: ids can be phone numbers (WhatsApp platform ids).
        log.debug(
            "%s %s -> %s in %.1f ms (attempt %d/%d%s)",
            op.method,
            op.path,
            outcome,
            elapsed_ms,
            attempt,
            self.max_attempts,
            ", retrying" if retrying else "",
        )
        if self._on_attempt is not None:
            name = type(error).__name__ if error is not None else None
            self._on_attempt(Attempt(op.name, op.method, path, attempt, status, name, elapsed_ms, retrying))

    def _success(self, op: Operation, response: httpx2.Response, page: int, page_size: int) -> Any:
        status = response.status_code
        payload: Any = None
        if response.content.strip():
            try:
                payload = response.json()
            except ValueError:
                applied = "" if op.idempotent else " The change WAS applied; do not repeat it."
                raise KlinkAPIError(
                    status,
                    f"K-LINK answered HTTP {status} to {op.name} with a body that is not JSON.{applied}",
                    self._scrub(response.text[:_MAX_TEXT]),
                    operation=op.name,
                ) from None
        return unwrap(payload, op=op, http_status=status, page=page, page_size=page_size)


def _metric_error(error: KlinkError | None) -> str:
    """The metrics label of a failed attempt without a status: "timeout" or "connect_error"."""
    name = type(error).__name__.lower()
    return "timeout" if "timeout" in name else "connect_error"
