"""CX-log tools: customer conversations/cases over a date range (for history and reports).

K-LINK has no contact filter on CX logs: `contact_id` is applied here by scanning the range's pages
(`klink_mcp.tools.filtering.scan`), so one call answers with full pages of that contact's logs and
the true total. Every time in the result is given in the `timezone` the call names, with its
offset. This module must not write anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcp.server.mcpserver import Context
from pydantic import BeforeValidator, Field

from klink_mcp.api.errors import ErrorCode
from klink_mcp.api.models import CxLog
from klink_mcp.api.models import Page as ApiPage
from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.tools.errors import ToolFailure
from klink_mcp.tools.filtering import FilteredList, scan
from klink_mcp.tools.params import Page, PageSize
from klink_mcp.tools.spec import ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import CxLogView, cx_log_view

MAX_RANGE_DAYS = 92


def _iso_text(value: Any) -> Any:
    """Dates arrive as ISO-8601 text; a bare number would silently mean seconds since 1970."""
    if not isinstance(value, str | dt.datetime):
        raise ValueError("give an ISO-8601 date-time string such as 2026-11-01T00:00:00")
    return value


def _in_zone(value: str | None, zone: ZoneInfo) -> str | None:
    """An ISO-8601 time from K-LINK, given in `zone` with its offset (K-LINK's naive times are UTC)."""
    if not value:
        return value
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return value  # not a time we can read: shown as K-LINK sent it, never re-labelled
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(zone).isoformat()


def _zoned_view(log: CxLog, zone: ZoneInfo) -> CxLogView:
    view = cx_log_view(log)
    return view.model_copy(
        update={"started_at": _in_zone(view.started_at, zone), "closed_at": _in_zone(view.closed_at, zone)}
    )


async def list_cx_logs(
    state: ServerState,
    ctx: Context[Any, Any],
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
        str | None,
        Field(
            min_length=1,
            max_length=256,
            description="Only this contact's logs. K-LINK cannot filter CX logs by contact, so the "
            "server reads the whole range and filters it (total and has_more count that contact's logs).",
        ),
    ] = None,
    page: Page = 1,
    page_size: PageSize = 20,
) -> FilteredList[CxLogView]:
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

    async def fetch(number: int, size: int) -> ApiPage[CxLog]:
        return await state.client.list_cx_logs(
            start=start, end=end, timezone=timezone, page=number, page_size=size
        )

    if contact_id is None:
        result = await fetch(page, page_size)
        items = [_zoned_view(c, zone) for c in result.items]
        return FilteredList[CxLogView].of_page(result, items, page_size)

    async def progress(done: int, total: int) -> None:
        await ctx.report_progress(done, total, f"read {done} of {total} pages of CX logs")

    scanned = await scan(
        fetch,
        lambda log: _log_contact(log) == contact_id,
        page=page,
        page_size=page_size,
        concurrency=state.settings.page_concurrency,
        progress=progress,
    )
    return scanned.as_list([_zoned_view(c, zone) for c in scanned.items], page, page_size)


def _log_contact(log: CxLog) -> str | None:
    return log.contact_id or (log.contact.id if log.contact is not None else None)


LIST_CX_LOGS = ToolSpec(
    name="list_cx_logs",
    title="List CX logs",
    description="Customer conversations/cases (CX logs) that started in a date range: channel, queue, "
    "direction, first-response, handling and resolution times (seconds), SLA status. Use for a "
    "customer's history or a weekly CX report. Times are given in `timezone` with its offset "
    "(default UTC). With contact_id the server filters the range itself: total and has_more count "
    "that contact's logs only.",
    toolset="cx_logs",
    effects=ToolPolicy(Risk.READ, idempotent=True),
    output=FilteredList[CxLogView],
    handler=list_cx_logs,
)

SPECS: tuple[ToolSpec, ...] = (LIST_CX_LOGS,)
