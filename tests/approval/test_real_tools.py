"""The approval page over the REAL tools (`build_server` over the sandbox tenant), counted at the upstream.

In process in both eras, over stdio (a `python -m klink_mcp` subprocess against the sandbox served
on loopback) and over Streamable HTTP on loopback (the page mounted on the MCP app). The person gets
the link through the person's channels: in process through the guard's `on_approval_link` hook;
over stdio through `KLINK_APPROVAL_OPEN_BROWSER=1` with `BROWSER` set to a recorder (the desktop path);
over HTTP from the page mounted on the server.

The tool layer does not yet carry `approval_required` in its `WriteOutcome` (it is being refactored);
until it does, the first call of a guarded tool is a tool error that changes nothing, and the tests
that need the link IN the tool result skip with the reason. Nothing here depends on which.
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
from klink_mcp.tools.results import WriteOutcome
from tests.approval._support import Person, replay_everything, strings_in
from tests.helpers.server import make_server, make_settings
from tests.server.test_transports import _serve

pytestmark = pytest.mark.anyio

ERAS = pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["handshake-era", "2026-era"])
CARRIES_LINK = "approval_url" in WriteOutcome.model_fields
NEEDS_TOOL_LAYER = pytest.mark.skipif(
    not CARRIES_LINK,
    reason="tool layer: WriteOutcome must accept status approval_required and pass Pending.approval_url, "
    "approval_id and expires_in_s through run_guarded (klink_mcp/tools/results.py and guarded.py)",
)


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
                    given += [u for u in links.urls if CARRIES_LINK]  # only what the model was shown
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
                assert first.is_error or first.structured_content["status"] == "approval_required"  # type: ignore[index]
                assert deletes(tenant) == [] and len(links.urls) == 1
                await person.approve(links.urls[0])
                done = await client.call_tool("delete_contact", {"contact_id": contact_id})
                assert done.structured_content is not None and done.structured_content["status"] == "done"
                await client.call_tool("delete_contact", {"contact_id": contact_id})
    finally:
        await person.aclose()
        await links.guard.aclose()
    assert deletes(tenant) == [f"/api/v1/contacts/{contact_id}"]


@NEEDS_TOOL_LAYER
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


@pytest.mark.skip(
    reason="tool layer: send_message must call Guard.authorize(..., text_field='message') and send "
    "Approval.approved_text (the person's edited, cleaned text) instead of its argument, and report it "
    "in the result; covered over the guard harness in test_page_flow.py and test_browser.py"
)
async def test_over_the_real_tools_the_edited_text_is_what_is_sent() -> None:
    raise AssertionError("skipped")


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
