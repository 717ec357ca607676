"""Operations for a team deployment: health, readiness, Prometheus metrics, request ids, JSON logs.

* `/healthz` - the process answers (no auth, no upstream call);
* `/readyz` - the store and K-LINK answer: each check runs with a 2 s timeout and the result is
  cached for 5 s, so load-balancer health checks cost K-LINK at most one cheap read per replica
  every 5 s; 503 with a JSON reason per check otherwise;
* `/metrics` - Prometheus text format from this module's own registry (behind the HTTP auth unless
  `KLINK_METRICS_PUBLIC=1`);
* `RequestContext` - ASGI middleware: a request id from `X-Request-Id` (when well-formed) or a new
  one, echoed in the response header and readable anywhere in the request through
  `current_request_id()` (the audit log can record it); with `KLINK_LOG_FORMAT=json` one JSON line
  per request on stderr.
* `observe_tool_call`, `observe_upstream`, `observe_approval`, `observe_webhook` - the hooks other
  layers call; `tool_call_metrics` - an MCP middleware observing `tools/call`.

Label values are bounded (tool names by shape and count, outcomes and results by fixed vocabularies)
so a client cannot grow the metrics without limit. Nothing here logs a header value other than the
request id, nor a body, nor a token. This module must not import the tool layer.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import anyio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HEALTH_PATH",
    "METRICS_PATH",
    "READY_PATH",
    "REGISTRY",
    "JsonLogFormatter",
    "NotReady",
    "Readiness",
    "RequestContext",
    "configure_json_logging",
    "current_request_id",
    "health",
    "metrics_endpoint",
    "observe_approval",
    "observe_tool_call",
    "observe_upstream",
    "observe_webhook",
    "tool_call_metrics",
]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("klink_mcp.access")

HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
READY_CHECK_TIMEOUT_S: Final = 2.0
READY_CACHE_S: Final = 5.0

# ---------------------------------------------------------------- request ids

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("klink_request_id", default=None)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str | None:
    """The id of the HTTP request being served (None outside one, e.g. on stdio)."""
    return _request_id.get()


class RequestContext:
    """ASGI middleware: request id in, request id out, one access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                given = value.decode("latin-1")
        request_id = given if _VALID_REQUEST_ID.match(given) else uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        reset = _request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            _http_requests.labels(status=_status_class(status)).inc()
            user = scope.get("user")
            access = getattr(user, "access_token", None)
            access_logger.info(
                "%s %s %d",
                scope.get("method", "?"),
                scope.get("path", "?"),
                status,
                extra={
                    "http": {
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": (scope.get("client") or ("?", 0))[0],
                    },
                    "principal": getattr(access, "subject", None),
                },
            )
            _request_id.reset(reset)


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


