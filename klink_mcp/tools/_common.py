"""Shared plumbing of the MCP tool layer: server state, error translation, list envelopes, registration.

Every tool is thin: validate -> guard (writes) -> api -> compact view. This module holds the pieces
they share:

* `ServerState`: what the tools close over (settings, the K-LINK client opened by the lifespan, the
  guard, the compiled form schemas);
* `translate_error`: the ONE place where SDK/guard/form errors become tool errors a model can act on,
  with a machine-readable code in the result's `_meta` (`klink_mcp/error`);
* `ListResult`: the `{items, page, page_size, total, has_more}` envelope every list returns;
* `register_tool`: adds a tool with annotations derived from the guard's policy table.

Nothing here talks HTTP or knows the K-LINK wire format; views live in `views.py`.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from pydantic import BaseModel, Field

from klink_mcp.api import errors as api_errors
from klink_mcp.config import Settings
from klink_mcp.content import sanitize_text
from klink_mcp.forms import FormSchema, FormValueError
from klink_mcp.guard.confirm import Approval, GuardRefusal, Pending
from klink_mcp.guard.policy import annotations_for
from klink_mcp.guard.preview import Preview
from klink_mcp.tools.schema_slim import drop_descriptions, slim_schema
from klink_mcp.tools.views import CompactModel, FormFieldView, form_field_view

if TYPE_CHECKING:
    from klink_mcp.api.client import KlinkClient
    from klink_mcp.guard.confirm import Guard
    from klink_mcp.schemas import FormRegistry

logger = logging.getLogger("klink_mcp.tools")

T = TypeVar("T")
ERROR_META_KEY = "klink_mcp/error"


class ListResult(CompactModel, Generic[T]):
    """One page of a list. `has_more` says when more pages exist, so truncation is never silent."""

    items: list[T]
    page: int = Field(description="1-based page number of this result.")
    page_size: int = Field(description="Requested page size.")
    total: int | None = Field(default=None, description="Total matching items upstream, when known.")
    has_more: bool = Field(description="True when later pages exist: call again with page+1.")

    @classmethod
    def whole(cls, items: list[T]) -> ListResult[T]:
        """A list K-LINK returns in one piece (no paging upstream)."""
        return cls(items=items, page=1, page_size=max(len(items), 1), total=len(items), has_more=False)

    @classmethod
    def from_page(cls, page: Any, items: list[T], page_size: int) -> ListResult[T]:
        """Views of one upstream `Page`, keeping its paging facts."""
        return cls(items=items, page=page.page, page_size=page_size, total=page.total, has_more=page.has_more)


@dataclass
class ServerState:
    """What every tool needs. The client is set by the server lifespan and cleared when it ends."""

    settings: Settings
    guard: Guard
    forms: FormRegistry
    client_: KlinkClient | None = None
    startup_problems: list[str] = field(default_factory=list)

    @property
    def client(self) -> KlinkClient:
        if self.client_ is None:
            raise RuntimeError("the K-LINK client is not open (the server lifespan has not started)")
        return self.client_


class ToolFailure(Exception):
    """A failure the tool layer raises itself, already phrased for the model."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def _error_result(code: str, message: str, **extra: Any) -> CallToolResult:
    meta = {ERROR_META_KEY: {"code": code, **{k: v for k, v in extra.items() if v is not None}}}
    return CallToolResult(is_error=True, content=[TextContent(type="text", text=message)], _meta=meta)


_NOT_FOUND_HINTS: dict[str, str] = {
    "contact": "Use list_contacts (keyword search) or find_contacts_by_social_platform_id to find contact ids.",
    "ticket": "Use list_tickets or get_ticket_by_number to find ticket ids.",
    "channel": "Use list_channels to see the channels.",
}


