"""Running a write through the guard: ask, then execute exactly once if (and only if) it approves.

The guard's public interface (`Guard.authorize`, `Pending`, `Approval`, `record_outcome`) is used as
is. Nothing here decides policy: the guard reads it from the tool specs' effects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.types import InputRequiredResult

from klink_mcp.api import errors as api_errors
from klink_mcp.guard.confirm import Approval, Pending
from klink_mcp.guard.preview import Preview
from klink_mcp.tools.results import WriteOutcome
from klink_mcp.tools.state import ServerState

T = TypeVar("T")
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
    execute: Callable[[], Awaitable[T]] | None = None,
    target_ids: dict[str, str],
    text_field: str | None = None,
    execute_approved: Callable[[Approval], Awaitable[T]] | None = None,
    change: Callable[[T], Mapping[str, Any]] | None = None,
) -> tuple[T | None, dict[str, Any]] | InputRequiredResult:
    """Ask the guard, then run `execute` exactly once if (and only if) it approves.

    `change`, when given, maps the executed result to the before -> after of what the call changed
    (`{field: {"before": ..., "after": ...}}`), recorded with the "executed" audit line.

    Give exactly one of `execute` (runs as the arguments say) and `execute_approved` (receives the
    `Approval`). A tool that sends text to a customer passes `text_field` (the argument holding that
    text) and `execute_approved`, and sends `Approval.approved_text`: the exact text the person approved
    (possibly edited on the approval page, always cleaned of invisible characters), never its argument.
    The outcome then reports that text as `sent_text`, so the assistant knows what went out.

    Returns the executed result (or None) and the outcome fields for the tool's `WriteOutcome`, or an
    `InputRequiredResult` (2026-07-28 elicitation round) to hand straight back to the client.

    Raises:
        ValueError: not exactly one of `execute` and `execute_approved` was given (a programming error).
        GuardRefusal: the guard refused the call.
        KlinkError: `execute` failed (the outcome is recorded in the audit log first).
    """
    if (execute is None) == (execute_approved is None):
        raise ValueError("run_guarded takes exactly one of execute and execute_approved")
    decision = await state.guard.authorize(
        ctx,
        tool=tool,
        args=args,
        confirmation_token=confirmation_token,
        load_preview=load_preview,
        text_field=text_field,
    )
    if isinstance(decision, InputRequiredResult):
        return decision
    if isinstance(decision, Pending):
        return None, {
            "status": decision.status,
            "preview": decision.preview,
            "approval_url": decision.approval_url,
            "approval_id": decision.approval_id,
            "confirmation_token": decision.confirmation_token,
            "expires_in_s": decision.expires_in_s,
            "reason": decision.reason,
            "next_step": decision.next_step,
        }
    assert isinstance(decision, Approval)
    try:
        if execute is not None:
            result = await execute()
        else:
            assert execute_approved is not None
            result = await execute_approved(decision)
    except api_errors.KlinkAPIError as exc:
        state.guard.record_outcome(tool, target_ids, args, decision.channel, exc.status, type(exc).__name__)
        raise
    except api_errors.KlinkError as exc:
        state.guard.record_outcome(tool, target_ids, args, decision.channel, None, type(exc).__name__)
        raise
    state.guard.record_outcome(
        tool, target_ids, args, decision.channel, 200, None, change=None if change is None else change(result)
    )
    fields: dict[str, Any] = {"status": "done"}
    if decision.approved_text is not None:
        fields.update(
            sent_text=decision.approved_text,
            text_edited=decision.text_edited,
            removed_invisible=decision.removed_invisible,
        )
    return result, fields
