"""The approval page with sign-in: who approves is a signed-in person, and under four-eyes not the asker.

End to end over the real HTTP app and the local IdP: Alice (OAuth access token with klink:delete)
asks to delete a contact; the page sends a browser without a session to sign in; Alice herself
cannot approve her own request (four-eyes on delete_contact); Bob, holding klink:approve, can; the
call then runs once and the audit names the requester and the approver's decision.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest

from klink_mcp.guard.approvals import ApprovalRecord
from tests.auth.harness import RunningServer, authed_client, running_klink
from tests.auth.idp import LocalIdP, Person, running_idp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
async def idp() -> AsyncIterator[LocalIdP]:
    async with running_idp() as provider:
        yield provider


async def _signed_in_browser(http: httpx2.AsyncClient, srv: RunningServer, page: str) -> httpx2.Response:
    """Open the page without a session: redirected to sign in, through the IdP, back to the page."""
    first = await http.get(page)
    assert first.status_code == 303, first.text[:200]
    login = first.headers["location"]
    assert login.startswith("/approvals/login?next=")
    start = await http.get(f"{srv.url}{login}")
    assert start.status_code == 302
    at_idp = await http.get(start.headers["location"])
    assert at_idp.status_code == 302
    back = await http.get(at_idp.headers["location"])
    assert back.status_code == 303
    shown = await http.get(f"{srv.url}{back.headers['location']}")
    assert shown.status_code == 200
    return shown


async def _press(
    http: httpx2.AsyncClient, srv: RunningServer, page: str, shown: httpx2.Response
) -> httpx2.Response:
    match = re.search(r'name="csrf" value="([^"]+)"', shown.text)
    assert match is not None
    return await http.post(
        page,
        data={"csrf": match.group(1), "decision": "approve"},
        headers={"origin": srv.url, "sec-fetch-site": "same-origin"},
    )


async def test_under_four_eyes_the_asker_cannot_approve_and_another_approver_can(idp: LocalIdP) -> None:
    links: list[str] = []

    async def seen(record: ApprovalRecord, url: str) -> None:
        links.append(url)

    def deletes(srv: RunningServer) -> list[Any]:
        return [r for r in srv.tenant.requests if r.method == "DELETE"]

    with anyio.fail_after(60):
        async with running_klink(idp, sign_in=True, confirm="on", four_eyes_tools=("delete_contact",)) as srv:
            srv.server.klink_state.guard.on_approval_link = seen  # type: ignore[attr-defined]
            token = idp.access_token(srv.mcp_url, ["klink:read", "klink:delete"], sub="alice-sub")
            async with authed_client(srv.mcp_url, token) as client:
                listed = await client.call_tool("list_contacts", {"page_size": 1})
                contact_id = listed.structured_content["items"][0]["id"]  # type: ignore[index]
                first = await client.call_tool("delete_contact", {"contact_id": contact_id})
                assert first.is_error or first.structured_content["status"] == "approval_required"  # type: ignore[index]
                assert len(links) == 1 and deletes(srv) == []
                page = links[0]
                assert page.startswith(srv.url)

                idp.next_person = Person("alice-sub", "Alice Agent", "alice@example.com", ["klink:approve"])
                async with httpx2.AsyncClient() as alice:
                    shown = await _signed_in_browser(alice, srv, page)
                    refused = await _press(alice, srv, page, shown)
                assert refused.status_code == 403
                assert "your own request" in refused.text
                assert deletes(srv) == []

                idp.next_person = Person("bob-sub", "Bob Lead", "bob@example.com", ["klink:approve"])
                async with httpx2.AsyncClient() as bob:
                    shown = await _signed_in_browser(bob, srv, page)
                    approved = await _press(bob, srv, page, shown)
                assert approved.status_code == 200 and "already decided" not in approved.text

                done = await client.call_tool("delete_contact", {"contact_id": contact_id})
                assert done.structured_content is not None and done.structured_content["status"] == "done"
            assert len(deletes(srv)) == 1
            audit = srv.server.klink_state.guard.audit.recent(20)  # type: ignore[attr-defined]
    approved_rows = [r for r in audit if r["decision"] == "approved_on_page"]
    assert approved_rows and approved_rows[0]["approval"]["principal"] == "alice-sub"
    assert approved_rows[0]["approval"]["approver"] == "bob-sub"  # who approved, not who asked
    asked = [r for r in audit if r["decision"] == "confirmation_required"]
    assert asked and asked[0]["principal"] == "alice-sub" and asked[0].get("request_id")


async def test_without_sign_in_a_four_eyes_tool_cannot_be_approved_on_the_page(idp: LocalIdP) -> None:
    links: list[str] = []

    async def seen(record: ApprovalRecord, url: str) -> None:
        links.append(url)

    with anyio.fail_after(60):
        async with running_klink(
            idp, sign_in=False, confirm="on", four_eyes_tools=("delete_contact",)
        ) as srv:
            srv.server.klink_state.guard.on_approval_link = seen  # type: ignore[attr-defined]
            token = idp.access_token(srv.mcp_url, ["klink:read", "klink:delete"], sub="alice-sub")
            async with authed_client(srv.mcp_url, token) as client:
                listed = await client.call_tool("list_contacts", {"page_size": 1})
                contact_id = listed.structured_content["items"][0]["id"]  # type: ignore[index]
                await client.call_tool("delete_contact", {"contact_id": contact_id})
            assert len(links) == 1
            async with httpx2.AsyncClient() as browser:
                shown = await browser.get(links[0])
                assert shown.status_code == 200  # no sign-in configured: the page shows ...
                refused = await _press(browser, srv, links[0], shown)  # ... but refuses the approval
            assert refused.status_code == 403 and "Sign in" in refused.text
            assert [r for r in srv.tenant.requests if r.method == "DELETE"] == []