def translate_error(tool: str, exc: BaseException) -> CallToolResult:
    """Map any anticipated failure to a tool error with a next step and a machine-readable code.

    Unanticipated exceptions are re-raised by the caller; this function only handles known types.
    """
    if isinstance(exc, ToolFailure):
        return _error_result(exc.code, exc.message, **exc.extra)
    if isinstance(exc, GuardRefusal):
        return _error_result(exc.code, str(exc))
    if isinstance(exc, FormValueError):
        return _error_result(
            "validation",
            str(exc),
            fields=[exc.field.system_name],
            suggestions=exc.suggestions or None,
        )
    if isinstance(exc, api_errors.KlinkInputError):
        field_name = getattr(exc, "field", None)
        return _error_result(
            "validation", f"Invalid input: {exc}", fields=[field_name] if field_name else None
        )
    if isinstance(exc, api_errors.NotFound):
        kind = next((k for k in _NOT_FOUND_HINTS if k in tool), "")
        hint = _NOT_FOUND_HINTS.get(kind, "Check the id.")
        return _error_result("not_found", f"K-LINK says not found: {_api_message(exc)}. {hint}")
    if isinstance(exc, api_errors.RateLimited):
        retry = exc.retry_after
        when = f" Retry after {retry:g} s." if retry is not None else " Retry later."
        return _error_result("rate_limited", f"K-LINK rate limit reached.{when}", retry_after_s=retry)
    if isinstance(exc, api_errors.Unauthorized):
        return _error_result(
            "unauthorized",
            "K-LINK rejected the API token (401). This is a configuration problem the assistant cannot fix: "
            "ask the user to check KLINK_API_TOKEN (Settings -> API Tokens in the K-LINK dashboard).",
        )
    if isinstance(exc, api_errors.Forbidden):
        return _error_result(
            "forbidden",
            "K-LINK refused this operation (403): the API token lacks the ability (scope) for it. "
            "Ask the user to grant it in the dashboard.",
        )
    if isinstance(exc, api_errors.BadRequest):
        return _error_result("upstream_validation", f"K-LINK rejected the request (400): {_api_message(exc)}")
    if isinstance(exc, api_errors.Conflict):
        return _error_result("conflict", f"K-LINK reported a conflict (409): {_api_message(exc)}")
    if isinstance(exc, api_errors.AmbiguousWriteError):
        return _error_result(
            "ambiguous_write",
            "The connection to K-LINK failed after the request was sent: it may or may not have been "
            "applied. Do NOT simply retry; first check (e.g. list the records) whether it took effect.",
        )
    if isinstance(exc, api_errors.ServerError):
        return _error_result(
            "upstream_error", f"K-LINK had a server error ({exc.status}). Try again in a moment."
        )
    if isinstance(exc, api_errors.KlinkTimeout):
        return _error_result("timeout", "K-LINK did not answer in time. Try again in a moment.")
    if isinstance(exc, api_errors.KlinkConnectionError):
        return _error_result(
            "unreachable", "Could not reach K-LINK (network error). Check connectivity or KLINK_BASE_URL."
        )
    if isinstance(exc, api_errors.KlinkAPIError):
        return _error_result("upstream_error", f"K-LINK error {exc.status}: {_api_message(exc)}")
    if isinstance(exc, api_errors.KlinkError):
        return _error_result("upstream_error", f"K-LINK error: {exc}")
    raise exc


def _api_message(exc: api_errors.KlinkAPIError) -> str:
    # K-LINK may echo customer input back in its messages: make it inert like any customer text.
    messages = getattr(exc, "messages", None) or [exc.message]
    return sanitize_text("; ".join(str(m) for m in messages if m), max_len=500) or "no details"


_HANDLED = (
    ToolFailure,
    GuardRefusal,
    FormValueError,
    api_errors.KlinkError,
)


def handle_errors(tool: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a tool so anticipated failures come back as tool errors (signature kept for the schema)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await fn(*args, **kwargs)
        except _HANDLED as exc:
            logger.info("tool %s failed: %s", tool, type(exc).__name__)
            return translate_error(tool, exc)
        if isinstance(result, BaseModel) and not isinstance(result, InputRequiredResult):
            return compact_result(result)
        return result

    return wrapper


def compact_result(model: BaseModel) -> CallToolResult:
    """The result with its text as compact JSON: what the model reads, without indentation bytes.

    The SDK would indent the text (2 spaces a level); on a page of tickets that is ~20% of what a model
    reads. Nulls are left out everywhere (the published output schemas have no null branches), and
    `structuredContent` carries the same data for the client application. pydantic writes the JSON
    (in Rust); the dict is read back from it, which is cheaper than dumping to Python objects.
    """
    text = model.model_dump_json(by_alias=True, exclude_none=True)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=json.loads(text))


def register_tool(
    mcp: MCPServer[Any],
    fn: Callable[..., Awaitable[Any]],
    *,
    name: str,
    title: str,
    description: str,
) -> None:
    """Add one tool: annotations come from the guard's policy table, never from the tool module."""
    mcp.add_tool(
        handle_errors(name, fn),
        name=name,
        title=title,
        description=description,
        annotations=annotations_for(name),
        structured_output=True,
    )
    slim_tool_schemas(mcp, name)


def slim_tool_schemas(mcp: MCPServer[Any], name: str, *, null_free_output: bool = True) -> None:
    """Publish slimmed input/output schemas for a registered tool (see `schema_slim`).

    `null_free_output` says the tool's results never contain null (true for results built by
    `compact_result`), so nullable output fields may be published without their null branch.
    """
    tool = mcp._tool_manager.get_tool(name)
    if tool is None:
        return
    tool.parameters = slim_schema(tool.parameters)
    if tool.fn_metadata.output_schema is not None:
        tool.fn_metadata.output_schema = drop_descriptions(
            slim_schema(tool.fn_metadata.output_schema, collapse_nulls=null_free_output)
        )
        if null_free_output:
            # compact_result serializes the very model the schema was generated from, so the SDK's
            # second validation of every result (a full re-parse) buys nothing; tests check every
            # tool's results against the published schema through a real client.
            tool.fn_metadata.output_model = None


