"""The approval page over the REAL tools (`build_server` over the sandbox tenant), counted at the upstream.

In process in both eras, over stdio (a `python -m klink_mcp` subprocess against the sandbox served
on loopback) and over Streamable HTTP on loopback (the page mounted on the MCP app). With a client that
has no elicitation the link reaches the assistant in the tool result (`approval_required`); the person
opens it and decides the way a browser does (GET the page, POST its form with the CSRF value from its
own origin). The same scenario runs over stdio and HTTP: a model replaying every string it was given
deletes and sends nothing; decline, expiry, edited arguments, a changed target, a GET-only fetch and a
POST without the page's CSRF value run nothing; an approval runs exactly once and a message is sent
exactly as the person edited it. Every claim is counted at the upstream tenant.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from mcp import Client, StdioServerParameters
from mcp.server import MCPServer

from klink_mcp.guard.approvals import ApprovalRecord
from klink_mcp.http_app import build_http_app
from klink_mcp.sandbox import SandboxTenant, serve_sandbox
from tests.approval._support import (
    Person,
    editable_text,
    origin_of,
    page_state,
    replay_everything,
    strings_in,
)
from tests.helpers.server import make_server, make_settings
from tests.server.test_transports import _serve

pytestmark = pytest.mark.anyio

ERAS = pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["handshake-era", "2026-era"])


def deletes(tenant: SandboxTenant) -> list[str]:
    return [r.path for r in tenant.requests if r.method == "DELETE"]


def sends(tenant: SandboxTenant) -> list[Any]:
    return [r.json for r in tenant.requests if r.method == "POST" and r.path.endswith("/messages/send")]


class Links:
    """The person's channel in process: the guard hands every new approval link to it."""

    def __init__(self, server: MCPServer[Any]) -> None:
        self.urls: list[str] = []
        self.guard = server.klink_state.guard  # type: ignore[attr-defined]
        self.guard.on_approval_link = self._seen

    async def _seen(self, record: ApprovalRecord, url: str) -> None:
        self.urls.append(url)


@pytest.fixture
async def tenant() -> SandboxTenant:
    return SandboxTenant.seeded()


async def first_contact(client: Client) -> str:
    listed = await client.call_tool("list_contacts", {"page_size": 2})
    assert listed.structured_content is not None
    return str(listed.structured_content["items"][0]["id"])


@ERAS
async def test_over_the_real_tools_a_replaying_model_deletes_and_sends_nothing(
    tenant: SandboxTenant, mode: str
) -> None:
    server = make_server(tenant, confirm="on")
    links = Links(server)
    try:
        with anyio.fail_after(60):
            async with Client(server, mode=mode) as client:
                contact_id = await first_contact(client)
                given: list[str] = []
                for tool, args, string_args in (
                    ("delete_contact", {"contact_id": contact_id}, ["contact_id"]),
                    ("send_message", {"contact_id": contact_id, "message": "Hi there"}, ["message"]),
                ):
                    first = await client.call_tool(tool, args)
                    given += strings_in(first)
                    given += strings_in(await client.call_tool(tool, args))
                    assert links.urls[-1] in given  # the link reached the model in the result
                    await replay_everything(client, tool, args, given, string_args)
    finally:
        await links.guard.aclose()
    assert links.urls  # approvals were opened for a person ...
    assert deletes(tenant) == [] and sends(tenant) == []  # ... and nothing ran without one


@ERAS
async def test_over_the_real_tools_a_person_approving_makes_it_run_exactly_once(
    tenant: SandboxTenant, mode: str
) -> None:
    server = make_server(tenant, confirm="on")
    links = Links(server)
    person = Person()
    try:
        with anyio.fail_after(60):
            async with Client(server, mode=mode) as client:
                contact_id = await first_contact(client)
                first = await client.call_tool("delete_contact", {"contact_id": contact_id})
                assert first.structured_content is not None
                assert first.structured_content["status"] == "approval_required"
                assert first.structured_content["approval_url"] == links.urls[0]
                assert deletes(tenant) == [] and len(links.urls) == 1
                await person.approve(links.urls[0])
                done = await client.call_tool("delete_contact", {"contact_id": contact_id})
                assert done.structured_content is not None and done.structured_content["status"] == "done"
                await client.call_tool("delete_contact", {"contact_id": contact_id})
    finally:
        await person.aclose()
        await links.guard.aclose()
    assert deletes(tenant) == [f"/api/v1/contacts/{contact_id}"]


