"""A small local OpenID provider for the tests, built from PyJWT and cryptography.

It makes its own keys (RSA for RS256, P-256 for ES256), publishes them as a JWKS, serves OpenID
discovery, and runs the authorization-code flow with PKCE (S256 only) for one registered client:
`/authorize` signs in `LocalIdP.next_person` at once (no login form: the test is the user) and
redirects back with a code; `/token` redeems the code once, checking the client secret, the
redirect URI and the PKCE verifier, and returns an ID token, an access token and the granted scopes.
Everything is served on 127.0.0.1 by `serve_on_loopback`. The verification code under test is the
real one in `klink_mcp.auth`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

CLIENT_ID = "klink-approvals"
CLIENT_SECRET = "idp-test-client-secret"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Person:
    sub: str
    name: str
    email: str
    scopes: list[str]


@dataclass
class LocalIdP:
    issuer: str
    rsa_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ec_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    extra_keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    next_person: Person = field(
        default_factory=lambda: Person("alice-sub", "Alice Agent", "alice@example.com", ["klink:approve"])
    )
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    jwks_fetches: int = 0
    jwks_down: bool = False  # the JWKS endpoint answers 503 (an IdP outage)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    # ---------------------------------------------------------------- keys and tokens

    def jwks(self) -> dict[str, Any]:
        keys = [
            {
                **json.loads(RSAAlgorithm.to_jwk(self.rsa_key.public_key())),
                "kid": "rsa-1",
                "use": "sig",
                "alg": "RS256",
            },
            {
                **json.loads(ECAlgorithm.to_jwk(self.ec_key.public_key())),
                "kid": "ec-1",
                "use": "sig",
                "alg": "ES256",
            },
        ]
        for kid, key in self.extra_keys.items():
            keys.append(
                {
                    **json.loads(RSAAlgorithm.to_jwk(key.public_key())),
                    "kid": kid,
                    "use": "sig",
                    "alg": "RS256",
                }
            )
        return {"keys": keys}

    def sign(
        self, claims: dict[str, Any], *, alg: str = "RS256", kid: str | None = None, key: Any = None
    ) -> str:
        if key is None:
            key = self.ec_key if alg == "ES256" else self.rsa_key
        if kid is None:
            kid = "ec-1" if alg == "ES256" else "rsa-1"
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

    def access_token(
        self,
        audience: str,
        scopes: list[str],
        *,
        sub: str = "alice-sub",
        issuer: str | None = None,
        lifetime_s: int = 300,
        alg: str = "RS256",
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer or self.issuer,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime_s,
            "scope": " ".join(scopes),
            "client_id": "mcp-client",
            "name": "Alice Agent",
            **extra,
        }
        return self.sign(claims, alg=alg)

    # ---------------------------------------------------------------- endpoints

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def jwks_endpoint(self, request: Request) -> Response:
        self.jwks_fetches += 1
        if self.jwks_down:
            return JSONResponse({"error": "temporarily_unavailable"}, 503)
        return JSONResponse(self.jwks())

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return JSONResponse({"error": "unauthorized_client"}, 400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE S256 required"}, 400)
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "challenge": q["code_challenge"],
            "redirect_uri": q.get("redirect_uri"),
            "nonce": q.get("nonce"),
            "person": self.next_person,
            "scope": q.get("scope", ""),
        }
        return RedirectResponse(
            f"{q.get('redirect_uri')}?{urlencode({'code': code, 'state': q.get('state', '')})}", 302
        )

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if not hmac.compare_digest(request.headers.get("authorization", ""), expected):
            return JSONResponse({"error": "invalid_client"}, 401)
        grant = self.codes.pop(form.get("code", ""), None)  # a code is redeemed once
        if grant is None or form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "invalid_grant"}, 400)
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "redirect_uri"}, 400)
        challenge = b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
        if not hmac.compare_digest(challenge, grant["challenge"]):
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE verifier"}, 400)
        person: Person = grant["person"]
        now = int(time.time())
        id_token = self.sign(
            {
                "iss": self.issuer,
                "sub": person.sub,
                "aud": CLIENT_ID,
                "iat": now,
                "exp": now + 300,
                "nonce": grant["nonce"],
                "name": person.name,
                "email": person.email,
            }
        )
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
                "scope": " ".join(["openid", *person.scopes]),
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks_endpoint),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        )


def bind_loopback() -> tuple[socket.socket, str]:
    """A listening socket on 127.0.0.1 and its base URL (known before the app is built)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def serve_on_loopback(sock: socket.socket, app: ASGIApp) -> AsyncIterator[None]:
    # The socket already listens, so clients may connect at once: the kernel queues them until
    # uvicorn (after the app's lifespan startup) accepts. No polling needed.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        try:
            yield
        finally:
            server.should_exit = True


@asynccontextmanager
async def running_idp(customize: Callable[[LocalIdP], None] | None = None) -> AsyncIterator[LocalIdP]:
    sock, url = bind_loopback()
    idp = LocalIdP(issuer=url)
    if customize is not None:
        customize(idp)
    async with serve_on_loopback(sock, idp.app()):
        yield idp
