"""serve --http as an OAuth 2.1 resource server, over real loopback HTTP with the MCP client."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.server import MCPServer

from klink_mcp.auth.principal import InsufficientScope, current_principal, require_scope
from tests.auth.harness import STATIC_TOKEN, authed_client, running_klink
from tests.auth.idp import LocalIdP, b64url, running_idp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ALL = ["klink:read", "klink:write", "klink:send", "klink:delete", "klink:approve"]
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}


@pytest.fixture
async def idp() -> AsyncIterator[LocalIdP]:
    async with running_idp() as provider:
        yield provider


def _whoami_tool(server: MCPServer[Any]) -> None:
    @server.tool(name="test_whoami", description="who is calling (test only)")
    def test_whoami(scope: str) -> dict[str, Any]:
        principal = require_scope(scope)
        assert principal is not None and principal == current_principal()
        return {"subject": principal.subject, "name": principal.display, "scopes": sorted(principal.scopes)}


async def _client_tools(mcp_url: str, token: str, mode: str) -> set[str]:
    async with authed_client(mcp_url, token, mode) as client:
        return {t.name for t in (await client.list_tools()).tools}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_valid_jwt_lists_tools_and_calls_one_in_both_eras(idp: LocalIdP, mode: str, alg: str) -> None:
    with anyio.fail_after(30):
        async with running_klink(idp) as srv:
            token = idp.access_token(srv.mcp_url, ["klink:read"], alg=alg)
            names = await _client_tools(srv.mcp_url, token, mode)
            assert {"list_contacts", "send_message"} <= names
            async with authed_client(srv.mcp_url, token, mode) as client:
                result = await client.call_tool("list_tags", {})
                assert not result.is_error
    # The access token never travels on to K-LINK: the sandbox only ever saw its own API token.
    assert srv.upstream.seen
    assert all(token not in seen for seen in srv.upstream.seen)
    assert all("authorization: Bearer sandbox-token" in seen for seen in srv.upstream.seen)


def _other_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _alg_none(claims: dict[str, Any]) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def _hs256_with_public_key(idp: LocalIdP, claims: dict[str, Any]) -> str:
    # The classic confusion attack: HMAC "signed" with the RSA public key the JWKS publishes.
    public_pem = idp.rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def _claims(idp: LocalIdP, audience: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": idp.issuer,
        "sub": "mallory",
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "scope": "klink:read",
    }


BAD_TOKENS = {
    "wrong audience": (
        lambda idp, aud: idp.access_token("https://other.example/mcp", ["klink:read"]),
        "audience",
    ),
    "wrong issuer": (
        lambda idp, aud: idp.access_token(aud, ["klink:read"], issuer="https://evil.example"),
        "issuer",
    ),
    "unknown key id": (
        lambda idp, aud: idp.sign(_claims(idp, aud), kid="rotated-away", key=_other_rsa()),
        "unknown key",
    ),
    "known key id, other key": (lambda idp, aud: idp.sign(_claims(idp, aud), key=_other_rsa()), "signature"),
    "expired": (lambda idp, aud: idp.access_token(aud, ["klink:read"], lifetime_s=-120), "expired"),
    "alg none": (lambda idp, aud: _alg_none(_claims(idp, aud)), "algorithm"),
    "HS256 with the public key": (
        lambda idp, aud: _hs256_with_public_key(idp, _claims(idp, aud)),
        "algorithm",
    ),
    "not a JWT": (lambda idp, aud: "definitely-not-a-jwt", "malformed"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_a_bad_token_gets_401_invalid_token_with_the_metadata_url(idp: LocalIdP, case: str) -> None:
    make, reason = BAD_TOKENS[case]
    with anyio.fail_after(30):
        async with running_klink(idp) as srv, httpx2.AsyncClient() as http:
            token = make(idp, srv.mcp_url)
            answer = await http.post(
                srv.mcp_url, json=PING, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
            )
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    assert f'resource_metadata="{srv.url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert reason in answer.json()["error_description"]
    assert not srv.upstream.seen or all(token not in seen for seen in srv.upstream.seen)


async def test_no_token_gets_401_with_the_metadata_url_and_no_error_code(idp: LocalIdP) -> None:
    async with running_klink(idp) as srv, httpx2.AsyncClient() as http:
        answer = await http.post(srv.mcp_url, json=PING, headers=MCP_HEADERS)
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert challenge == f'Bearer resource_metadata="{srv.url}/.well-known/oauth-protected-resource/mcp"'


async def test_protected_resource_metadata_names_the_resource_issuer_and_scopes(idp: LocalIdP) -> None:
    async with running_klink(idp) as srv, httpx2.AsyncClient() as http:
        suffixed = await http.get(f"{srv.url}/.well-known/oauth-protected-resource/mcp")
        root = await http.get(f"{srv.url}/.well-known/oauth-protected-resource")
    assert suffixed.status_code == root.status_code == 200
    assert suffixed.json() == root.json()
    doc = suffixed.json()
    assert doc["resource"] == srv.mcp_url
    assert doc["authorization_servers"] == [idp.issuer]
    assert doc["scopes_supported"] == ALL
    assert doc["bearer_methods_supported"] == ["header"]


async def test_a_token_without_the_read_scope_cannot_reach_mcp(idp: LocalIdP) -> None:
    async with running_klink(idp) as srv, httpx2.AsyncClient() as http:
        token = idp.access_token(srv.mcp_url, ["klink:approve"])
        answer = await http.post(
            srv.mcp_url, json=PING, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 403
    challenge = answer.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="klink:read"' in challenge
    assert "resource_metadata=" in challenge


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_require_scope_in_a_tool_sees_the_person_and_refuses_a_missing_scope(
    idp: LocalIdP, mode: str
) -> None:
    with anyio.fail_after(30):
        async with running_klink(idp, prepare=_whoami_tool) as srv:
            token = idp.access_token(srv.mcp_url, ["klink:read", "klink:write"], sub="bob-sub", name="Bob")
            async with authed_client(srv.mcp_url, token, mode) as client:
                allowed = await client.call_tool("test_whoami", {"scope": "klink:write"})
                refused = await client.call_tool("test_whoami", {"scope": "klink:delete"})
    assert not allowed.is_error
    assert allowed.structured_content == {
        "subject": "bob-sub",
        "name": "Bob",
        "scopes": ["klink:read", "klink:write"],
    }
    assert refused.is_error
    text = refused.content[0].text  # type: ignore[union-attr]
    assert "klink:delete" in text and "Bob" in text


async def test_the_static_token_still_works_beside_oauth_and_holds_every_scope(idp: LocalIdP) -> None:
    with anyio.fail_after(30):
        async with running_klink(idp, prepare=_whoami_tool, http_auth_token=STATIC_TOKEN) as srv:
            async with authed_client(srv.mcp_url, STATIC_TOKEN) as client:
                result = await client.call_tool("test_whoami", {"scope": "klink:delete"})
            async with httpx2.AsyncClient() as http:
                wrong = await http.post(
                    srv.mcp_url, json=PING, headers={**MCP_HEADERS, "authorization": "Bearer nope"}
                )
    assert not result.is_error and result.structured_content["subject"] == "operator"
    assert result.structured_content["scopes"] == sorted(ALL)
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert all(STATIC_TOKEN not in seen for seen in srv.upstream.seen)


async def test_a_rotated_key_is_picked_up_at_once_and_unknown_kids_do_not_flood_the_jwks(
    idp: LocalIdP,
) -> None:
    async with running_klink(idp) as srv, httpx2.AsyncClient() as http:

        async def ping(token: str) -> int:
            answer = await http.post(
                srv.mcp_url, json=PING, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
            )
            return answer.status_code

        assert await ping(idp.access_token(srv.mcp_url, ["klink:read"])) != 401
        fetches = idp.jwks_fetches
        new_key = _other_rsa()
        idp.extra_keys["rsa-2"] = new_key
        now = int(time.time())
        claims = {
            "iss": idp.issuer,
            "sub": "a",
            "aud": srv.mcp_url,
            "iat": now,
            "exp": now + 60,
            "scope": "klink:read",
        }
        # The cache was filled moments ago: an unknown kid within 10 s is refused without a refetch...
        assert await ping(idp.sign(claims, kid="rsa-2", key=new_key)) == 401
        for n in range(5):
            assert await ping(idp.sign(claims, kid=f"made-up-{n}", key=new_key)) == 401
        assert idp.jwks_fetches == fetches


async def test_the_rotated_key_is_fetched_when_the_cache_allows_a_refresh() -> None:
    from klink_mcp.auth.resource_server import IdentityProvider, JwtVerifier

    now = [1000.0]
    async with running_idp() as idp:
        verifier = JwtVerifier(
            IdentityProvider(idp.issuer, clock=lambda: now[0]), audience="https://klink.test/mcp"
        )
        first = await verifier.verify(idp.access_token("https://klink.test/mcp", ["klink:read"]))
        assert first.subject == "alice-sub" and first.token.startswith("sha256:")
        new_key = _other_rsa()
        idp.extra_keys["rsa-2"] = new_key
        t = int(time.time())
        claims = {"iss": idp.issuer, "sub": "b", "aud": "https://klink.test/mcp", "iat": t, "exp": t + 60}
        now[0] += 11  # past the minimum refresh interval, well within the cache lifetime
        rotated = await verifier.verify(idp.sign(claims, kid="rsa-2", key=new_key))
        assert rotated.subject == "b" and rotated.scopes == []
        assert idp.jwks_fetches == 2


async def test_known_keys_keep_working_through_an_idp_outage_and_unknown_ones_are_refused() -> None:
    from klink_mcp.auth.resource_server import JWKS_CACHE_S, IdentityProvider, InvalidToken, JwtVerifier

    now = [1000.0]
    async with running_idp() as idp:
        verifier = JwtVerifier(
            IdentityProvider(idp.issuer, clock=lambda: now[0]), audience="https://klink.test/mcp"
        )
        await verifier.verify(idp.access_token("https://klink.test/mcp", ["klink:read"]))
        idp.jwks_down = True
        now[0] += JWKS_CACHE_S + 1  # the cache is stale: a refresh is attempted and fails
        still = await verifier.verify(idp.access_token("https://klink.test/mcp", ["klink:read"]))
        assert still.subject == "alice-sub" and idp.jwks_fetches == 2
        new_key = _other_rsa()
        t = int(time.time())
        claims = {"iss": idp.issuer, "sub": "b", "aud": "https://klink.test/mcp", "iat": t, "exp": t + 60}
        now[0] += 11
        with pytest.raises(InvalidToken, match="cannot be fetched"):
            await verifier.verify(idp.sign(claims, kid="rsa-9", key=new_key))
        with pytest.raises(InvalidToken, match="unknown key"):  # within 10 s: no new fetch at all
            await verifier.verify(idp.sign(claims, kid="rsa-10", key=new_key))
        assert idp.jwks_fetches == 3


async def test_an_unreachable_identity_provider_is_503_not_401() -> None:
    from tests.auth.idp import bind_loopback

    sock, dead_issuer = bind_loopback()
    sock.close()  # nothing listens there now
    keys = LocalIdP(issuer=dead_issuer)
    with anyio.fail_after(30):
        async with running_klink(keys) as srv, httpx2.AsyncClient() as http:
            token = keys.access_token(srv.mcp_url, ["klink:read"])
            answer = await http.post(
                srv.mcp_url, json=PING, headers={**MCP_HEADERS, "authorization": f"Bearer {token}"}
            )
    assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
    assert answer.json()["error"] == "temporarily_unavailable"
    assert token not in answer.text


def test_require_scope_without_an_authenticated_caller_allows_everything() -> None:
    # stdio and unauthenticated loopback HTTP: the one local user started the process.
    assert require_scope("klink:delete") is None
    with pytest.raises(ValueError, match="unknown scope"):
        require_scope("klink:everything")


def test_insufficient_scope_says_what_is_missing() -> None:
    from klink_mcp.auth.principal import Principal

    error = InsufficientScope("klink:send", Principal("s", frozenset({"klink:read"}), "oauth", name="Eve"))
    assert "klink:send" in str(error) and "Eve" in str(error) and "klink:read" in str(error)