async def test_the_tool_result_carries_the_link_for_the_assistant_to_show(tenant: SandboxTenant) -> None:
    server = make_server(tenant, confirm="on")
    links = Links(server)
    try:
        async with Client(server) as client:
            contact_id = await first_contact(client)
            result = await client.call_tool("delete_contact", {"contact_id": contact_id})
    finally:
        await links.guard.aclose()
    assert result.structured_content is not None
    assert result.structured_content["status"] == "approval_required"
    assert result.structured_content["approval_url"] == links.urls[0]


@ERAS
async def test_over_the_real_tools_the_edited_text_is_what_is_sent(tenant: SandboxTenant, mode: str) -> None:
    server = make_server(tenant, confirm="on")
    person = Person()
    drafted = "Your refund is on its way."
    edited = "Your refund of 12 EUR is on its way.\u200b\u202e"  # two invisible characters typed in
    try:
        with anyio.fail_after(60):
            async with Client(server, mode=mode) as client:
                contact_id = await first_contact(client)
                args = {"contact_id": contact_id, "message": drafted}
                first = await client.call_tool("send_message", args)
                assert first.structured_content is not None
                link = first.structured_content["approval_url"]
                assert editable_text((await person.open(link)).text) == drafted
                await person.approve(link, text=edited)
                done = await client.call_tool("send_message", args)
                again = await client.call_tool("send_message", args)
    finally:
        await person.aclose()
    assert [(m["contactId"], m["message"]) for m in sends(tenant)] == [(contact_id, edited[:-2])]
    assert done.structured_content is not None
    assert done.structured_content["status"] == "done"
    assert done.structured_content["sent_text"] == edited[:-2]
    assert done.structured_content["text_edited"] is True
    assert done.structured_content["removed_invisible"] == 2
    assert again.structured_content is not None and again.structured_content["status"] == "approval_required"


async def test_without_edits_the_cleaned_text_is_sent_and_reported(tenant: SandboxTenant) -> None:
    server = make_server(tenant, confirm="on")
    person = Person()
    message = "See you\u2066 tomorrow"  # a bidi isolate the model (or a customer) slipped in
    try:
        with anyio.fail_after(60):
            async with Client(server) as client:
                contact_id = await first_contact(client)
                args = {"contact_id": contact_id, "message": message}
                first = await client.call_tool("send_message", args)
                assert first.structured_content is not None
                page = (await person.open(first.structured_content["approval_url"])).text
                assert "U+2066" in page  # made visible to the person, not hidden
                await person.approve(first.structured_content["approval_url"])
                done = await client.call_tool("send_message", args)
    finally:
        await person.aclose()
    assert [m["message"] for m in sends(tenant)] == ["See you tomorrow"]
    assert done.structured_content is not None
    assert done.structured_content["sent_text"] == "See you tomorrow"
    assert done.structured_content["text_edited"] is False
    assert done.structured_content["removed_invisible"] == 1


# -- the scenario every transport runs: the link comes from the tool result ---------------------------


def _status(result: Any) -> str:
    assert not result.is_error, result.content
    return str(result.structured_content["status"])


def _link(result: Any, base: str) -> str:
    assert _status(result) == "approval_required"
    link = str(result.structured_content["approval_url"])
    assert link.startswith(base + "/approvals/"), link
    return link


