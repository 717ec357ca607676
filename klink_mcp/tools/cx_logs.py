"""CX-log tools: customer conversations/cases over a date range (for history and reports)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field

from klink_mcp.api.errors import ErrorCode
from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.tools.errors import ToolFailure
from klink_mcp.tools.params import Page, PageSize
from klink_mcp.tools.results import ListResult
from klink_mcp.tools.spec import ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import CxLogView, cx_log_view

MAX_RANGE_DAYS = 92


def _iso_text(value: Any) -> Any:
    """Dates arrive as ISO-8601 text; a bare number would silently mean seconds since 1970."""
    if not isinstance(value, str | dt.datetime):
        raise ValueError("give an ISO-8601 date-time string such as 2026-11-01T00:00:00")
    return value


async def list_cx_logs(
    state: ServerState,
    start: Annotated[
        dt.datetime,
        BeforeValidator(_iso_text),
        Field(description="Range start, ISO-8601 (e.g. 2026-11-01T00:00:00); wall time in `timezone`."),
    ],
    end: Annotated[
        dt.datetime, BeforeValidator(_iso_text), Field(description="Range end, ISO-8601, after start.")
    ],
    timezone: Annotated[
        str, Field(min_length=1, max_length=64, description="IANA time zone, e.g. Asia/Singapore.")
    ] = "UTC",
    contact_id: Annotated[
        str | None, Field(max_length=256, description="Keep only this contact's logs (filtered here).")
    ] = None,
    page: Page = 1,
    page_size: PageSize = 20,
) -> ListResult[CxLogView]:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolFailure(
            ErrorCode.VALIDATION,
            f"Unknown time zone {timezone!r}: use an IANA name such as Asia/Singapore or UTC.",
            fields=["timezone"],
        ) from None
    # Naive times are wall time in `timezone`; times with an offset are converted to it.
    start = start.replace(tzinfo=zone) if start.tzinfo is None else start.astimezone(zone)
    end = end.replace(tzinfo=zone) if end.tzinfo is None else end.astimezone(zone)
    if end <= start:
        raise ToolFailure(ErrorCode.VALIDATION, "end must be after start.", fields=["start", "end"])
    if (end - start) > dt.timedelta(days=MAX_RANGE_DAYS):
        raise ToolFailure(
            ErrorCode.VALIDATION,
            f"The range may span at most {MAX_RANGE_DAYS} days.",
            fields=["start", "end"],
        )
    result = await state.client.list_cx_logs(
        start=start, end=end, timezone=timezone, page=page, page_size=page_size
    )
    items = [cx_log_view(c) for c in result.items]
    if contact_id:
        items = [c for c in items if c.contact_id == contact_id]
    return ListResult[CxLogView].from_page(result, items, page_size)


LIST_CX_LOGS = ToolSpec(
    name="list_cx_logs",
    title="List CX logs",
    description="Customer conversations/cases (CX logs) that started in a date range: channel, queue, "
    "direction, first-response, handling and resolution times (seconds), SLA status. Use for a "
    "customer's history or a weekly CX report. With contact_id the page is filtered locally, so "
    "page through (has_more) to see all of that contact's logs.",
    toolset="cx_logs",
    effects=ToolPolicy(Risk.READ, idempotent=True),
    output=ListResult[CxLogView],
    handler=list_cx_logs,
)

SPECS: tuple[ToolSpec, ...] = (LIST_CX_LOGS,)
