"""Secret hygiene: distinctive canary secrets never show up anywhere a person, a model or a file can see.

Every secret setting gets a canary (the API token, the guard secret, the webhook secrets, the HTTP
bearer token). The server runs against a sandbox that expects THE CANARY token, with DEBUG logging on
every logger (captured as records and, through a stream handler, as formatted text on stderr), an audit
log file that keeps bodies, and every tool path including errors: 401 from a wrong token, 404s,
argument validation, upstream validation, guarded previews, confirmation by token and by elicitation,
replayed and forged tokens, an upstream that echoes the Authorization header back in its error bodies.

The canaries must not appear in: captured stdout/stderr (sys-level and fd-level), log records (message,
arguments, exception text), tool results (content, structured content, meta), resources, the audit log
file, or the reprs of the settings, the server state, the guard and the client. A stdio subprocess
(`python -m klink_mcp`, DEBUG) is checked the same way, once on the sandbox and once sending the canary
token for real to a loopback sandbox server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client import ClientRequestContext
from mcp.client.stdio import stdio_client
from mcp.server import MCPServer

from klink_mcp.api.client import KlinkClient
from klink_mcp.config import Settings
from klink_mcp.http_app import build_http_app
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.sandbox.server import serve_sandbox
from klink_mcp.server import build_server

from ._support import error_code, everything_visible, healthy_read_calls, make_settings

pytestmark = pytest.mark.anyio

MARKER = "SECRET_canary"  # every canary contains it, so a truncated leak is caught too
API_TOKEN = "kpt_SECRET_canary_7f3a9"
GUARD_SECRET = "gsec_SECRET_canary_b41c2_0123456789abcdef"  # >= 32 bytes, as the guard requires
WEBHOOK_SECRET = "whsec_SECRET_canary_93e0d_0123456789abcdef"  # >= 32 bytes, as the settings require
WEBHOOK_PASSWORD = "whpw_SECRET_canary_51aa7"
WEBHOOK_HEADER_VALUE = "whhv_SECRET_canary_0c6d2_0123456789abcdef"
HTTP_AUTH_TOKEN = "http_SECRET_canary_e8b14_0123456789abcdef"
CANARIES = (API_TOKEN, GUARD_SECRET, WEBHOOK_SECRET, WEBHOOK_PASSWORD, WEBHOOK_HEADER_VALUE, HTTP_AUTH_TOKEN)
NIL_UUID = "00000000-0000-0000-0000-000000000000"


def leaks(text: str) -> list[str]:
    """The canaries (or the shared marker) found in `text`."""
    return [c for c in (*CANARIES, MARKER) if c in text]


def secret_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_token": API_TOKEN,
        "guard_secret": GUARD_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "webhook_basic_user": "klink",
        "webhook_basic_password": WEBHOOK_PASSWORD,
        "webhook_header_name": "x-hook",
        "webhook_header_value": WEBHOOK_HEADER_VALUE,
        "http_auth_token": HTTP_AUTH_TOKEN,
        "audit_log": tmp_path / "audit.jsonl",
        "audit_include_bodies": True,
        "log_level": "DEBUG",
        "confirm": "token",  # the guarded paths below use the two-step token flow
    }
    return make_settings(**(values | overrides))


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at emit time (capsys/capfd swap it after fixtures start)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """DEBUG on every logger, captured as records and also formatted onto stderr (as the CLI does)."""
    caplog.set_level(logging.DEBUG)
    handler = CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield caplog
    finally:
        root.removeHandler(handler)


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "DEBUG logging captured nothing: the check would be vacuous"
    assert leaks(caplog.text) == []
    for record in caplog.records:
        everything = json.dumps(vars(record), default=repr, ensure_ascii=False)
        assert leaks(everything) == [], f"{record.name}: {record.getMessage()[:200]}"


class Recorder:
    """Calls tools and resources, keeping every result for the leak check."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[str] = []

    async def call(self, tool: str, args: dict[str, Any]) -> Any:
        with anyio.fail_after(20):
            result = await self.client.call_tool(tool, args)
        self.seen.append(everything_visible(result))
        return result

    async def read(self, uri: str) -> None:
        with anyio.fail_after(20):
            result = await self.client.read_resource(uri)
        self.seen.append(json.dumps(result.model_dump(mode="json", by_alias=True), ensure_ascii=False))

    def assert_clean(self) -> None:
        assert self.seen
        for visible in self.seen:
            assert leaks(visible) == [], visible[:500]


