"""Approval-page sign-in: OpenID Connect code flow with PKCE, and `current_person(request)`.

Routes (mounted by `build_http_app` when `KLINK_OAUTH_ISSUER` and `KLINK_OAUTH_CLIENT_ID` are set):

* `GET /approvals/login?next=/approvals/...` - redirects the browser to the IdP's authorization
  endpoint (`response_type=code`, `code_challenge_method=S256`, `state`, `nonce`);
* `GET /approvals/callback?code=...&state=...` - checks `state` against the browser's flow cookie,
  redeems the code with the PKCE verifier at the token endpoint (httpx2, client_secret_basic when a
  secret is configured), verifies the ID token with PyJWT against the same JWKS as access tokens
  (RS256/ES256, issuer, audience = client id, expiry, nonce), then sets the session cookie and
  redirects to `next` (only paths under `/approvals`, so the callback is no open redirect).

Stateless across replicas: the PKCE verifier is never stored nor sent to the browser; it is derived
from `state` with an HMAC under the session key, and the session key is derived from
`KLINK_GUARD_SECRET` (shared by every replica). Without that secret the key is random per process
and a sign-in only works on the replica that started it (a warning says so).

The session cookie is an HS256 JWT (PyJWT) holding the person - subject, name, email, scopes - for
8 hours; HttpOnly, SameSite=Lax, `Secure` when the callback URL is https, path `/approvals`.
Scopes come from the token response's `scope` (granted scopes, RFC 6749 §5.1) or the ID token's
`scope`/`scp` claim; nothing is assumed granted. Tokens from the IdP are used once here and never
stored, logged or forwarded. This module must not import the tool layer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlparse

import httpx2
import jwt
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from klink_mcp.auth.resource_server import IdentityProvider, InvalidToken, decode_jwt, scopes_of
from klink_mcp.config import ConfigError, Settings

__all__ = [
    "CALLBACK_PATH",
    "LOGIN_PATH",
    "SESSION_COOKIE",
    "ApprovalSignIn",
    "Person",
    "current_person",
    "session_key",
]

logger = logging.getLogger(__name__)

LOGIN_PATH: Final = "/approvals/login"
CALLBACK_PATH: Final = "/approvals/callback"
SESSION_COOKIE: Final = "klink_approver"
FLOW_COOKIE: Final = "klink_oidc_flow"
COOKIE_PATH: Final = "/approvals"
SESSION_TTL_S: Final = 8 * 3600
FLOW_TTL_S: Final = 600
_SESSION_AUD: Final = "klink-mcp/approval-session"
_FLOW_AUD: Final = "klink-mcp/oidc-flow"
_ID_TOKEN_CLAIMS: Final = ("exp", "iat", "iss", "aud", "sub", "nonce")


@dataclass(frozen=True)
class Person:
    """Someone signed in on the approval page."""

    subject: str
    scopes: frozenset[str]
    name: str | None = None
    email: str | None = None
    issuer: str | None = None

    @property
    def display(self) -> str:
        return self.name or self.email or self.subject


def session_key(settings: Settings) -> bytes:
    """The key signing approval sessions: derived from the shared guard secret, else random."""
    if settings.guard_secret is not None:
        secret = settings.guard_secret.get_secret_value().encode()
        return hmac.new(secret, b"klink-mcp approval sign-in v1", hashlib.sha256).digest()
    logger.warning(
        "KLINK_GUARD_SECRET is not set: approval sign-ins are signed with a per-process key and do not "
        "survive a restart or reach other replicas"
    )
    return secrets.token_bytes(32)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _safe_next(value: str | None) -> str:
    if value and value.startswith(COOKIE_PATH) and not value.startswith("//") and "\\" not in value:
        return value
    return COOKIE_PATH


class ApprovalSignIn:
    """The OIDC relying party of the approval page (one per HTTP app)."""

    def __init__(
        self,
        settings: Settings,
        idp: IdentityProvider,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Raises:
        ConfigError: the client id or the server's resource URL (for the callback URL) is missing.
        """
        if settings.oauth_client_id is None or settings.resource_url is None:
            raise ConfigError("approval sign-in needs KLINK_OAUTH_CLIENT_ID and KLINK_RESOURCE_URL")
        origin = urlparse(settings.resource_url)
        self.redirect_uri = f"{origin.scheme}://{origin.netloc}{CALLBACK_PATH}"
        self.client_id = settings.oauth_client_id
        self._client_secret = settings.oauth_client_secret
        self.idp = idp
        self._key = session_key(settings)
        self._secure = origin.scheme == "https"
        self._transport = transport
        self._clock = clock

    def routes(self) -> list[Route]:
        return [
            Route(LOGIN_PATH, endpoint=self.login, methods=["GET"]),
            Route(CALLBACK_PATH, endpoint=self.callback, methods=["GET"]),
        ]

    def _verifier_for(self, state: str) -> str:
        # 43 characters of base64url: a valid RFC 7636 verifier nobody can compute without the key.
        return _b64url(hmac.new(self._key, b"pkce:" + state.encode(), hashlib.sha256).digest())

    def _sign(self, claims: dict[str, Any], audience: str, ttl_s: int) -> str:
        now = int(self._clock())
        return jwt.encode(
            {**claims, "aud": audience, "iat": now, "exp": now + ttl_s}, self._key, algorithm="HS256"
        )

    def _unsign(self, token: str | None, audience: str) -> dict[str, Any] | None:
        if not token:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key, algorithms=["HS256"], audience=audience, options={"require": ["exp", "aud"]}
            )
        except jwt.PyJWTError:
            return None
        return claims

    async def login(self, request: Request) -> Response:
        """Start the code flow: redirect to the IdP with PKCE (S256), state and nonce."""
        try:
            metadata = await self.idp.metadata()
        except (InvalidToken, httpx2.HTTPError) as exc:
            logger.warning("approval sign-in: identity provider unavailable: %s", exc)
            return PlainTextResponse("The identity provider cannot be reached; try again shortly.", 503)
        if metadata.authorization_endpoint is None:
            return PlainTextResponse("The identity provider has no authorization endpoint.", 503)
        state = secrets.token_urlsafe(24)
        nonce = secrets.token_urlsafe(24)
        challenge = _b64url(hashlib.sha256(self._verifier_for(state).encode()).digest())
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": "openid profile email klink:approve",
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        response = RedirectResponse(f"{metadata.authorization_endpoint}?{query}", status_code=302)
        flow = self._sign(
            {"state": state, "nonce": nonce, "next": _safe_next(request.query_params.get("next"))},
            _FLOW_AUD,
            FLOW_TTL_S,
        )
        response.set_cookie(
            FLOW_COOKIE,
            flow,
            max_age=FLOW_TTL_S,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=self._secure,
        )
        return response

    async def callback(self, request: Request) -> Response:
        """Finish the code flow: check state, redeem the code with PKCE, verify the ID token, sign in."""
        if error := request.query_params.get("error"):
            return PlainTextResponse(f"Sign-in was not completed ({error[:64]}).", 403)
        flow = self._unsign(request.cookies.get(FLOW_COOKIE), _FLOW_AUD)
        state = request.query_params.get("state", "")
        code = request.query_params.get("code", "")
        if flow is None or not hmac.compare_digest(str(flow.get("state", "")), state) or not code:
            return PlainTextResponse(
                "This sign-in link is stale or was not started here; sign in again.", 400
            )
        try:
            person = await self._redeem(code, state, str(flow.get("nonce", "")))
        except InvalidToken as exc:
            logger.warning("approval sign-in refused: %s", exc)
            return PlainTextResponse(f"Sign-in refused: {exc}.", 403)
        response = RedirectResponse(_safe_next(str(flow.get("next", ""))), status_code=303)
        response.delete_cookie(FLOW_COOKIE, path=COOKIE_PATH)
        session = self._sign(
            {
                "sub": person.subject,
                "name": person.name,
                "email": person.email,
                "iss": person.issuer,
                "scopes": sorted(person.scopes),
            },
            _SESSION_AUD,
            SESSION_TTL_S,
        )
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=SESSION_TTL_S,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=self._secure,
        )
        logger.info("approval sign-in: %s", person.subject)
        return response

    async def _redeem(self, code: str, state: str, nonce: str) -> Person:
        metadata = await self.idp.metadata()
        if metadata.token_endpoint is None:
            raise InvalidToken("the identity provider has no token endpoint")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self._verifier_for(state),
            "client_id": self.client_id,
        }
        auth: httpx2.Auth = (
            httpx2.BasicAuth(self.client_id, self._client_secret.get_secret_value())
            if self._client_secret is not None
            else httpx2.Auth()  # a public client: PKCE alone, no secret
        )
        try:
            async with httpx2.AsyncClient(transport=self._transport, timeout=10.0) as http:
                answer = await http.post(metadata.token_endpoint, data=form, auth=auth)
        except httpx2.HTTPError as exc:
            raise InvalidToken(f"the token endpoint cannot be reached ({type(exc).__name__})") from None
        if answer.status_code != 200:
            raise InvalidToken(f"the token endpoint refused the code ({answer.status_code})")
        tokens = answer.json()
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(id_token, str):
            raise InvalidToken("the token endpoint sent no ID token")
        claims = await decode_jwt(
            self.idp, id_token, audience=self.client_id, issuer=self.idp.issuer, required=_ID_TOKEN_CLAIMS
        )
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise InvalidToken("the ID token's nonce does not match this sign-in")
        granted = tokens.get("scope")
        scopes = granted.split() if isinstance(granted, str) else scopes_of(claims)
        return Person(
            subject=str(claims["sub"]),
            scopes=frozenset(scopes),
            name=claims.get("name") or claims.get("preferred_username"),
            email=claims.get("email"),
            issuer=self.idp.issuer,
        )

    def person_from(self, request: Request) -> Person | None:
        """The signed-in person of this request's session cookie, or None."""
        claims = self._unsign(request.cookies.get(SESSION_COOKIE), _SESSION_AUD)
        if claims is None or not isinstance(claims.get("sub"), str):
            return None
        scopes = claims.get("scopes")
        return Person(
            subject=claims["sub"],
            scopes=frozenset(s for s in scopes if isinstance(s, str))
            if isinstance(scopes, list)
            else frozenset(),
            name=claims.get("name"),
            email=claims.get("email"),
            issuer=claims.get("iss"),
        )


def current_person(request: Request) -> Person | None:
    """The person signed in on the approval page for this request, or None (also when sign-in is off).

    `build_http_app` puts the `ApprovalSignIn` on the app state (`app.state.klink_sign_in`).
    """
    sign_in = getattr(request.app.state, "klink_sign_in", None)
    if not isinstance(sign_in, ApprovalSignIn):
        return None
    return sign_in.person_from(request)
