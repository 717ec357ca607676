"""Tool errors: the one translation of anticipated failures into tool results a model can act on.

Every anticipated failure carries an `ErrorCode` (`klink_mcp.api.errors`): the K-LINK client's errors,
the form compiler's `FormValueError`, the guard's `GuardRefusal` and the tool layer's own
`ToolFailure`. The code travels as is in the result's `_meta["klink_mcp/error"]`; the text is the
failure's message plus the tool spec's hint for that code (e.g. "Use list_contacts ..." on
`not_found`). Nothing a refusal says is dropped (its `reason` rides in the meta block too).

This module must not choose hints from tool names: hints come from the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mcp.types import CallToolResult, TextContent

from klink_mcp.api import errors as api_errors
from klink_mcp.api.errors import ErrorCode
from klink_mcp.content import sanitize_text
from klink_mcp.forms import FormValueError
from klink_mcp.guard.confirm import GuardRefusal

# Defined once, next to the argument-error rewriter that shares the shape of the meta block.
from klink_mcp.tools.arg_errors import ERROR_META_KEY

__all__ = ["ERROR_META_KEY", "HANDLED_ERRORS", "ToolFailure", "error_result", "translate_error"]

DEFAULT_HINTS: Mapping[ErrorCode, str] = {ErrorCode.NOT_FOUND: "Check the id."}


class ToolFailure(Exception):
    """A failure the tool layer raises itself, already phrased for the model."""

    def __init__(self, code: ErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


HANDLED_ERRORS = (ToolFailure, GuardRefusal, FormValueError, api_errors.KlinkError)


def error_result(code: ErrorCode | str, message: str, **extra: Any) -> CallToolResult:
    """A tool error result: `message` for the model, `code` (and non-null extras) in `_meta`."""
    block = {"code": str(code), **{k: v for k, v in extra.items() if v is not None}}
    return CallToolResult(
        is_error=True, content=[TextContent(type="text", text=message)], _meta={ERROR_META_KEY: block}
    )


def _api_message(exc: api_errors.KlinkError) -> str:
    # K-LINK may echo customer input back in its messages: make it inert like any customer text.
    messages = getattr(exc, "messages", None) or [exc.message]
    return sanitize_text("; ".join(str(m) for m in messages if m), max_len=500) or "no details"


def _retry_text(exc: api_errors.KlinkError) -> str:
    retry = getattr(exc, "retry_after", None)
    when = f" Retry after {retry:g} s." if retry is not None else " Retry later."
    return f"K-LINK rate limit reached.{when}"


# What each K-LINK client error says to the model, by code (one row per code of the client's tree).
_UPSTREAM_TEXT: Mapping[ErrorCode, Callable[[api_errors.KlinkError], str]] = {
    ErrorCode.VALIDATION: lambda e: f"Invalid input: {e}",
    ErrorCode.NOT_FOUND: lambda e: f"K-LINK says not found: {_api_message(e)}.",
    ErrorCode.RATE_LIMITED: _retry_text,
    ErrorCode.UNAUTHORIZED: lambda e: (
        "K-LINK rejected the API token (401). This is a configuration problem the assistant cannot fix: "
        "ask the user to check KLINK_API_TOKEN (Settings -> API Tokens in the K-LINK dashboard)."
    ),
    ErrorCode.FORBIDDEN: lambda e: (
        "K-LINK refused this operation (403): the API token lacks the ability (scope) for it. "
        "Ask the user to grant it in the dashboard."
    ),
    ErrorCode.UPSTREAM_VALIDATION: lambda e: f"K-LINK rejected the request (400): {_api_message(e)}",
    ErrorCode.CONFLICT: lambda e: f"K-LINK reported a conflict (409): {_api_message(e)}",
    ErrorCode.AMBIGUOUS_WRITE: lambda e: (
        "The connection to K-LINK failed after the request was sent: it may or may not have been "
        "applied. Do NOT simply retry; first check (e.g. list the records) whether it took effect."
    ),
    ErrorCode.UPSTREAM_ERROR: lambda e: (
        f"K-LINK had a server error ({getattr(e, 'status', None)}). Try again in a moment."
    ),
    ErrorCode.TIMEOUT: lambda e: "K-LINK did not answer in time. Try again in a moment.",
    ErrorCode.UNREACHABLE: lambda e: (
        "Could not reach K-LINK (network error). Check connectivity or KLINK_BASE_URL."
    ),
    ErrorCode.UPSTREAM_UNEXPECTED: lambda e: f"K-LINK error {getattr(e, 'status', None)}: {_api_message(e)}",
    ErrorCode.KLINK_ERROR: lambda e: f"K-LINK error: {e}",
}


def translate_error(exc: BaseException, hints: Mapping[ErrorCode, str]) -> CallToolResult:
    """The tool error for an anticipated failure: its code, its message and the spec's hint for the code.

    Raises:
        BaseException: `exc` itself when it is not an anticipated failure (see `HANDLED_ERRORS`).
    """
    extra: dict[str, Any]
    if isinstance(exc, api_errors.KlinkError):
        code = exc.code
        text = _UPSTREAM_TEXT[code](exc)
        if exc.upstream_looks_down:
            # The client-wide retry budget is spent: say so, so the assistant stops hammering too.
            text += (
                " Many recent K-LINK requests failed, so this one was not retried: K-LINK looks down or "
                "overloaded. Wait a minute before trying again."
            )
        field = getattr(exc, "field", None)
        extra = {"retry_after_s": getattr(exc, "retry_after", None), "fields": [field] if field else None}
    elif isinstance(exc, FormValueError):
        code = exc.code
        text = str(exc)
        extra = {"fields": [exc.field.system_name], "suggestions": exc.suggestions or None}
    elif isinstance(exc, GuardRefusal):
        code = ErrorCode(exc.code)
        text = exc.message
        extra = {"reason": exc.reason}
    elif isinstance(exc, ToolFailure):
        code = exc.code
        text = exc.message
        extra = exc.extra
    else:
        raise exc
    hint = hints.get(code) or DEFAULT_HINTS.get(code)
    return error_result(code, f"{text} {hint}" if hint else text, **extra)