async def exercise_every_path(rec: Recorder, tenant: SandboxTenant) -> None:
    """Every tool, happy and unhappy, including the guarded two-step flows."""
    contact = next(c for c in tenant.contacts.values() if not c.get("deletedAt") and c.get("tags"))
    victim = next(c for c in tenant.contacts.values() if not c.get("deletedAt") and c["id"] != contact["id"])
    ticket = next(iter(tenant.tickets.values()))

    for tool, args in healthy_read_calls(tenant):
        assert not (await rec.call(tool, args)).is_error, tool
    failures: list[tuple[str, dict[str, Any], str]] = [
        ("get_contact", {"contact_id": NIL_UUID}, "not_found"),
        ("get_contact", {"contact_id": "../x"}, "validation"),
        ("get_ticket_by_number", {"ticket_number": 99_999_999}, "not_found"),
        (
            "list_cx_logs",
            {"start": "2026-09-01T00:00:00", "end": "2026-09-02T00:00:00", "timezone": "Mars/Base"},
            "validation",
        ),
        ("create_contact", {"name": ""}, "upstream_validation"),
        ("create_ticket", {"contact_id": NIL_UUID, "title": "x"}, "not_found"),
        ("update_ticket_status", {"ticket_id": NIL_UUID, "status": "pending"}, "not_found"),
    ]
    for tool, args, code in failures:
        assert error_code(await rec.call(tool, args)) == code, tool
    assert (await rec.call("get_contact", {})).is_error  # argument validation by the SDK

    made = await rec.call("create_contact", {"name": "Canary Check", "emails": ["canary.check@example.com"]})
    new_id = made.structured_content["contact"]["id"]
    for tool, args in [
        ("update_contact", {"contact_id": new_id, "notes": "checked"}),
        ("update_contact_tags", {"contact_id": new_id, "action": "MERGE", "tags": ["vip"]}),
        ("create_ticket", {"contact_id": new_id, "title": "Canary ticket", "priority": "low"}),
        ("update_ticket", {"ticket_id": ticket["id"], "priority": "high"}),
        ("update_ticket_status", {"ticket_id": ticket["id"], "status": "pending"}),
        ("create_channel", {"name": "Canary line", "type": "line"}),
        ("refresh_form_schemas", {}),
        ("list_recent_events", {}),
    ]:
        result = await rec.call(tool, args)
        assert not result.is_error, (tool, result.content)

    # Guarded flows: preview + token, confirm, replay, forged token.
    for tool, args in [
        ("delete_contact", {"contact_id": victim["id"]}),
        ("send_message", {"contact_id": contact["id"], "message": "Hello from the canary test"}),
        (
            "update_contact_tags",
            {"contact_id": contact["id"], "action": "REMOVE", "tags": [contact["tags"][0]["name"]]},
        ),
    ]:
        preview = await rec.call(tool, args)
        if preview.structured_content.get("status") == "confirmation_required":
            token = preview.structured_content["confirmation_token"]
            done = await rec.call(tool, {**args, "confirmation_token": token})
            assert done.structured_content["status"] == "done", tool
            assert (await rec.call(tool, {**args, "confirmation_token": token})).is_error  # replay
        assert (await rec.call(tool, {**args, "confirmation_token": "A" * 60})).is_error  # forged

    for uri in (
        "klink://audit/recent",
        "klink://forms/contact",
        f"klink://contacts/{contact['id']}",
        "klink://categories",
    ):
        await rec.read(uri)


def _server(
    tenant: SandboxTenant, settings: Settings, transport: httpx2.AsyncBaseTransport | None = None
) -> MCPServer[Any]:
    return build_server(settings, transport=transport or SandboxTransport(tenant, token=API_TOKEN))