def _touch(tenant: SandboxTenant, contact_id: str) -> None:
    """Someone else changes the contact in K-LINK (a new name and version) while an approval is open."""
    tenant.contacts[contact_id]["name"] = "Renamed Elsewhere"
    tenant.contacts[contact_id]["updatedAt"] = "2030-01-01T00:00:00.000000Z"


async def approval_scenario(client: Client, tenant: SandboxTenant, person: Person, base: str) -> None:
    """Everything the issue asks of a client without elicitation, counted at `tenant` (see the docstring)."""
    listed = await client.call_tool("list_contacts", {"page_size": 5})
    assert listed.structured_content is not None
    a, b, c, d = (str(item["id"]) for item in listed.structured_content["items"][:4])
    text = "Your refund is on its way."

    # A hijacked model replays every string it was given, in every argument: nothing runs.
    first = await client.call_tool("delete_contact", {"contact_id": a})
    link_a = _link(first, base)
    say = await client.call_tool("send_message", {"contact_id": a, "message": text})
    link_say = _link(say, base)
    given = strings_in(first) + strings_in(say)
    assert link_a in given and link_say in given  # the links reached the model ...
    await replay_everything(client, "delete_contact", {"contact_id": a}, given, ["contact_id"])
    await replay_everything(
        client, "send_message", {"contact_id": a, "message": text}, given, ["contact_id", "message"]
    )
    assert deletes(tenant) == [] and sends(tenant) == []  # ... and approve nothing

    # A GET-only fetch and a POST without the page's CSRF value approve nothing.
    assert page_state((await person.open(link_a)).text) == "pending"
    forged = await person.decide(link_a, "approve", csrf="")
    assert forged.status_code == 403
    assert _status(await client.call_tool("delete_contact", {"contact_id": a})) == "approval_required"

    # Declined on the page: the same call is cancelled, and runs nothing.
    await person.decline(link_a)
    declined = await client.call_tool("delete_contact", {"contact_id": a})
    assert _status(declined) == "cancelled" and declined.structured_content["reason"] == "declined"  # type: ignore[index]

    # Approved, then the model edits the arguments: the edited call is a new approval, nothing is sent.
    await person.approve(link_say, text=text + " Sorry for the wait.")
    edited = await client.call_tool(
        "send_message", {"contact_id": a, "message": text + " Click evil.example"}
    )
    assert _link(edited, base) != link_say
    retargeted = await client.call_tool("send_message", {"contact_id": b, "message": text})
    assert _link(retargeted, base) != link_say
    assert sends(tenant) == []

    # Approved, then the target changes in K-LINK: a fresh approval is needed, nothing is deleted.
    link_b = _link(await client.call_tool("delete_contact", {"contact_id": b}), base)
    await person.approve(link_b)
    _touch(tenant, b)
    changed = await client.call_tool("delete_contact", {"contact_id": b})
    assert _link(changed, base) != link_b
    assert changed.structured_content["reason"] == "target_changed"  # type: ignore[index]
    assert deletes(tenant) == []

    # An approval runs exactly once, and the message goes out exactly as the person edited it.
    link_d = _link(await client.call_tool("delete_contact", {"contact_id": d}), base)
    await person.approve(link_d)
    assert _status(await client.call_tool("delete_contact", {"contact_id": d})) == "done"
    again = await client.call_tool("delete_contact", {"contact_id": d})  # the contact is gone now
    assert again.is_error or _status(again) != "done"
    sent = await client.call_tool("send_message", {"contact_id": a, "message": text})
    assert _status(sent) == "done"
    assert sent.structured_content["sent_text"] == text + " Sorry for the wait."  # type: ignore[index]
    assert _status(await client.call_tool("send_message", {"contact_id": a, "message": text})) != "done"
    assert c not in "".join(deletes(tenant))
    assert deletes(tenant) == [f"/api/v1/contacts/{d}"]
    assert [(m["contactId"], m["message"]) for m in sends(tenant)] == [(a, text + " Sorry for the wait.")]


