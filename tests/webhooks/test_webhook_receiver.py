"""The receiver: authenticate, bound, validate, store durably before 2xx, recognise redeliveries."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest

from klink_mcp.config import Settings, load_settings
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.receiver import (
    WEBHOOK_PATH,
    WebhookConfigError,
    check_bind,
    create_webhook_app,
    create_webhook_routes,
    is_loopback,
    serve_receiver,
)
from klink_mcp.webhooks.store import MEMORY, EventStore

from ._support import SECRET, body_of, event_dict, signed

pytestmark = pytest.mark.anyio


def client_for(hub: EventHub, settings: Settings, *, peer: str = "127.0.0.1") -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=create_webhook_app(hub, settings), client=(peer, 4711))
    return httpx2.AsyncClient(transport=transport, base_url="http://receiver.test")


@pytest.fixture
async def client(hub: EventHub, settings: Settings) -> AsyncIterator[httpx2.AsyncClient]:
    async with client_for(hub, settings) as c:
        yield c


async def test_a_signed_event_is_stored_and_acknowledged(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    body = body_of(event_dict())
    response = await client.post(WEBHOOK_PATH, content=body, headers=signed(body))
    assert response.status_code == 200
    assert response.json() == {"duplicate": False, "id": 1}
    [row] = await store.recent()
    assert row.event == "message.inbound"
    assert row.data["message"] == "hello 1"


async def test_a_redelivery_is_recognised_even_reserialised_and_not_stored_twice(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    event = event_dict()
    body = body_of(event)
    first = await client.post(WEBHOOK_PATH, content=body, headers=signed(body))
    replay = await client.post(WEBHOOK_PATH, content=body, headers=signed(body))
    reserialised = json.dumps(event, indent=3, sort_keys=True).encode()
    again = await client.post(WEBHOOK_PATH, content=reserialised, headers=signed(reserialised))
    assert first.json() == {"duplicate": False, "id": 1}
    assert replay.status_code == again.status_code == 200
    assert replay.json() == again.json() == {"duplicate": True, "id": 1}
    assert await store.count() == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-signature": ""},
        {"x-signature": "0" * 64},
        {"x-signature": "not-hex-at-all"},
        "wrong-secret",
        "tampered",
    ],
    ids=["missing", "empty", "zeros", "garbage", "wrong-secret", "tampered-body"],
)
async def test_a_bad_signature_is_refused_with_401_and_nothing_is_stored(
    client: httpx2.AsyncClient, store: EventStore, headers: Any
) -> None:
    body = body_of(event_dict())
    if headers == "wrong-secret":
        headers = signed(body, secret="not-the-secret")
    elif headers == "tampered":
        headers = signed(body)
        body = body.replace(b"hello", b"HELLO")
    response = await client.post(WEBHOOK_PATH, content=body, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized"}
    assert await store.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"[1, 2, 3]",
        b'{"event": "contact.create"}',
        b'{"event": "contact.create", "timestamp": "2026-01-09T00:00:00Z", "data": "x"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"event": "contact.create", "timestamp": "2026-01-09T00:00:00Z", "data": {"n": NaN}}',
    ],
    ids=["empty", "not-json", "not-utf8", "array", "no-data", "data-not-object", "deep-nesting", "nan"],
)
async def test_a_body_that_is_not_an_event_is_refused_with_400_and_nothing_is_stored(
    client: httpx2.AsyncClient, store: EventStore, body: bytes
) -> None:
    response = await client.post(WEBHOOK_PATH, content=body, headers=signed(body))
    assert response.status_code == 400
    assert await store.count() == 0


async def test_an_oversized_body_is_refused_with_413_from_its_content_length(
    hub: EventHub, store: EventStore, db_path: Any
) -> None:
    settings = load_settings(env={}, webhook_secret=SECRET, webhook_max_body_bytes=2048)
    event = event_dict(data={"id": "m", "contactId": "c", "message": "x" * 4000})
    body = body_of(event)
    async with client_for(hub, settings) as client:
        response = await client.post(WEBHOOK_PATH, content=body, headers=signed(body))
    assert response.status_code == 413
    assert await store.count() == 0


async def test_an_oversized_streamed_body_without_length_is_cut_off_with_413(
    hub: EventHub, store: EventStore
) -> None:
    settings = load_settings(env={}, webhook_secret=SECRET, webhook_max_body_bytes=2048)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b'{"padding": "' + b"x" * 1024

    async with client_for(hub, settings) as client:
        response = await client.post(WEBHOOK_PATH, content=endless(), headers={"x-signature": "0" * 64})
    assert response.status_code == 413
    assert sent < 10  # the receiver stopped reading just past the limit
    assert await store.count() == 0


async def test_an_invalid_content_length_is_a_bad_request(client: httpx2.AsyncClient) -> None:
    request = client.build_request("POST", WEBHOOK_PATH, content=b"{}", headers={"content-length": "abc"})
    response = await client.send(request)
    assert response.status_code == 400


async def test_the_receiver_keeps_serving_after_every_kind_of_rejection(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    good = body_of(event_dict())
    for _ in range(3):
        assert (
            await client.post(WEBHOOK_PATH, content=good, headers={"x-signature": "bad"})
        ).status_code == 401
        assert (await client.post(WEBHOOK_PATH, content=b"{", headers=signed(b"{"))).status_code == 400
    assert (await client.get(WEBHOOK_PATH)).status_code == 405
    assert (await client.post(WEBHOOK_PATH, content=good, headers=signed(good))).status_code == 200
    assert await store.count() == 1


async def test_basic_auth_mode_checks_user_and_password(hub: EventHub, store: EventStore) -> None:
    settings = load_settings(
        env={}, webhook_auth="basic", webhook_basic_user="klink", webhook_basic_password="pa:ss"
    )
    body = body_of(event_dict())

    def basic(user: str, password: str) -> dict[str, str]:
        return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    async with client_for(hub, settings) as client:
        assert (await client.post(WEBHOOK_PATH, content=body)).status_code == 401
        assert (
            await client.post(WEBHOOK_PATH, content=body, headers=basic("klink", "wrong"))
        ).status_code == 401
        assert (
            await client.post(WEBHOOK_PATH, content=body, headers=basic("other", "pa:ss"))
        ).status_code == 401
        bad_b64 = {"authorization": "Basic !!!"}
        assert (await client.post(WEBHOOK_PATH, content=body, headers=bad_b64)).status_code == 401
        assert (
            await client.post(WEBHOOK_PATH, content=body, headers=basic("klink", "pa:ss"))
        ).status_code == 200
    assert await store.count() == 1


async def test_header_auth_mode_checks_the_custom_header(hub: EventHub, store: EventStore) -> None:
    settings = load_settings(
        env={},
        webhook_auth="header",
        webhook_header_name="X-Klink-Token",
        webhook_header_value="t0ken-0123456789abcdef0123456789abcdef",
    )
    body = body_of(event_dict())
    async with client_for(hub, settings) as client:
        assert (await client.post(WEBHOOK_PATH, content=body)).status_code == 401
        wrong = {"x-klink-token": "nope"}
        assert (await client.post(WEBHOOK_PATH, content=body, headers=wrong)).status_code == 401
        right = {"x-klink-token": "t0ken-0123456789abcdef0123456789abcdef"}
        assert (await client.post(WEBHOOK_PATH, content=body, headers=right)).status_code == 200


async def test_no_auth_mode_accepts_only_direct_loopback_json_posts_not_browsers(
    hub: EventHub, store: EventStore
) -> None:
    settings = load_settings(env={}, webhook_auth="none")
    body = body_of(event_dict())
    json_type = {"content-type": "application/json"}
    async with client_for(hub, settings, peer="203.0.113.9") as remote:
        assert (await remote.post(WEBHOOK_PATH, content=body, headers=json_type)).status_code == 401
    async with client_for(hub, settings, peer="127.0.0.1") as local:
        proxied = {**json_type, "x-forwarded-for": "203.0.113.9"}
        assert (await local.post(WEBHOOK_PATH, content=body, headers=proxied)).status_code == 401
        from_a_web_page = {**json_type, "origin": "https://evil.example"}
        assert (await local.post(WEBHOOK_PATH, content=body, headers=from_a_web_page)).status_code == 401
        no_cors_simple_request = {"content-type": "text/plain"}
        assert (
            await local.post(WEBHOOK_PATH, content=body, headers=no_cors_simple_request)
        ).status_code == 401
        assert await store.count() == 0
        assert (await local.post(WEBHOOK_PATH, content=body, headers=json_type)).status_code == 200
    async with client_for(hub, settings, peer="::1") as local6:
        assert (await local6.post(WEBHOOK_PATH, content=body, headers=json_type)).json()["duplicate"] is True


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"webhook_auth": "signature", "webhook_secret": ""},
        {"webhook_auth": "basic", "webhook_basic_user": "u"},
        {"webhook_auth": "basic", "webhook_basic_password": "p"},
        {"webhook_auth": "header", "webhook_header_name": "x-token"},
        {"webhook_auth": "header", "webhook_header_value": "v" * 32},
    ],
)
def test_an_auth_mode_without_its_credentials_refuses_to_start(overrides: dict[str, str]) -> None:
    settings = Settings.model_validate(overrides)
    with pytest.raises(WebhookConfigError):
        create_webhook_routes(EventHub(EventStore(MEMORY)), settings)


async def test_a_store_failure_answers_503_so_the_sender_retries(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    await store.close()
    body = body_of(event_dict())
    response = await client.post(WEBHOOK_PATH, content=body, headers=signed(body))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


async def test_secrets_and_payloads_never_reach_the_logs(
    client: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = body_of(event_dict(data={"id": "m", "contactId": "c", "message": "private words"}))
    headers = signed(body)
    with caplog.at_level(logging.DEBUG):
        await client.post(WEBHOOK_PATH, content=body, headers=headers)
        await client.post(WEBHOOK_PATH, content=body, headers={"x-signature": headers["x-signature"][::-1]})
    logged = caplog.text
    assert "webhook" in logged
    for secret_or_data in (SECRET, headers["x-signature"], headers["x-signature"][::-1], "private words"):
        assert secret_or_data not in logged


def test_routes_can_be_mounted_at_another_path(settings: Settings) -> None:
    [route] = create_webhook_routes(EventHub(EventStore(MEMORY)), settings, path="/hooks/k")
    assert route.path == "/hooks/k"
    assert route.methods is not None and "POST" in route.methods


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_detection(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_bind_rules_loopback_free_remote_needs_opt_in_and_authentication() -> None:
    signed_settings = load_settings(env={}, webhook_secret=SECRET)
    check_bind(signed_settings, "127.0.0.1")
    with pytest.raises(WebhookConfigError, match="allow-remote"):
        check_bind(signed_settings, "0.0.0.0")
    check_bind(signed_settings, "0.0.0.0", allow_remote=True)
    open_settings = load_settings(env={}, webhook_auth="none")
    check_bind(open_settings, "::1")
    with pytest.raises(WebhookConfigError, match="loopback-only"):
        check_bind(open_settings, "0.0.0.0", allow_remote=True)
    with pytest.raises(WebhookConfigError, match="webhook_secret"):
        check_bind(load_settings(env={}), "0.0.0.0", allow_remote=True)


async def test_over_a_real_loopback_socket_events_are_stored_and_bad_ones_refused(
    hub: EventHub, settings: Settings, store: EventStore
) -> None:
    async with serve_receiver(settings, hub, port=0) as running, httpx2.AsyncClient() as client:
        assert running.url.startswith("http://127.0.0.1:")
        body = body_of(event_dict())
        assert (await client.post(running.url, content=body, headers={"x-signature": "x"})).status_code == 401

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(2000):
                yield b"x" * 1024

        too_big = await client.post(running.url, content=chunks(), headers=signed(b""))
        assert too_big.status_code == 413
        ok = await client.post(running.url, content=body, headers=signed(body))
        assert ok.json() == {"duplicate": False, "id": 1}
    assert await store.count() == 1


async def test_a_port_in_use_is_a_config_error(hub: EventHub, settings: Settings) -> None:
    async with serve_receiver(settings, hub, port=0) as running:
        with pytest.raises(WebhookConfigError, match="cannot listen"):
            async with serve_receiver(settings, hub, port=running.port):
                pass


async def test_a_utf16_body_is_refused_because_the_contract_says_utf8(
    client: httpx2.AsyncClient, store: EventStore
) -> None:
    body = json.dumps(event_dict()).encode("utf-16")
    response = await client.post(WEBHOOK_PATH, content=body, headers=signed(body))
    assert response.status_code == 400
    assert await store.count() == 0


async def test_a_body_that_never_finishes_arriving_times_out_with_408(
    client: httpx2.AsyncClient, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("klink_mcp.webhooks.receiver._BODY_READ_TIMEOUT_S", 0.05)
    stalled = anyio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"event": '
        await stalled.wait()  # never set: the sender stops sending
        yield b"}"

    with anyio.fail_after(5):
        response = await client.post(WEBHOOK_PATH, content=trickle(), headers={"x-signature": "0" * 64})
    assert response.status_code == 408
    assert await store.count() == 0
