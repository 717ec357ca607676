"""One request/response exchange with fault injection, shared by every sandbox frontend.

A frontend (in-process transport, ASGI app, loopback server) calls `begin` as soon as it knows
the method (this draws the fault and sleeps the latency), drops the connection itself if the
decision says `reset_before` (nothing recorded, nothing applied), then reads the body and calls
`complete`, which records the request, answers a fault (5xx, 429) or lets the tenant handle it,
and says whether to answer (`Reply`) or drop the connection after applying it (`Dropped`).

This module must not touch sockets; frontends own the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pydantic import SecretStr

from klink_mcp.sandbox._common import error_body
from klink_mcp.sandbox.faults import NO_FAULT, FaultDecision
from klink_mcp.sandbox.tenant import (
    JSON_HEADERS,
    RecordedRequest,
    SandboxTenant,
    encode_json,
    parse_body,
    parse_query,
    redact_headers,
)


@dataclass(slots=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    slow_body_s: float = 0.0


@dataclass(slots=True)
class Dropped:
    """Close the connection without an answer; `applied` says whether the tenant handled the request."""

    applied: bool


_MESSAGES = {500: "Internal server error", 502: "Bad gateway", 503: "Service temporarily unavailable"}


async def begin(tenant: SandboxTenant, method: str) -> FaultDecision:
    """Draw this request's fault and wait out its latency."""
    decision = tenant.faults.decide(method) if tenant.faults.active else NO_FAULT
    if decision.latency_s > 0:
        await tenant.sleep(decision.latency_s)
    return decision


def complete(
    tenant: SandboxTenant,
    token: SecretStr,
    decision: FaultDecision,
    method: str,
    raw_path: str,
    query_string: str | bytes,
    headers: dict[str, str],
    body: bytes,
) -> Reply | Dropped:
    """Record the request and produce its outcome. `headers` must have lower-case names."""
    query = parse_query(query_string)
    payload, body_ok = parse_body(body)
    record = RecordedRequest(method.upper(), unquote(raw_path), query, payload, None, redact_headers(headers))
    tenant.requests.append(record)
    cap = tenant.max_recorded_requests
    if cap is not None and len(tenant.requests) > cap:
        del tenant.requests[: len(tenant.requests) - cap]
    if decision.error_status is not None:
        status = decision.error_status
        reply = Reply(status, list(JSON_HEADERS), encode_json(error_body(status, _MESSAGES[status])))
    elif decision.rate_limited:
        extra = list(JSON_HEADERS)
        retry_after = tenant.faults.retry_after_header()
        if retry_after is not None:
            extra.append(("retry-after", retry_after))
        reply = Reply(429, extra, encode_json(error_body(429, "Too Many Requests")))
    else:
        handled = tenant.handle(method, raw_path, query, headers, payload, token=token, body_is_json=body_ok)
        reply = Reply(handled.status, handled.headers, handled.body)
    if decision.reset_after:
        return Dropped(applied=True)
    record.status = reply.status
    reply.slow_body_s = decision.slow_body_s
    return reply


def as_secret(token: str | SecretStr) -> SecretStr:
    return token if isinstance(token, SecretStr) else SecretStr(token)


def lower_headers(pairs: Any) -> dict[str, str]:
    """Header pairs (bytes or str) -> dict with lower-case names; repeated names keep the last value."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        out[key.lower()] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return out
