"""URL-mode elicitation: the page's link goes to the client (and so to the person), never to the model.

The client here declares `elicitation: {url: {}}` only (no form), as a client that opens links for
its user would. Its elicitation handler plays the person: it receives the link, opens the page and
decides there, then answers "accept" (the person went to the URL). Both protocol eras: push-style
`elicitation/create` (handshake) and an `InputRequiredResult` round trip (2026-07-28).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import mcp.types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext
from mcp.client.session import ClientSession

from tests.approval._support import Person, strings_in
from tests.guard.guard_harness import DELETE_C1, HarnessFactory, outcome_of

pytestmark = pytest.mark.anyio

ERAS = pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["handshake-era", "2026-era"])


class UrlOnlyClient(Client):
    """A client whose elicitation capability is URL mode only."""

    async def _build_session(self, exit_stack: AsyncExitStack) -> ClientSession:
        session = await super()._build_session(exit_stack)
        original = session._build_capabilities

        def url_only(version: str) -> types.ClientCapabilities:
            caps = original(version)
            return caps.model_copy(
                update={"elicitation": types.ElicitationCapability(url=types.UrlElicitationCapability())}
            )

        session._build_capabilities = url_only  # type: ignore[method-assign]
        return session


class PersonAtTheClient:
    """The client's URL handler: shows the link to the person, who decides on the page."""

    def __init__(self, person: Person, decision: str, answer: str = "accept") -> None:
        self.person = person
        self.decision = decision
        self.answer = answer
        self.requests: list[types.ElicitRequestURLParams] = []

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestURLParams), "the guard asked for a form"
        self.requests.append(params)
        if self.answer == "accept":
            if self.decision == "approve":
                await self.person.approve(params.url)
            elif self.decision == "decline":
                await self.person.decline(params.url)
        return types.ElicitResult(action=self.answer)  # type: ignore[arg-type]


@ERAS
async def test_the_link_reaches_the_clients_handler_and_never_the_tool_result(
    make_harness: HarnessFactory, person: Person, mode: str
) -> None:
    h = make_harness()
    handler = PersonAtTheClient(person, "approve")
    with anyio.fail_after(30):
        async with UrlOnlyClient(h.server, mode=mode, elicitation_callback=handler) as client:
            result = await client.call_tool("delete_contact", DELETE_C1)
    done = outcome_of(result)
    assert (done.status, done.channel) == ("done", "url_elicitation")
    assert len(handler.requests) == 1
    url = handler.requests[0].url
    assert url.startswith("http://127.0.0.1:") and "/approvals/" in url
    approval_id = url.rsplit("/", 1)[1]
    given = strings_in(result)
    assert not any(url in s or approval_id in s for s in given)
    assert h.tenant.executions == [("delete_contact", {"contact_id": "c1"})]
    approved = next(line for line in h.audit_lines() if line["decision"] == "approved_on_page")
    assert approved["approval"]["via"] == "url_elicitation"


@ERAS
async def test_declining_on_the_page_or_in_the_client_runs_nothing(
    make_harness: HarnessFactory, person: Person, mode: str
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        on_page = PersonAtTheClient(person, "decline")
        async with UrlOnlyClient(h.server, mode=mode, elicitation_callback=on_page) as client:
            first = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
        in_client = PersonAtTheClient(person, "none", answer="decline")
        async with UrlOnlyClient(h.server, mode=mode, elicitation_callback=in_client) as client:
            second = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            third = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (first.status, first.reason) == ("cancelled", "declined")
    assert (second.status, second.reason) == ("cancelled", "declined")
    assert third.status == "cancelled"
    assert first.approval_url is None and second.approval_url is None
    assert h.tenant.executions == []


@ERAS
async def test_a_person_who_never_decides_runs_nothing(
    make_harness: HarnessFactory, person: Person, mode: str
) -> None:
    h = make_harness(elicitation_timeout_s=0.2)
    handler = PersonAtTheClient(person, "none")  # opens nothing, says "accept" (went to the page)
    with anyio.fail_after(30):
        async with UrlOnlyClient(h.server, mode=mode, elicitation_callback=handler) as client:
            outcome = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (outcome.status, outcome.reason, outcome.approval_url) == ("cancelled", "timeout", None)
    assert h.tenant.executions == []


async def test_a_form_capable_client_is_asked_with_the_form_first(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    asked: list[str] = []

    async def form_yes(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        asked.append(params.mode)
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with Client(h.server, mode="legacy", elicitation_callback=form_yes) as client:
        done = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (done.status, done.channel, asked) == ("done", "elicitation", ["form"])
    assert len(h.tenant.executions) == 1
