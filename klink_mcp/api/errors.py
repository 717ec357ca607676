"""The one error tree of the K-LINK SDK. Every failure a caller can see is one of these::

    KlinkError                              anything this SDK raises on purpose
    ├── KlinkInputError (also ValueError)   bad input refused BEFORE any request was sent (`field` names it)
    ├── KlinkAPIError(status, message, body)  K-LINK answered with an error (or an unreadable success)
    │   ├── BadRequest        400 / 422     the request was invalid; `messages` lists the reasons
    │   ├── Unauthorized      401           the API token is missing, wrong or expired
    │   ├── Forbidden         403           the token lacks the ability (scope) for this operation
    │   ├── NotFound          404 / 410     no such record (or path: see catalogue overrides)
    │   ├── Conflict          409           the change clashes with the current state
    │   ├── RateLimited       429           too many requests; `retry_after` seconds if K-LINK said so
    │   └── ServerError       5xx           K-LINK failed (reads only: see AmbiguousWriteError)
    └── KlinkConnectionError                no usable answer: connect/read failure, a dropped connection
        ├── KlinkTimeout                    a connect/read timeout or the per-call deadline ran out
        └── AmbiguousWriteError             a NON-idempotent write (POST) may or may not have been applied

`AmbiguousWriteError` is raised whenever a POST's bytes may have reached K-LINK and no trustworthy answer
came back: a read timeout, a dropped connection, the deadline, and also a 5xx answer (a gateway 502/504 or
a 500 half-way through says nothing about whether the record was created). There are no idempotency keys
upstream, so the SDK never resends such a request; the caller must check (list/search) before retrying.
Its `status` is the HTTP status when there was one, else None.

This module only defines the classes; `_http.py` decides which one to raise. Messages must never contain
the API token or the Authorization header: `_http.py` scrubs server text before it gets here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """The one vocabulary of machine-readable error codes: K-LINK client errors and tool errors alike.

    The tool layer reports `exc.code` as it is (in a tool result's `_meta["klink_mcp/error"]["code"]`),
    so a code named here is what a client sees. Guard refusals and the tool layer's own checks use the
    same enum.
    """

    # the caller's input, refused before any request was sent
    VALIDATION = "validation"
    # K-LINK's answers
    UPSTREAM_VALIDATION = "upstream_validation"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_UNEXPECTED = "upstream_unexpected"
    # no usable answer
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    AMBIGUOUS_WRITE = "ambiguous_write"
    # the base class (never raised as such)
    KLINK_ERROR = "klink_error"
    # the guard's refusals
    CONFIRMATION_REJECTED = "confirmation_rejected"
    ELICITATION_REQUIRED = "elicitation_required"
    READ_ONLY = "read_only"


class KlinkError(Exception):
    """Base of every error the K-LINK SDK raises on purpose.

    `code` is the stable machine-readable `ErrorCode` (e.g. "not_found"): the tool layer reports it as is;
    `operation` is the catalogue name of the call that failed, when known.
    """

    code: ClassVar[ErrorCode] = ErrorCode.KLINK_ERROR
    # Set by the retry layer when this call was not retried because the client-wide retry budget is
    # spent (many recent requests failed): K-LINK looks down. `message` then says so too.
    upstream_looks_down: bool = False

    def __init__(self, message: str, *, operation: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation

    def __str__(self) -> str:
        return self.message


class KlinkInputError(KlinkError, ValueError):
    """An argument was refused before any request was sent; `field` names the parameter."""

    code = ErrorCode.VALIDATION

    def __init__(self, field: str, message: str, *, operation: str | None = None) -> None:
        super().__init__(f"{field}: {message}", operation=operation)
        self.field = field


class KlinkAPIError(KlinkError):
    """K-LINK answered with an error status (or a 2xx whose body could not be used).

    `messages` holds every message the body carried (K-LINK sends a string or, for validation errors, a
    list); `message` joins them. `body` is the parsed JSON body, or the (truncated) text, or None.
    """

    code = ErrorCode.UPSTREAM_UNEXPECTED

    def __init__(
        self,
        status: int,
        message: str,
        body: Any = None,
        *,
        messages: list[str] | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation)
        self.status = status
        self.body = body
        self.messages: list[str] = list(messages) if messages else [message]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class BadRequest(KlinkAPIError):
    """400/422: K-LINK refused the request as invalid; `messages` lists the reasons."""

    code = ErrorCode.UPSTREAM_VALIDATION


class Unauthorized(KlinkAPIError):
    """401: the API token is missing, wrong, revoked or expired."""

    code = ErrorCode.UNAUTHORIZED


class Forbidden(KlinkAPIError):
    """403: the token is valid but lacks the ability (scope) this operation needs."""

    code = ErrorCode.FORBIDDEN


class NotFound(KlinkAPIError):
    """404/410: no such record, or (for a wrong catalogue override) no such endpoint."""

    code = ErrorCode.NOT_FOUND


class Conflict(KlinkAPIError):
    """409: the change clashes with the record's current state (e.g. a duplicate unique value)."""

    code = ErrorCode.CONFLICT


class RateLimited(KlinkAPIError):
    """429: too many requests. `retry_after` is the wait K-LINK asked for, in seconds, if it said."""

    code = ErrorCode.RATE_LIMITED

    def __init__(
        self,
        status: int,
        message: str,
        body: Any = None,
        *,
        retry_after: float | None = None,
        messages: list[str] | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(status, message, body, messages=messages, operation=operation)
        self.retry_after = retry_after


class ServerError(KlinkAPIError):
    """5xx on a read or an idempotent write: K-LINK failed; retrying later is safe."""

    code = ErrorCode.UPSTREAM_ERROR


class KlinkConnectionError(KlinkError):
    """No usable answer: the connection failed or dropped before a response arrived."""

    code = ErrorCode.UNREACHABLE


class KlinkTimeout(KlinkConnectionError):
    """A connect or read timeout, or the per-call deadline (all attempts and waits) ran out."""

    code = ErrorCode.TIMEOUT


class AmbiguousWriteError(KlinkConnectionError):
    """The request may or may not have been applied; check before retrying.

    Raised for a non-idempotent write (POST) whose bytes may have reached K-LINK without a trustworthy
    answer: a read timeout, a dropped connection, the deadline, or a 5xx (`status` then holds it).
    The SDK never resends such a request, because K-LINK has no idempotency keys and a resend could
    create a second record or message a customer twice.
    """

    code = ErrorCode.AMBIGUOUS_WRITE

    def __init__(self, message: str, *, status: int | None = None, operation: str | None = None) -> None:
        super().__init__(message, operation=operation)
        self.status = status


__all__ = [
    "AmbiguousWriteError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "KlinkAPIError",
    "KlinkConnectionError",
    "KlinkError",
    "KlinkInputError",
    "KlinkTimeout",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Unauthorized",
]
