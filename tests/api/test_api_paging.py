"""fetch_all_pages: page 1 first, then the rest concurrently with a bound, in order, capped, fail-fast."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx2
import pytest

from klink_mcp.api import errors
from klink_mcp.api.client import KlinkClient
from klink_mcp.api.models import Page

from .conftest import Script, paged, response

pytestmark = pytest.mark.anyio


class Pages:
    """A fake paged source of `total` integers that tracks how many fetches run at once."""

    def __init__(self, total: int, *, fail_on: int | None = None) -> None:
        self.total = total
        self.fail_on = fail_on
        self.calls: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, page: int, page_size: int) -> Page[int]:
        self.calls.append(page)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()  # let the other fetches start
            if page == self.fail_on:
                raise errors.ServerError(500, "boom")
            start = (page - 1) * page_size
            items = list(range(start, min(start + page_size, self.total)))
            last = -(-self.total // page_size)
            return Page[int](items=items, total=self.total, page=page, page_size=page_size, last_page=last)
        finally:
            self.in_flight -= 1


@pytest.fixture
def client(make_client: Callable[..., KlinkClient]) -> KlinkClient:
    return make_client(Script((200, {})), page_concurrency=3)


async def test_every_page_is_fetched_once_and_items_keep_their_order(client: KlinkClient) -> None:
    source = Pages(1234)
    with anyio.fail_after(5):
        items = await client.fetch_all_pages(source, page_size=100)
    assert items == list(range(1234))
    assert source.calls[0] == 1
    assert sorted(source.calls) == list(range(1, 14))


async def test_concurrent_page_fetches_never_exceed_the_bound(client: KlinkClient) -> None:
    source = Pages(2000)
    await client.fetch_all_pages(source, page_size=50)
    assert source.most_in_flight == 3


async def test_max_items_limits_the_pages_fetched(client: KlinkClient) -> None:
    source = Pages(1000)
    items = await client.fetch_all_pages(source, page_size=100, max_items=250)
    assert items == list(range(250))
    assert sorted(source.calls) == [1, 2, 3]


async def test_a_single_page_list_costs_one_request(client: KlinkClient) -> None:
    source = Pages(7)
    assert await client.fetch_all_pages(source) == list(range(7))
    assert source.calls == [1]


async def test_a_failing_page_raises_its_own_error_not_a_group(client: KlinkClient) -> None:
    source = Pages(1000, fail_on=4)
    with anyio.fail_after(5), pytest.raises(errors.ServerError, match="boom"):
        await client.fetch_all_pages(source, page_size=100)


async def test_records_repeated_across_pages_are_kept_once(make_client: Callable[..., KlinkClient]) -> None:
    # The list shifted between page reads: "b" appears at the end of page 1 and the start of page 2.
    script = Script(
        (200, paged([{"id": "a", "system_name": "x"}, {"id": "b"}], total=4, page_size=2)),
        (200, paged([{"id": "b"}, {"id": "c"}], total=4, page=2, page_size=2)),
    )
    api = make_client(script)
    fields = await api.fetch_all_pages(lambda page, size: api.get_contact_form_fields(page=page, page_size=2))
    assert [f.id for f in fields] == ["a", "b", "c"]


async def test_all_form_fields_reads_every_page_with_the_largest_page_size(
    make_client: Callable[..., KlinkClient],
) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        page = int(request.url.params["page"])
        items = [
            {"id": f"f{page}-{n}", "system_name": f"cf_{page}_{n}"} for n in range(100 if page < 3 else 7)
        ]
        return response(200, paged(items, total=207, page=page, page_size=100))

    script = Script(handler)
    fields = await make_client(script).all_ticket_form_fields()
    assert len(fields) == 207
    assert sorted(r.url.params["page"] for r in script.requests) == ["1", "2", "3"]
    assert {r.url.params["pageSize"] for r in script.requests} == {"100"}
    assert {r.url.path for r in script.requests} == {"/api/v1/tickets/fields"}


async def test_a_server_that_caps_the_page_size_is_followed_so_pages_do_not_overlap(
    client: KlinkClient,
) -> None:
    source = Pages(120)
    capped: list[int] = []

    async def at_most_25(page: int, page_size: int) -> Page[int]:
        capped.append(page_size)
        return await source(page, min(page_size, 25))

    items = await client.fetch_all_pages(at_most_25, page_size=100)
    assert items == list(range(120))
    assert capped == [100, 25, 25, 25, 25]