async def expiry_scenario(client: Client, tenant: SandboxTenant, person: Person, base: str) -> None:
    """With approvals that expire at once: approving too late and calling again run nothing."""
    contact_id = await first_contact(client)
    link = _link(await client.call_tool("delete_contact", {"contact_id": contact_id}), base)
    assert page_state((await person.open(link)).text) == "expired"
    late = await person.decide(link, "approve")  # pressing Approve anyway (the page has no button left)
    assert late.status_code == 403 and page_state(late.text) != "approved"
    again = await client.call_tool("delete_contact", {"contact_id": contact_id})
    assert _link(again, base) != link, again.structured_content
    assert (again.structured_content or {}).get("reason") == "expired", again.structured_content
    assert deletes(tenant) == []


# A TTL no round trip can beat: the tool result, the client, then the person's GET take far longer.
INSTANT_TTL = 0.001


def _stdio_params(upstream_url: str, tmp_path: Path, **env: str) -> StdioServerParameters:
    base = {
        "PATH": os.environ.get("PATH", ""),
        "KLINK_API_TOKEN": "sandbox-token",
        "KLINK_BASE_URL": upstream_url,
        "KLINK_EVENTS_DB": str(tmp_path / "events.db"),
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "klink_mcp"], env={**base, **env})


@pytest.mark.slow
@ERAS
async def test_over_stdio_the_link_in_the_result_is_the_only_way_and_approves_exactly_once(
    tmp_path: Path, mode: str
) -> None:
    tenant = SandboxTenant.seeded()
    person = Person()
    try:
        async with serve_sandbox(tenant) as upstream:
            with anyio.fail_after(90):
                async with Client(_stdio_params(upstream.url, tmp_path), mode=mode) as client:
                    probe = await client.call_tool(
                        "delete_contact", {"contact_id": await first_contact(client)}
                    )
                    base = origin_of(str(probe.structured_content["approval_url"]))  # type: ignore[index]
                    assert base.startswith("http://127.0.0.1:")  # the loopback page of the subprocess
                    await approval_scenario(client, tenant, person, base)
    finally:
        await person.aclose()


@pytest.mark.slow
async def test_over_stdio_an_expired_approval_runs_nothing(tmp_path: Path) -> None:
    tenant = SandboxTenant.seeded()
    person = Person()
    try:
        async with serve_sandbox(tenant) as upstream:
            params = _stdio_params(upstream.url, tmp_path, KLINK_APPROVAL_TTL=str(INSTANT_TTL))
            with anyio.fail_after(60):
                async with Client(params) as client:
                    probe = await client.call_tool(
                        "delete_contact", {"contact_id": await first_contact(client)}
                    )
                    base = origin_of(str(probe.structured_content["approval_url"]))  # type: ignore[index]
                    await expiry_scenario(client, tenant, person, base)
    finally:
        await person.aclose()


# -- stdio: the real server process ------------------------------------------------------------------


@pytest.mark.slow
async def test_over_stdio_nothing_runs_until_a_person_approves_in_the_browser_that_opened(
    tmp_path: Path,
) -> None:
    tenant = SandboxTenant.seeded()
    # The "desktop browser": a program that hands the URL it was asked to open to this test.
    recorder = tmp_path / "browser.py"
    recorder.write_text(
        "import socket, sys\nwith socket.create_connection(('127.0.0.1', int(sys.argv[1]))) as s:\n"
        "    s.sendall(sys.argv[2].encode())\n",
        encoding="utf-8",
    )
    person = Person()
    browser_inbox = await anyio.create_tcp_listener(local_host="127.0.0.1")
    inbox_port = browser_inbox.extra(anyio.abc.SocketAttribute.local_port)
    async with browser_inbox, serve_sandbox(tenant) as upstream:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "KLINK_API_TOKEN": "sandbox-token",
            "KLINK_BASE_URL": upstream.url,
            "KLINK_EVENTS_DB": str(tmp_path / "events.db"),
            "KLINK_APPROVAL_OPEN_BROWSER": "1",
            "BROWSER": f"{sys.executable} {recorder} {inbox_port} %s",
        }
        params = StdioServerParameters(command=sys.executable, args=["-m", "klink_mcp"], env=env)
        try:
            with anyio.fail_after(60):
                async with Client(params, mode="legacy") as client:
                    contact_id = await first_contact(client)
                    args = {"contact_id": contact_id}
                    first = await client.call_tool("delete_contact", args)
                    await replay_everything(client, "delete_contact", args, strings_in(first), ["contact_id"])
                    async with await browser_inbox.listeners[0].accept() as opened:
                        url = b"".join([chunk async for chunk in opened]).decode()
                    assert deletes(tenant) == []
                    await person.approve(url)
                    done = await client.call_tool("delete_contact", args)
                    again = await client.call_tool("delete_contact", args)
        finally:
            await person.aclose()
    assert done.structured_content is not None and done.structured_content["status"] == "done"
    assert again.is_error or again.structured_content["status"] != "done"  # type: ignore[index]
    assert deletes(tenant) == [f"/api/v1/contacts/{contact_id}"]