def build_function(
    name: str,
    impl: Callable[..., Awaitable[Any]],
    params: list[inspect.Parameter],
    returns: Any,
) -> Callable[..., Awaitable[Any]]:
    """A function whose signature is `params` (for the generated JSON Schema) and which calls `impl(**kwargs)`.

    Used for tools whose parameters are compiled at run time from the tenant's form fields.
    """

    async def tool_fn(**kwargs: Any) -> Any:
        return await impl(**kwargs)

    tool_fn.__name__ = name
    tool_fn.__qualname__ = name
    tool_fn.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    tool_fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    return tool_fn


def kw(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


class WriteOutcome(CompactModel):
    """What every write tool returns: `status` says whether the action ran.

    `done`: it ran once. `confirmation_required`: nothing changed; show `preview` to the user and, if
    they approve, call the same tool again with the same arguments plus `confirmation_token`.
    `cancelled`: the user declined or did not answer; nothing changed.
    """

    status: Literal["done", "confirmation_required", "cancelled"]
    preview: Preview | None = None
    confirmation_token: str | None = None
    expires_in_s: int | None = None
    reason: str | None = None
    next_step: str | None = None


OutcomeT = TypeVar("OutcomeT", bound=WriteOutcome)


def guarded_outcome(
    outcome: type[OutcomeT],
    result_field: str | None,
    ran: tuple[Any, dict[str, Any]] | InputRequiredResult,
    **extra: Any,
) -> OutcomeT | InputRequiredResult:
    """The tool's outcome model from `run_guarded`'s answer (an elicitation round passes through)."""
    if isinstance(ran, InputRequiredResult):
        return ran
    result, fields = ran
    if result_field is not None:
        extra[result_field] = result
    return outcome(**fields, **extra)


async def run_guarded(
    state: ServerState,
    ctx: Context[Any, Any],
    *,
    tool: str,
    args: dict[str, Any],
    confirmation_token: str | None,
    load_preview: Callable[[], Awaitable[Preview]],
    execute: Callable[[], Awaitable[T]],
    target_ids: dict[str, str],
) -> tuple[T | None, dict[str, Any]] | InputRequiredResult:
    """Ask the guard, then run `execute` exactly once if (and only if) it approves.

    Returns the executed result (or None) and the outcome fields for the tool's `WriteOutcome`, or an
    `InputRequiredResult` (2026-07-28 elicitation round) to hand straight back to the client.
    """
    decision = await state.guard.authorize(
        ctx, tool=tool, args=args, confirmation_token=confirmation_token, load_preview=load_preview
    )
    if isinstance(decision, InputRequiredResult):
        return decision
    if isinstance(decision, Pending):
        return None, {
            "status": decision.status,
            "preview": decision.preview,
            "confirmation_token": decision.confirmation_token,
            "expires_in_s": decision.expires_in_s,
            "reason": decision.reason,
            "next_step": decision.next_step,
        }
    assert isinstance(decision, Approval)
    try:
        result = await execute()
    except api_errors.KlinkAPIError as exc:
        state.guard.record_outcome(tool, target_ids, args, decision.channel, exc.status, type(exc).__name__)
        raise
    except api_errors.KlinkError as exc:
        state.guard.record_outcome(tool, target_ids, args, decision.channel, None, type(exc).__name__)
        raise
    state.guard.record_outcome(tool, target_ids, args, decision.channel, 200, None)
    return result, {"status": "done"}


def unregister(mcp: MCPServer[Any], name: str) -> None:
    """Remove a tool if it is registered (re-registration after a form change)."""
    if mcp._tool_manager.get_tool(name) is not None:
        mcp.remove_tool(name)


def custom_fields_param(schema: FormSchema, *, for_update: bool, kind: str) -> list[inspect.Parameter]:
    """The `custom_fields` parameter of a compiled create/update tool (none when the form has no cf_*)."""
    model = schema.custom_model(for_update=for_update)
    if model is None:
        return []
    desc = f"Custom cf_* {kind} fields of this tenant, keyed by system_name."
    if schema.has_required_custom and not for_update:
        return [kw("custom_fields", Annotated[model, Field(description=desc)])]
    return [kw("custom_fields", Annotated[model | None, Field(description=desc)], None)]


def form_field_list(fields: list[Any], *, custom_only: bool) -> ListResult[FormFieldView]:
    """A form's field definitions as views (archived ones left out)."""
    views = [form_field_view(f) for f in fields if not getattr(f, "is_archived", False)]
    if custom_only:
        views = [v for v in views if v.custom]
    return ListResult[FormFieldView].whole(views)
