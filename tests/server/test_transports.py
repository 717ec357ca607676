"""The real thing: the stdio subprocess and Streamable HTTP on loopback (both protocol eras)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from klink_mcp.http_app import build_http_app
from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import make_server, make_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINK_")}
    env.update({"KLINK_EVENTS_DB": ":memory:", **extra})
    return env


async def test_stdio_subprocess_lists_and_calls_tools() -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "klink_mcp"], env=_env())
    with anyio.fail_after(60):
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"list_contacts", "create_ticket", "send_message"} <= names
            result = await client.call_tool("list_contacts", {"page_size": 2})
            assert not result.is_error and len(result.structured_content["items"]) == 2


async def test_stdio_read_only_hides_write_tools_and_refuses_them() -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "klink_mcp", "--read-only"], env=_env()
    )
    with anyio.fail_after(60):
        async with Client(params, mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "list_tickets" in names
            assert not names & {"delete_contact", "send_message", "create_ticket", "update_contact_tags"}
            refused = await client.call_tool("delete_contact", {"contact_id": "x"})
            assert refused.is_error


async def _serve(app: Any) -> AsyncIterator[str]:
    # The socket listens before the server task starts, so clients may connect at once: the kernel
    # queues them until uvicorn (after the app's lifespan startup) accepts. No polling needed.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True


@pytest.fixture
async def http_url() -> AsyncIterator[str]:
    server = make_server(SandboxTenant.seeded())
    app = build_http_app(server, make_settings(), "127.0.0.1")
    async for url in _serve(app):
        yield url


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_http_client_over_loopback_in_both_eras(http_url: str, mode: str) -> None:
    with anyio.fail_after(30):
        async with Client(f"{http_url}/mcp", mode=mode) as client:  # type: ignore[arg-type]
            names = {t.name for t in (await client.list_tools()).tools}
            assert "get_ticket_by_number" in names
            result = await client.call_tool("list_tickets", {"status": "open", "page_size": 3})
            assert not result.is_error and result.structured_content["items"]


async def test_http_rejects_bad_host_with_421_and_bad_origin_with_403(http_url: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with httpx2.AsyncClient() as http:
        bad_host = await http.post(
            f"{http_url}/mcp", json=body, headers={**headers, "host": "evil.example:80"}
        )
        assert bad_host.status_code == 421
        bad_origin = await http.post(
            f"{http_url}/mcp", json=body, headers={**headers, "origin": "http://evil.example"}
        )
        assert bad_origin.status_code == 403


async def test_http_bearer_token_is_required_when_configured() -> None:
    server = make_server(SandboxTenant.seeded())
    settings = make_settings(http_auth_token="s3cret-http-token-0123456789abcdef")
    app = build_http_app(server, settings, "127.0.0.1")
    async for url in _serve(app):
        async with httpx2.AsyncClient() as http:
            denied = await http.post(f"{url}/mcp", json={}, headers={"accept": "application/json"})
            assert denied.status_code == 401
        headers = {"Authorization": "Bearer s3cret-http-token-0123456789abcdef"}
        async with httpx2.AsyncClient(headers=headers) as http_client:
            transport = streamable_http_client(f"{url}/mcp", http_client=http_client)
            async with Client(transport, mode="legacy") as client:
                assert (await client.list_tools()).tools


def test_cli_refuses_to_bind_beyond_loopback_without_a_token() -> None:
    from klink_mcp.cli import main

    assert main(["serve", "--http", "--host", "0.0.0.0", "--port", "1"]) == 2


def test_webhooks_beside_stdio_need_a_configured_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from klink_mcp.cli import main

    for name in ("KLINK_WEBHOOK_SECRET", "KLINK_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KLINK_EVENTS_DB", ":memory:")
    assert main(["serve", "--webhooks-port", "1"]) == 2
    assert "KLINK_WEBHOOK_SECRET" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_confirmation_by_elicitation_over_http(mode: str) -> None:
    import mcp.types as types
    from mcp.client import ClientRequestContext

    tenant = SandboxTenant.seeded()
    contact = next(c for c in tenant.contacts.values() if not c.get("deletedAt"))
    asked: list[str] = []

    async def yes(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"confirm": True})

    app = build_http_app(make_server(tenant), make_settings(), "127.0.0.1")
    async for url in _serve(app):
        with anyio.fail_after(30):
            async with Client(f"{url}/mcp", mode=mode, elicitation_callback=yes) as client:  # type: ignore[arg-type]
                result = await client.call_tool("delete_contact", {"contact_id": contact["id"]})
    assert result.structured_content["status"] == "done"
    assert len(asked) == 1 and tenant.contacts[contact["id"]]["deletedAt"]
    assert [r.method for r in tenant.requests if r.method != "GET"] == ["DELETE"]