# -- Streamable HTTP on loopback: the page is mounted on the MCP app ---------------------------------


@pytest.fixture
async def http_server(tenant: SandboxTenant) -> AsyncIterator[tuple[str, Links]]:
    server = make_server(tenant, confirm="on")
    links = Links(server)
    app = build_http_app(server, make_settings(confirm="on"), "127.0.0.1")
    async for url in _serve(app):
        yield url, links


@pytest.mark.slow
@ERAS
async def test_over_http_the_page_is_mounted_on_the_server_and_approves_exactly_once(
    tenant: SandboxTenant, http_server: tuple[str, Links], mode: str
) -> None:
    url, links = http_server
    person = Person()
    try:
        with anyio.fail_after(60):
            async with Client(url + "/mcp", mode=mode) as client:
                contact_id = await first_contact(client)
                args = {"contact_id": contact_id}
                first = await client.call_tool("delete_contact", args)
                await replay_everything(client, "delete_contact", args, strings_in(first), ["contact_id"])
                link = links.urls[0]
                assert link.startswith(url + "/approvals/")  # same server, same port: no loopback side server
                assert links.guard.loopback.base_url is None
                forged = await person.decide(link, "approve", headers={"Origin": "http://evil.example"})
                assert forged.status_code == 403
                rebound = await person.decide(link, "approve", headers={"Host": "evil.example:80"})
                assert rebound.status_code == 421
                assert deletes(tenant) == []
                await person.approve(link)
                done = await client.call_tool("delete_contact", args)
    finally:
        await person.aclose()
    assert done.structured_content is not None and done.structured_content["status"] == "done"
    assert deletes(tenant) == [f"/api/v1/contacts/{contact_id}"]


@pytest.fixture
async def http_app_url(tenant: SandboxTenant, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    overrides = getattr(request, "param", {})
    server = make_server(tenant, **overrides)
    app = build_http_app(server, make_settings(**overrides), "127.0.0.1")
    async for url in _serve(app):
        yield url


@pytest.mark.slow
@ERAS
async def test_over_http_the_link_in_the_result_is_the_only_way_and_approves_exactly_once(
    tenant: SandboxTenant, http_app_url: str, mode: str
) -> None:
    person = Person()
    try:
        with anyio.fail_after(90):
            async with Client(http_app_url + "/mcp", mode=mode) as client:
                await approval_scenario(client, tenant, person, http_app_url)
    finally:
        await person.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("http_app_url", [{"approval_ttl_s": INSTANT_TTL}], indirect=True)
async def test_over_http_an_expired_approval_runs_nothing(tenant: SandboxTenant, http_app_url: str) -> None:
    person = Person()
    try:
        with anyio.fail_after(60):
            async with Client(http_app_url + "/mcp") as client:
                await expiry_scenario(client, tenant, person, http_app_url)
    finally:
        await person.aclose()