def assert_reprs_clean(server: MCPServer[Any], settings: Settings) -> None:
    state = server.klink_state  # type: ignore[attr-defined]
    shown = [
        repr(settings),
        str(settings),
        json.dumps(settings.redacted()),
        settings.model_dump_json(),
        repr(settings.model_dump()),
        repr(state),
        repr(state.guard),
        repr(vars(state.guard)),
        repr(state.guard.tokens),
        repr(state.client),
        repr(state.client._http),  # the HTTP core that holds the Authorization header
        repr(state.client._http._client.headers),
    ]
    for text in shown:
        assert leaks(text) == [], text[:300]


class Accept:
    """An elicitation callback that approves (so the elicitation path is exercised too)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.asked.append(params.message)
        return types.ElicitResult(action="accept", content={"confirm": True})


@pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["handshake-era", "2026-era"])
async def test_no_canary_leaks_from_any_tool_path_logs_audit_or_reprs(
    mode: str, tmp_path: Path, debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    tenant = SandboxTenant.seeded()
    settings = secret_settings(tmp_path)
    server = _server(tenant, settings)
    async with Client(server, mode=mode) as client:  # type: ignore[arg-type]
        rec = Recorder(client)
        await exercise_every_path(rec, tenant)
        assert_reprs_clean(server, settings)
    # The same server object again, with a client that answers elicitations: the other confirmation path.
    accept = Accept()
    async with Client(server, mode=mode, elicitation_callback=accept) as client:  # type: ignore[arg-type]
        rec2 = Recorder(client)
        victim = next(c for c in tenant.contacts.values() if not c.get("deletedAt"))
        done = await rec2.call("delete_contact", {"contact_id": victim["id"]})
        assert done.structured_content["status"] == "done" and accept.asked
    rec.assert_clean()
    rec2.assert_clean()
    assert all(leaks(question) == [] for question in accept.asked)

    # The token really was the canary: the sandbox authorised every request with it.
    assert tenant.requests and all(r.status != 401 for r in tenant.requests)
    audit = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    assert "confirmed_by_token" in audit and "confirmed_by_elicitation" in audit
    assert leaks(audit) == []
    out, err = capfd.readouterr()
    assert err, "the stderr handler wrote nothing: the check would be vacuous"
    assert leaks(out) == [] and leaks(err) == []
    assert_logs_clean(debug_logs)


async def test_a_rejected_token_gives_a_plain_401_error_without_the_token(
    tmp_path: Path, debug_logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = SandboxTenant.seeded()
    settings = secret_settings(tmp_path)
    # The tenant expects another token, so every request (including the form-field fetch at start) is 401.
    server = _server(tenant, settings, SandboxTransport(tenant, token="kpt_the_right_one"))
    async with Client(server) as client:
        rec = Recorder(client)
        for tool, args in healthy_read_calls(tenant)[:5]:
            result = await rec.call(tool, args)
            assert error_code(result) == "unauthorized", tool
        created = await rec.call("create_ticket", {"contact_id": NIL_UUID, "title": "x"})
        assert error_code(created) == "unauthorized"
        assert_reprs_clean(server, settings)
    rec.assert_clean()
    assert {r.status for r in tenant.requests} == {401}
    assert leaks((tmp_path / "audit.jsonl").read_text(encoding="utf-8")) == []
    out, err = capsys.readouterr()
    assert leaks(out) == [] and leaks(err) == []
    assert_logs_clean(debug_logs)


class EchoingTransport(httpx2.AsyncBaseTransport):
    """A misbehaving upstream that puts the caller's credential into its error answers."""

    VARIANTS = ("json-400", "json-list-422", "text-404", "html-500", "json-409-nested", "non-json-200")

    def __init__(self) -> None:
        self.variant = self.VARIANTS[0]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        auth = request.headers.get("authorization", "")
        token = auth.partition(" ")[2]
        html = f"<html><head><title>Error for {auth}</title></head><body>token={token}</body></html>"
        body: dict[str, tuple[int, str, str]] = {
            "json-400": (
                400,
                "application/json",
                json.dumps({"statusCode": 400, "message": f"bad token {token}"}),
            ),
            "json-list-422": (
                422,
                "application/json",
                json.dumps({"message": [f"header was {auth}", token]}),
            ),
            "text-404": (404, "text/plain", f"Not found (you sent {auth}; token {token})"),
            "html-500": (500, "text/html", html),
            "json-409-nested": (
                409,
                "application/json",
                json.dumps({"errors": {"auth": [f"{token} in use"]}}),
            ),
            "non-json-200": (200, "text/plain", f"ok {token}"),
        }
        status, content_type, text = body[self.variant]
        return httpx2.Response(status, headers={"content-type": content_type}, text=text, request=request)


