"""Approval-page sign-in: the OIDC code flow with PKCE end to end against the local IdP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import anyio
import httpx2
import pytest
from mcp.server import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from klink_mcp.auth.oidc import SESSION_COOKIE, current_person
from tests.auth.harness import STATIC_TOKEN, RunningServer, running_klink
from tests.auth.idp import CLIENT_ID, LocalIdP, Person, running_idp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# The approval page (another module) calls `current_person`; this stand-in route shows what it sees.
# Under the sign-in path: the session cookie is scoped to /approvals, and the approval page serves
# every other /approvals/<id>.
WHOAMI = "/approvals/login/test-whoami"


def _whoami_route(server: MCPServer[Any]) -> None:
    @server.custom_route(WHOAMI, methods=["GET"])
    async def whoami(request: Request) -> Response:
        person = current_person(request)
        if person is None:
            return JSONResponse({"person": None})
        return JSONResponse(
            {"person": {"sub": person.subject, "name": person.name, "scopes": sorted(person.scopes)}}
        )


@pytest.fixture
async def idp() -> AsyncIterator[LocalIdP]:
    async with running_idp() as provider:
        yield provider


async def _login(http: httpx2.AsyncClient, srv: RunningServer, next_path: str) -> tuple[httpx2.Response, str]:
    """Browser steps: our login -> the IdP's authorize -> our callback. Returns (callback answer, authorize URL)."""
    start = await http.get(f"{srv.url}/approvals/login", params={"next": next_path})
    assert start.status_code == 302
    authorize_url = start.headers["location"]
    at_idp = await http.get(authorize_url)
    assert at_idp.status_code == 302, at_idp.text
    callback = await http.get(at_idp.headers["location"])
    return callback, authorize_url


async def _whoami(http: httpx2.AsyncClient, srv: RunningServer) -> Any:
    # The whole app sits behind the bearer gate; the person comes from the session cookie alone.
    answer = await http.get(f"{srv.url}{WHOAMI}", headers={"authorization": f"Bearer {STATIC_TOKEN}"})
    assert answer.status_code == 200
    return answer.json()["person"]


async def test_the_code_flow_with_pkce_signs_the_person_in(idp: LocalIdP) -> None:
    idp.next_person = Person("carol-sub", "Carol Lead", "carol@example.com", ["klink:read", "klink:approve"])
    with anyio.fail_after(30):
        async with (
            running_klink(idp, sign_in=True, prepare=_whoami_route, http_auth_token=STATIC_TOKEN) as srv,
            httpx2.AsyncClient() as http,
        ):
            assert await _whoami(http, srv) is None
            callback, authorize_url = await _login(http, srv, "/approvals/abc123")
            assert callback.status_code == 303 and callback.headers["location"] == "/approvals/abc123"
            assert SESSION_COOKIE in http.cookies
            person = await _whoami(http, srv)
    assert person == {
        "sub": "carol-sub",
        "name": "Carol Lead",
        "scopes": ["klink:approve", "klink:read", "openid"],
    }
    query = parse_qs(urlparse(authorize_url).query)
    assert authorize_url.startswith(f"{idp.issuer}/authorize?")
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [f"{srv.url}/approvals/callback"]
    # The verifier went to the token endpoint only (the IdP checked it against the challenge).
    (redeemed,) = idp.token_requests
    assert redeemed["code_verifier"] and redeemed["code_verifier"] not in authorize_url
    assert "code_verifier" not in str(callback.headers)


async def test_a_callback_with_another_state_or_a_replayed_code_signs_nobody_in(idp: LocalIdP) -> None:
    with anyio.fail_after(30):
        async with (
            running_klink(idp, sign_in=True, prepare=_whoami_route, http_auth_token=STATIC_TOKEN) as srv,
            httpx2.AsyncClient() as http,
        ):
            start = await http.get(f"{srv.url}/approvals/login")
            at_idp = await http.get(start.headers["location"])
            callback_url = httpx2.URL(at_idp.headers["location"])
            forged = await http.get(callback_url.copy_set_param("state", "someone-elses-state"))
            assert forged.status_code == 400
            first = await http.get(callback_url)
            assert first.status_code == 303
            http.cookies.delete(SESSION_COOKIE)
            # The flow cookie is consumed by the first callback, and a newer flow has another state.
            replay = await http.get(callback_url)
            assert replay.status_code == 400
            await http.get(f"{srv.url}/approvals/login")
            assert (await http.get(callback_url)).status_code == 400
            assert await _whoami(http, srv) is None


async def test_next_cannot_send_the_browser_elsewhere(idp: LocalIdP) -> None:
    with anyio.fail_after(30):
        async with running_klink(idp, sign_in=True) as srv, httpx2.AsyncClient() as http:
            callback, _ = await _login(http, srv, "https://evil.example/phish")
    assert callback.status_code == 303 and callback.headers["location"] == "/approvals"


async def test_a_tampered_session_cookie_is_nobody(idp: LocalIdP) -> None:
    with anyio.fail_after(30):
        async with (
            running_klink(idp, sign_in=True, prepare=_whoami_route, http_auth_token=STATIC_TOKEN) as srv,
            httpx2.AsyncClient() as http,
        ):
            await _login(http, srv, "/approvals")
            assert (await _whoami(http, srv))["sub"] == "alice-sub"
            good = http.cookies[SESSION_COOKIE]
            header, payload, signature = good.split(".")
            http.cookies.clear()
            http.cookies.set(SESSION_COOKIE, f"{header}.{payload}.{signature[::-1]}")
            assert await _whoami(http, srv) is None


async def test_an_id_token_from_another_key_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    def swap_signing_key(provider: LocalIdP) -> None:
        # The IdP signs ID tokens with a key its JWKS does not publish (kid still "rsa-1").
        published = provider.rsa_key
        provider.rsa_key = rsa.generate_private_key(65537, 2048)
        provider.jwks = lambda: {"keys": [LocalIdP(issuer="x", rsa_key=published).jwks()["keys"][0]]}  # type: ignore[method-assign]

    with anyio.fail_after(30):
        async with (
            running_idp(swap_signing_key) as idp,
            running_klink(idp, sign_in=True) as srv,
            httpx2.AsyncClient() as http,
        ):
            callback, _ = await _login(http, srv, "/approvals")
    assert callback.status_code == 403 and "signature" in callback.text
    assert SESSION_COOKIE not in http.cookies
