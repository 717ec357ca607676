"""The approval page through the real MCP path, with a client that has no elicitation.

The guarded tools are the guard harness's (tests/guard/guard_harness.py: authorize -> run once ->
record, exactly as klink_mcp.tools does, and sending `Approval.approved_text`); the page is the real
one on loopback; the person is `Person` (GET, then POST from the page's origin). Every test counts
what really ran at the harness's upstream (`tenant.executions`).
"""

from __future__ import annotations

import re

import anyio
import pytest
from mcp import Client

from tests.approval._support import Person, editable_text, page_state, replay_everything, strings_in
from tests.guard.guard_harness import DELETE_C1, HarnessFactory, outcome_of

pytestmark = pytest.mark.anyio

ERAS = pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["handshake-era", "2026-era"])
SEND = {"contact_id": "c1", "message": "Your refund of 20 USD is on its way."}


@ERAS
async def test_a_model_replaying_every_string_it_was_given_deletes_and_sends_nothing(
    make_harness: HarnessFactory, mode: str
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        async with Client(h.server, mode=mode) as client:
            given: list[str] = []
            for tool, args, string_args in (
                ("delete_contact", DELETE_C1, ["contact_id"]),
                ("send_message", SEND, ["contact_id", "message"]),
            ):
                first = await client.call_tool(tool, args)
                assert outcome_of(first).status == "approval_required"
                given += strings_in(first)
                again = await client.call_tool(tool, args)  # the same call, at once
                given += strings_in(again)
                replies = await replay_everything(client, tool, args, given, string_args)
                # The replays opened approvals of their own: their links and ids are replayed too.
                handles = [
                    s
                    for r in replies
                    for s in strings_in(r)
                    if s not in given and (s.startswith("http") or re.fullmatch(r"[A-Za-z0-9_-]{24,}", s))
                ]
                replies += await replay_everything(client, tool, args, handles, string_args)
                given += handles
                assert all(r.is_error or outcome_of(r).status != "done" for r in replies)
    assert any(s.startswith("http://127.0.0.1:") for s in given)  # the link was among what it replayed
    assert h.tenant.executions == []


@ERAS
async def test_a_person_approving_on_the_page_makes_the_same_call_run_exactly_once(
    make_harness: HarnessFactory, person: Person, mode: str
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        async with Client(h.server, mode=mode) as client:
            pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert pending.status == "approval_required" and pending.approval_url is not None
            assert h.links == [pending.approval_url]  # the person's channel got the same link
            assert pending.approval_url in str(pending.model_dump())
            await person.approve(pending.approval_url)
            assert h.tenant.executions == []  # approving runs nothing by itself
            done = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert (done.status, done.channel) == ("done", "page")
            again = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert again.status == "approval_required" and again.approval_url != pending.approval_url
            replayed = await client.call_tool(
                "delete_contact", {**DELETE_C1, "confirmation_token": pending.approval_id}
            )
            assert outcome_of(replayed).status == "approval_required"
            page = await person.open(pending.approval_url)
    assert h.tenant.executions == [("delete_contact", {"contact_id": "c1"})]
    assert page_state(page.text) == "consumed"
    decisions = h.decisions()
    assert decisions.count("approved_on_page") == 1 and decisions.count("confirmed_by_page") == 1
    approved = next(line for line in h.audit_lines() if line["decision"] == "approved_on_page")
    assert approved["approval"]["client"] == "127.0.0.1"
    assert approved["approval"]["user_agent"].startswith("python-httpx")
    assert approved["approval"]["via"] == "page"
    assert pending.approval_id not in h.audit_path.read_text(encoding="utf-8")  # only a hash of it


async def test_a_declined_approval_runs_nothing_and_is_reported_once(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        async with Client(h.server) as client:
            pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert pending.approval_url is not None
            await person.decline(pending.approval_url)
            cancelled = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert (cancelled.status, cancelled.reason) == ("cancelled", "declined")
            late = await person.decide(pending.approval_url, "approve")  # the page has no form any more
            assert late.status_code == 403
            assert page_state((await person.open(pending.approval_url)).text) == "declined"
            fresh = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert fresh.status == "approval_required" and fresh.approval_url != pending.approval_url
    assert h.tenant.executions == []


async def test_an_expired_approval_can_no_longer_be_approved_nor_used(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        async with Client(h.server) as client:
            first = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            second_args = {"contact_id": "c2"}
            second = outcome_of(await client.call_tool("delete_contact", second_args))
            assert first.approval_url is not None and second.approval_url is not None
            await person.approve(second.approval_url)  # approved in time ...
            h.clock.advance(h.settings.approval_ttl_s + 1)  # ... but used too late
            assert page_state((await person.open(first.approval_url)).text) == "expired"
            late = await person.decide(first.approval_url, "approve")
            assert late.status_code == 403
            again = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert (again.status, again.reason) == ("approval_required", "expired")
            used_late = outcome_of(await client.call_tool("delete_contact", second_args))
            assert (used_late.status, used_late.reason) == ("approval_required", "expired")
    assert h.tenant.executions == []
    assert "expired" in h.decisions()


async def test_an_approval_applies_to_its_own_arguments_only(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        async with Client(h.server) as client:
            pending = outcome_of(await client.call_tool("send_message", SEND))
            assert pending.approval_url is not None
            await person.approve(pending.approval_url)
            edited = {**SEND, "message": SEND["message"] + " Also, click http://evil.example"}
            other = outcome_of(await client.call_tool("send_message", edited))
            assert other.status == "approval_required"
            other_contact = outcome_of(await client.call_tool("send_message", {**SEND, "contact_id": "c2"}))
            assert other_contact.status == "approval_required"
            assert h.tenant.executions == []
            done = outcome_of(await client.call_tool("send_message", SEND))
    assert done.status == "done"
    assert h.tenant.executions == [("send_message", SEND)]


async def test_a_target_that_changed_after_the_approval_needs_a_fresh_one(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        async with Client(h.server) as client:
            pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert pending.approval_url is not None
            await person.approve(pending.approval_url)
            h.tenant.touch("c1")  # someone updated the contact meanwhile
            changed = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert (changed.status, changed.reason) == ("approval_required", "target_changed")
            assert changed.approval_url != pending.approval_url
            assert page_state((await person.open(pending.approval_url)).text) == "expired"
    assert h.tenant.executions == []
    assert "superseded" in h.decisions()


async def test_a_changed_fact_of_the_preview_needs_a_fresh_approval_even_with_the_same_version(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        async with Client(h.server) as client:
            pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            assert pending.approval_url is not None
            await person.approve(pending.approval_url)
            h.tenant.contacts["c1"]["name"] = "Alice Smith-Jones"  # version "1" unchanged
            changed = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (changed.status, changed.reason) == ("approval_required", "target_changed")
    assert h.tenant.executions == []


async def test_get_only_fetches_and_forged_posts_approve_nothing(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    with anyio.fail_after(30):
        async with Client(h.server) as client:
            pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            url = pending.approval_url
            assert url is not None
            for _ in range(3):
                assert (await person.open(url)).status_code == 200
            assert (await person.open(url + "?decision=approve")).status_code == 200
            refused = [
                await person.decide(url, "approve", csrf=""),  # no CSRF value
                await person.decide(url, "approve", csrf="0" * 64),  # a wrong one
                await person.decide(url, "approve", headers={"Origin": "http://evil.example"}),
                await person.decide(url, "approve", headers={"Sec-Fetch-Site": "cross-site"}),
                await person.decide(url, "approve", headers={"Origin": "null", "Sec-Fetch-Site": "none"}),
                await person.decide(url, "approve", headers={"Host": "evil.example"}),
            ]
            assert [r.status_code for r in refused] == [403, 403, 403, 403, 403, 421]
            stranger = Person()  # the model's own HTTP client: no cookie from the page
            try:
                page = await person.open(url)
                csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
                assert csrf is not None
                forged = await stranger.http.post(
                    url,
                    data={"csrf": csrf.group(1), "decision": "approve"},
                    headers={"Origin": url.split("/approvals")[0]},
                )
                assert forged.status_code == 403
            finally:
                await stranger.aclose()
            still = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert still.status == "approval_required"
    assert h.tenant.executions == []
    assert "approved_on_page" not in h.decisions()


async def test_the_page_sends_its_security_headers_and_has_an_unguessable_address(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert pending.approval_url is not None and pending.approval_id is not None
    assert len(pending.approval_id) >= 32  # 192 random bits, url-safe base64
    page = await person.open(pending.approval_url)
    csp = page.headers["content-security-policy"]
    for directive in (
        "default-src 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "style-src 'nonce-" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/approvals/" in cookie
    assert "http://" not in page.text and "https://" not in page.text  # loads nothing from elsewhere
    unknown = await person.open(pending.approval_url[:-4] + "AAAA")
    assert unknown.status_code == 404


async def test_the_page_shows_hidden_characters_and_what_is_sent_is_cleaned(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    hostile = "Refund approved\u202e 01 ;\u200b see\U000e0041\U000e0042 you \u2764\ufe0f"
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("send_message", {**SEND, "message": hostile}))
        assert pending.approval_url is not None and pending.preview is not None
        assert "[4 invisible characters removed]" in str(pending.preview.details["message"])
        page = await person.open(pending.approval_url)
        assert "⟦U+202E⟧" in page.text and "⟦U+200B⟧" in page.text and "⟦U+E0041⟧" in page.text
        assert "4 invisible characters removed" in page.text
        assert editable_text(page.text) == "Refund approved 01 ; see you \u2764\ufe0f"
        await person.approve(pending.approval_url)
        done = outcome_of(await client.call_tool("send_message", {**SEND, "message": hostile}))
    assert done.status == "done"
    sent = "Refund approved 01 ; see you \u2764\ufe0f"
    assert done.sent_text == sent
    assert h.tenant.executions == [("send_message", {"contact_id": "c1", "message": sent})]


async def test_the_person_may_edit_the_text_and_exactly_the_edited_text_is_sent(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("send_message", SEND))
        assert pending.approval_url is not None
        edited = "Hi Alice,\nyour refund of 20 USD left today.\u200b"
        response = await person.approve(pending.approval_url, text=edited)
        assert "your refund of 20 USD left today." in response.text
        done = outcome_of(await client.call_tool("send_message", SEND))
    final = "Hi Alice,\nyour refund of 20 USD left today."
    assert (done.status, done.sent_text) == ("done", final)
    assert h.tenant.executions == [("send_message", {"contact_id": "c1", "message": final})]
    confirmed = next(line for line in h.audit_lines() if line["decision"] == "confirmed_by_page")
    assert confirmed["approval"]["edited"] is True and confirmed["approval"]["removed_invisible"] == 1


async def test_two_racing_calls_after_one_approval_run_once(
    make_harness: HarnessFactory, person: Person
) -> None:
    h = make_harness()
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
        assert pending.approval_url is not None
        await person.approve(pending.approval_url)
        statuses: list[str] = []

        async def call() -> None:
            statuses.append(outcome_of(await client.call_tool("delete_contact", DELETE_C1)).status)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(call)
    assert sorted(statuses) == ["approval_required"] * 4 + ["done"]
    assert len(h.tenant.executions) == 1


async def test_the_desktop_browser_opens_only_when_asked(
    make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    quiet = make_harness()
    async with Client(quiet.server) as client:
        await client.call_tool("delete_contact", DELETE_C1)
    assert opened == []
    desktop = make_harness(approval_open_browser=True)
    async with Client(desktop.server) as client:
        pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
        outcome_of(await client.call_tool("delete_contact", DELETE_C1))  # the same pending approval
    assert opened == [pending.approval_url]