# ---------------------------------------------------------------- JSON logs


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and structured extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        for key in ("http", "principal"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


_JSON_HANDLER_MARK: Final = "_klink_json_handler"


def configure_json_logging(level: str = "WARNING") -> None:
    """Send every log record to stderr as one JSON line; access lines at INFO. Idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _JSON_HANDLER_MARK, False):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    setattr(handler, _JSON_HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    access_logger.setLevel(logging.INFO)


# ---------------------------------------------------------------- metrics

REGISTRY: Final = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

_tool_calls = Counter(
    "klink_tool_calls", "MCP tool calls by tool and outcome.", ["tool", "outcome"], registry=REGISTRY
)
_tool_seconds = Histogram(
    "klink_tool_call_seconds",
    "Latency of MCP tool calls, seconds.",
    ["tool"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
_upstream = Counter(
    "klink_upstream_responses",
    "K-LINK responses by operation and status.",
    ["op", "status"],
    registry=REGISTRY,
)
_upstream_retries = Counter(
    "klink_upstream_retries", "Retried K-LINK requests by operation.", ["op"], registry=REGISTRY
)
_approvals = Counter("klink_approvals", "Approval decisions by outcome.", ["outcome"], registry=REGISTRY)
_webhooks = Counter("klink_webhook_events", "Webhook deliveries by result.", ["result"], registry=REGISTRY)
_http_requests = Counter(
    "klink_http_requests", "HTTP requests by status class.", ["status"], registry=REGISTRY
)

TOOL_OUTCOMES: Final = frozenset({"ok", "error", "refused", "exception", "cancelled"})
APPROVAL_OUTCOMES: Final = frozenset({"granted", "denied", "expired", "replayed", "cancelled", "requested"})
# The receiver's own answer codes (klink_mcp/webhooks/receiver.py), plus the two successes.
WEBHOOK_RESULTS: Final = frozenset(
    {
        "stored",
        "duplicate",
        "unauthorized",
        "bad_request",
        "payload_too_large",
        "request_timeout",
        "disconnected",
        "store_unavailable",
    }
)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_TOOL_LABELS: Final = 256
_seen_tools: set[str] = set()


def _tool_label(tool: str) -> str:
    if tool in _seen_tools:
        return tool
    if _NAME.match(tool) and len(_seen_tools) < _MAX_TOOL_LABELS:
        _seen_tools.add(tool)
        return tool
    return "other"


def _bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


def observe_tool_call(tool: str, seconds: float, outcome: str) -> None:
    """Count one tool call and its latency. `outcome`: ok, error, refused, exception or cancelled."""
    label = _tool_label(tool)
    _tool_calls.labels(tool=label, outcome=_bounded(outcome, TOOL_OUTCOMES)).inc()
    _tool_seconds.labels(tool=label).observe(max(seconds, 0.0))


def observe_upstream(op: str, status: int | str, attempt: int) -> None:
    """Count one K-LINK response (`status` a code, or e.g. "timeout"/"connect_error"); attempt > 1 is a retry."""
    op_label = op if _NAME.match(op) else "other"
    status_label = (
        str(status) if re.fullmatch(r"[1-5][0-9][0-9]|timeout|connect_error", str(status)) else "other"
    )
    _upstream.labels(op=op_label, status=status_label).inc()
    if attempt > 1:
        _upstream_retries.labels(op=op_label).inc()


def observe_approval(outcome: str) -> None:
    """Count one approval decision: granted, denied, expired, replayed, cancelled or requested."""
    _approvals.labels(outcome=_bounded(outcome, APPROVAL_OUTCOMES)).inc()


def observe_webhook(result: str) -> None:
    """Count one webhook delivery by result: stored, duplicate, or the receiver's error code."""
    _webhooks.labels(result=_bounded(result, WEBHOOK_RESULTS)).inc()


async def tool_call_metrics(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """MCP middleware: observe every `tools/call` (name from the raw params, outcome from the result)."""
    if getattr(ctx, "method", None) != "tools/call":
        return await call_next(ctx)
    params = getattr(ctx, "params", None)
    name = params.get("name") if isinstance(params, Mapping) else None
    tool = name if isinstance(name, str) else "other"
    started = time.perf_counter()
    outcome = "exception"
    try:
        result = await call_next(ctx)
        if isinstance(result, Mapping):
            is_error, meta = result.get("isError"), result.get("_meta")
        else:
            is_error, meta = getattr(result, "is_error", False), getattr(result, "meta", None)
        error = meta.get("klink_mcp/error") if isinstance(meta, Mapping) else None
        code = error.get("code") if isinstance(error, Mapping) else None
        outcome = ("refused" if code == "insufficient_scope" else "error") if is_error else "ok"
        return result
    except anyio.get_cancelled_exc_class():
        outcome = "cancelled"
        raise
    finally:
        observe_tool_call(tool, time.perf_counter() - started, outcome)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------- health and readiness


async def health(request: Request) -> Response:
    """Liveness: the process is serving HTTP. Never calls anything."""
    return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})


ReadinessCheck = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """Raised by a readiness check with a reason safe to show (no secret, no upstream body)."""


@dataclass
class Readiness:
    """Readiness checks (each raises when its dependency is not usable), run together and cached."""

    checks: Mapping[str, ReadinessCheck]
    timeout_s: float = READY_CHECK_TIMEOUT_S
    cache_s: float = READY_CACHE_S
    clock: Callable[[], float] = time.monotonic
    _cached: tuple[float, bool, dict[str, str]] | None = field(default=None, init=False)
    _lock: anyio.Lock = field(default_factory=anyio.Lock, init=False)

    async def _run(self, name: str, check: ReadinessCheck, results: dict[str, str]) -> None:
        try:
            with anyio.fail_after(self.timeout_s):
                await check()
        except TimeoutError:
            results[name] = f"no answer within {self.timeout_s:g} s"
        except NotReady as exc:
            results[name] = str(exc)
        except Exception as exc:  # a readiness probe reports every failure, it never raises
            status = getattr(exc, "status", None)
            results[name] = f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")
        else:
            results[name] = "ok"

    async def status(self) -> tuple[bool, dict[str, str]]:
        """(ready, {check: "ok" or the reason}), at most one run per `cache_s`."""
        async with self._lock:
            now = self.clock()
            if self._cached is not None and now - self._cached[0] < self.cache_s:
                return self._cached[1], dict(self._cached[2])
            results: dict[str, str] = {}
            async with anyio.create_task_group() as tg:
                for name, check in self.checks.items():
                    tg.start_soon(self._run, name, check, results)
            ready = all(v == "ok" for v in results.values())
            self._cached = (self.clock(), ready, results)
            return ready, dict(results)

    async def endpoint(self, request: Request) -> Response:
        """200 {"ready": true, "checks": {...}} or 503 with the reason of each failing check."""
        ready, results = await self.status()
        return JSONResponse(
            {"ready": ready, "checks": results},
            status_code=200 if ready else 503,
            headers={"cache-control": "no-store"},
        )
