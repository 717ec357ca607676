"""Honest filters: a list tool's filter is applied, upstream or here, and the paging facts describe
the FILTERED result.

K-LINK's list filters are partly [inferred] (docs/klink-api.md): a real tenant may ignore one and
answer with the unfiltered listing. `honest_page` therefore checks every item K-LINK returns against
the filters; when one does not match (or when the page cannot tell, see `_needs_probe`) it falls
back to `scan`: reading the UNFILTERED listing page by page (bounded concurrency, progress
notifications) and filtering here. A scan stops at `MAX_SCAN_PAGES`; the result then says so
(`complete: false`, `scanned_pages`, no `total`, a `note`) instead of passing a partial count off
as the whole.

This module talks to K-LINK only through the page-fetching callables it is given; it must not
register tools nor know any tool's arguments.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
from pydantic import Field

from klink_mcp.api.models import Page
from klink_mcp.tools.results import ListResult

log = logging.getLogger(__name__)

T = TypeVar("T")
W = TypeVar("W")

SCAN_PAGE_SIZE = 100
MAX_SCAN_PAGES = 50

FetchPage = Callable[[int, int], Awaitable[Page[W]]]
Progress = Callable[[int, int], Awaitable[None]]


class FilteredList(ListResult[T], Generic[T]):
    """A page of a filtered list. When the server had to filter itself and stopped at its scan cap,
    `complete` is false, `scanned_pages` says how far it read and `total` is left out (unknown)."""

    complete: bool | None = Field(
        default=None,
        description="False when the server stopped scanning K-LINK early: matches past the scanned "
        "pages are not included and total is unknown (narrow the filters to see them).",
    )
    scanned_pages: int | None = Field(
        default=None, description="K-LINK pages the server read to filter this result itself."
    )
    note: str | None = Field(default=None, description="How this result was filtered, when it matters.")

    @classmethod
    def of_page(cls, page: Page[Any], items: list[T], page_size: int) -> FilteredList[T]:
        """Views of one upstream page K-LINK filtered itself, keeping its paging facts."""
        return cls(items=items, page=page.page, page_size=page_size, total=page.total, has_more=page.has_more)


@dataclass(frozen=True)
class Scanned(Generic[W]):
    """The outcome of a scan: the requested page of matches and the facts about the scan."""

    items: list[W]
    total: int | None
    has_more: bool
    scanned_pages: int
    upstream_pages: int
    complete: bool

    def as_list(self, views: list[T], page: int, page_size: int) -> FilteredList[T]:
        note = None
        if not self.complete:
            note = (
                f"Filtered here: read the first {self.scanned_pages} of {self.upstream_pages} K-LINK pages "
                f"({SCAN_PAGE_SIZE} items each) and stopped; narrow the filters to see later matches."
            )
        return FilteredList[T](
            items=views,
            page=page,
            page_size=page_size,
            total=self.total,
            has_more=self.has_more,
            complete=self.complete,
            scanned_pages=self.scanned_pages,
            note=note,
        )


async def scan(
    fetch_page: FetchPage[W],
    keep: Callable[[W], bool],
    *,
    page: int,
    page_size: int,
    concurrency: int,
    progress: Progress | None = None,
    max_pages: int | None = None,
) -> Scanned[W]:
    """Read the listing (up to `max_pages` pages, `concurrency` at a time) and page its matches.

    Returns page `page` (of `page_size` matches) of the items `keep` accepts, in listing order.
    `max_pages` defaults to `MAX_SCAN_PAGES` (read at call time). When every upstream page was read, `total` is the exact number of matches; otherwise it is None and
    `complete` is False.

    Raises:
        KlinkError: the first error a page met (the other fetches are cancelled).
    """
    first = await fetch_page(1, SCAN_PAGE_SIZE)
    size = first.page_size if first.page_size > 0 else SCAN_PAGE_SIZE
    upstream_pages = max(first.last_page, math.ceil(first.total / size), 1)
    last = min(upstream_pages, MAX_SCAN_PAGES if max_pages is None else max_pages)
    pages: list[Sequence[W]] = [first.items, *([] for _ in range(2, last + 1))]
    done = 1
    if progress is not None:
        await progress(done, last)
    if last > 1:
        limiter = anyio.CapacityLimiter(concurrency)
        failures: list[Exception] = []

        async def fetch(number: int, scope: anyio.CancelScope) -> None:
            nonlocal done
            async with limiter:
                try:
                    pages[number - 1] = (await fetch_page(number, size)).items
                except Exception as exc:  # re-raised below, outside the task group
                    failures.append(exc)
                    scope.cancel()
                    return
            done += 1
            if progress is not None:
                await progress(done, last)

        async with anyio.create_task_group() as group:
            for number in range(2, last + 1):
                group.start_soon(fetch, number, group.cancel_scope)
        if failures:
            raise failures[0]
    matches = _dedupe([item for items in pages for item in items if keep(item)])
    start = (page - 1) * page_size
    complete = last >= upstream_pages
    return Scanned(
        items=matches[start : start + page_size],
        total=len(matches) if complete else None,
        has_more=len(matches) > start + page_size,
        scanned_pages=last,
        upstream_pages=upstream_pages,
        complete=complete,
    )


def _dedupe(items: list[W]) -> list[W]:
    # The listing may shift while it is read: an item seen on two pages is kept once.
    seen: set[Any] = set()
    out: list[W] = []
    for item in items:
        key = getattr(item, "id", None) or id(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


async def honest_page(
    *,
    fetch_filtered: FetchPage[W],
    fetch_unfiltered: FetchPage[W],
    keep: Callable[[W], bool] | None,
    what: str,
    page: int,
    page_size: int,
    concurrency: int,
    progress: Progress | None = None,
    probe: bool = True,
) -> tuple[list[W], Page[W] | Scanned[W]]:
    """One page of a filtered list, checked: K-LINK's filtered page when it honoured the filters,
    else a scan of the unfiltered listing filtered here.

    `keep` is the filters as a predicate (None: no filter, K-LINK's page is the answer). `probe`
    False: `fetch_unfiltered` lists the same thing as `fetch_filtered` (the filter is in the path), so
    comparing their counts proves nothing and the items alone decide. Returns
    the items of the page and where the paging facts come from (a `Page` or a `Scanned`).

    Raises:
        KlinkError: a K-LINK call failed.
    """
    result = await fetch_filtered(page, page_size)
    if keep is None:
        return list(result.items), result
    if all(keep(item) for item in result.items) and not (
        probe and await _needs_probe(result, page, fetch_unfiltered)
    ):
        return list(result.items), result
    log.warning("K-LINK ignored a %s filter; filtering the listing here", what)
    scanned = await scan(
        fetch_unfiltered,
        keep,
        page=page,
        page_size=page_size,
        concurrency=concurrency,
        progress=progress,
    )
    return scanned.items, scanned


async def _needs_probe(result: Page[W], page: int, fetch_unfiltered: FetchPage[W]) -> bool:
    """True when a page whose items all match cannot prove the filter was applied upstream.

    A first page that holds everything (no more pages) is the whole filtered result whatever K-LINK
    did. Otherwise a tenant that ignored the filter could have answered a page that happens to
    match while its `total`/`has_more` count everything: one cheap unfiltered request tells, since a
    filter that was applied leaves fewer items than the whole listing. When both counts are equal,
    every item matches or the filter was ignored; scanning is right in both cases.
    """
    if page == 1 and not result.has_more:
        return False
    whole = await fetch_unfiltered(1, 1)
    return whole.total <= result.total