async def test_an_upstream_that_echoes_the_token_never_gets_it_to_the_model_or_logs(
    tmp_path: Path, debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # One attempt per call: the 5xx variant would otherwise back off with real sleeps.
    settings = secret_settings(tmp_path, max_attempts=1)
    echo = EchoingTransport()
    server = build_server(settings, transport=echo)
    async with Client(server) as client:
        rec = Recorder(client)
        for variant in EchoingTransport.VARIANTS:
            echo.variant = variant
            for tool, args in [("get_contact", {"contact_id": "c1"}), ("create_contact", {"name": "Echo"})]:
                result = await rec.call(tool, args)
                assert result.is_error, (variant, tool)
    rec.assert_clean()
    # The echo did reach the error path: the scrubber replaced it (the check is not vacuous).
    assert sum("[redacted]" in visible for visible in rec.seen) >= 6
    out, err = capfd.readouterr()
    assert leaks(out) == [] and leaks(err) == []
    assert_logs_clean(debug_logs)


def test_the_sdk_client_repr_hides_the_token() -> None:
    client = KlinkClient("https://k.test", API_TOKEN)
    assert leaks(repr(client)) == [] and leaks(repr(client._http)) == []


# ------------------------------------------------------------------------------------ HTTP surface


def _webhook_body() -> bytes:
    event = {
        "event": "message.inbound",
        "timestamp": "2026-01-09T03:42:38.000000Z",
        "data": {"id": "m1", "contactId": "c1", "channel": "line", "messageType": "text", "message": "hi"},
    }
    return json.dumps(event).encode()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("webhook_auth", ["signature", "basic", "header"])
async def test_the_http_app_refuses_and_accepts_without_echoing_any_secret(
    webhook_auth: str, tmp_path: Path, debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = secret_settings(tmp_path, webhook_auth=webhook_auth)
    app = build_http_app(_server(SandboxTenant.seeded(), settings), settings, "127.0.0.1")
    body = _webhook_body()
    good_signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    good = {
        "signature": {"x-signature": good_signature},
        "basic": {"authorization": _basic("klink", WEBHOOK_PASSWORD)},
        "header": {"x-hook": WEBHOOK_HEADER_VALUE},
    }[webhook_auth]
    wrong = {
        "signature": {"x-signature": "0" * 64},
        "basic": {"authorization": _basic("klink", WEBHOOK_PASSWORD[:-1])},
        "header": {"x-hook": WEBHOOK_HEADER_VALUE[:-1]},
    }[webhook_auth]
    json_type = {"content-type": "application/json"}
    seen: list[str] = []
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        for path, headers, expected in [
            ("/mcp", {**json_type, "authorization": f"Bearer {HTTP_AUTH_TOKEN[:-1]}"}, 401),
            ("/mcp", json_type, 401),
            ("/webhooks/klink", json_type, 401),
            ("/webhooks/klink", {**json_type, **wrong}, 401),
            ("/webhooks/klink", {**json_type, **good}, 200),
        ]:
            response = await http.post(path, content=body, headers=headers)
            assert response.status_code == expected, (path, response.status_code, response.text)
            seen.append(response.text + json.dumps(dict(response.headers)))
    assert all(leaks(text) == [] for text in seen), seen
    out, err = capfd.readouterr()
    assert leaks(out) == [] and leaks(err) == []
    assert_logs_clean(debug_logs)


# ----------------------------------------------------------------------------------------- stdio subprocess


def _subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINK_")}
    env.update(
        {
            "KLINK_API_TOKEN": API_TOKEN,
            "KLINK_GUARD_SECRET": GUARD_SECRET,
            "KLINK_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "KLINK_HTTP_AUTH_TOKEN": HTTP_AUTH_TOKEN,
            "KLINK_LOG_LEVEL": "DEBUG",
            "KLINK_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
            "KLINK_AUDIT_INCLUDE_BODIES": "true",
            "KLINK_EVENTS_DB": ":memory:",
            **extra,
        }
    )
    return env


async def _run_stdio(tmp_path: Path, env: dict[str, str]) -> tuple[list[str], str]:
    """List tools and call a few over stdio; returns what the client saw and the server's stderr."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "klink_mcp"], env=env)
    stderr_path = tmp_path / "stderr.txt"
    seen: list[str] = []
    with stderr_path.open("w", encoding="utf-8") as errlog, anyio.fail_after(60):
        async with Client(stdio_client(params, errlog=errlog)) as client:
            tools = await client.list_tools()
            seen.append(json.dumps(tools.model_dump(mode="json"), ensure_ascii=False))
            listed = await client.call_tool("list_contacts", {"page_size": 2})
            assert not listed.is_error
            seen.append(everything_visible(listed))
            contact_id = listed.structured_content["items"][0]["id"]
            for tool, args in [
                ("get_contact", {"contact_id": NIL_UUID}),
                ("delete_contact", {"contact_id": contact_id}),
                ("get_contact", {}),
            ]:
                seen.append(everything_visible(await client.call_tool(tool, args)))
    return seen, stderr_path.read_text(encoding="utf-8")


@pytest.mark.slow
async def test_stdio_subprocess_at_debug_keeps_the_canaries_out_of_stderr_and_results(tmp_path: Path) -> None:
    seen, stderr = await _run_stdio(tmp_path, _subprocess_env(tmp_path, KLINK_SANDBOX="1"))
    assert "DEBUG" in stderr, "the subprocess did not log at DEBUG: the check would be vacuous"
    assert leaks(stderr) == []
    assert all(leaks(text) == [] for text in seen)
    assert leaks((tmp_path / "audit.jsonl").read_text(encoding="utf-8")) == []


@pytest.fixture
async def loopback_tenant() -> AsyncIterator[tuple[SandboxTenant, str]]:
    tenant = SandboxTenant.seeded()
    async with serve_sandbox(tenant, token=API_TOKEN) as running:
        yield tenant, running.url


@pytest.mark.slow
async def test_stdio_subprocess_sending_the_canary_token_over_http_never_prints_it(
    tmp_path: Path, loopback_tenant: tuple[SandboxTenant, str]
) -> None:
    tenant, url = loopback_tenant
    seen, stderr = await _run_stdio(tmp_path, _subprocess_env(tmp_path, KLINK_BASE_URL=url))
    # The canary token itself was used on the wire (the loopback sandbox only accepts it)...
    assert tenant.requests and all(r.status != 401 for r in tenant.requests)
    # ...and appears nowhere the process shows or writes.
    assert "DEBUG" in stderr
    assert leaks(stderr) == []
    assert all(leaks(text) == [] for text in seen)
    assert leaks((tmp_path / "audit.jsonl").read_text(encoding="utf-8")) == []


async def test_customer_search_text_stays_out_of_the_logs(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO)
    tenant = SandboxTenant.seeded()
    probe = "Zq privacy probe +6590001234"
    async with Client(_server(tenant, secret_settings(tmp_path, log_level="INFO"))) as client:
        result = await client.call_tool("list_contacts", {"keyword": probe})
    assert not result.is_error
    assert tenant.requests[-1].query.get("keyword") == probe  # it did travel, in the query string
    logged = caplog.text
    assert "Zq" not in logged and "6590001234" not in logged
