"""The OAuth 2.1 resource server for `serve --http`: JWT access tokens checked against the IdP's JWKS.

What the MCP authorization spec (2025-06-18 / 2025-11-25) asks of a resource server, built from the
SDK's public pieces where they fit:

* protected-resource metadata (RFC 9728) through the SDK's `ProtectedResourceMetadata` model and
  handler, at `/.well-known/oauth-protected-resource/<path>` (RFC 9728 §3.1) and at the root
  `/.well-known/oauth-protected-resource` (the MCP spec's fallback);
* `AuthGate`: every protected request carries `Authorization: Bearer ...`; missing -> 401 with
  `WWW-Authenticate: Bearer resource_metadata="..."`, invalid -> 401 `error="invalid_token"`, a
  token without `klink:read` -> 403 `error="insufficient_scope", scope="klink:read"`. A good token
  becomes the SDK's `AuthenticatedUser` in `scope["user"]` and in the SDK's auth contextvar
  (`get_access_token()`), which the SDK carries into tool handlers and uses to bind sessions to
  their owner. The SDK's own `RequireAuthMiddleware` is not used: it answers `invalid_token` even
  when no token was sent (RFC 6750 §3.1 says no error code then) and cannot say why a token failed;
* `JwtVerifier` (the SDK's `TokenVerifier` protocol) with PyJWT: signature by the JWKS key named by
  `kid`, algorithms RS256/ES256 only (never `none`, never an HMAC with a public key), issuer,
  audience = this server's resource URL, `exp`/`nbf`/`iat` with 30 s leeway.
* `IdentityProvider`: OpenID discovery and the JWKS, fetched with httpx2 (the project's one HTTP
  stack, with its timeouts) and parsed by PyJWT's `PyJWKSet`. PyJWT's `PyJWKClient` is not used
  because it fetches with blocking `urllib` inside the event loop. Keys are cached for 5 minutes
  and refetched at once for an unknown `kid` (key rotation), at most every 10 s (so a flood of
  made-up key ids cannot turn into a flood of JWKS requests).

The static bearer token (`KLINK_HTTP_AUTH_TOKEN`) keeps working beside OAuth: it stands for the
operator and holds every scope. Access tokens are never forwarded anywhere (the K-LINK client has
its own API token) and never logged; the `AccessToken.token` kept in the context is a fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlparse

import anyio
import httpx2
import jwt
from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.authentication import AuthCredentials
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from klink_mcp.auth.principal import ALL_SCOPES, KEPT_CLAIMS, SCOPE_READ
from klink_mcp.config import ConfigError, Settings

__all__ = [
    "ALLOWED_ALGORITHMS",
    "AuthGate",
    "IdentityProvider",
    "InvalidToken",
    "JwtVerifier",
    "ProviderMetadata",
    "ProviderUnavailable",
    "ResourceServerConfig",
    "protected_resource_routes",
]

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS: Final = ("RS256", "ES256")
LEEWAY_S: Final = 30.0
JWKS_CACHE_S: Final = 300.0
JWKS_MIN_REFRESH_S: Final = 10.0
FETCH_TIMEOUT_S: Final = 5.0
METADATA_ROOT: Final = "/.well-known/oauth-protected-resource"


class InvalidToken(Exception):
    """An access or ID token is refused; the message is a short reason safe to show and log."""


class ProviderUnavailable(InvalidToken):
    """The identity provider cannot be asked (down, slow, broken document): not the token's fault.

    The auth gate answers 503 for it, not 401, so clients retry instead of signing in again.
    """


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the IdP's discovery document this server uses."""

    issuer: str
    jwks_uri: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None


@dataclass(frozen=True)
class ResourceServerConfig:
    """OAuth settings resolved from `Settings` (None from `from_settings` when OAuth is off)."""

    issuer: str
    resource_url: str
    audience: str
    jwks_url: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ResourceServerConfig | None:
        """Raises:
        ConfigError: an issuer is set without the server's resource URL, or a URL is not http(s).
        """
        if settings.oauth_issuer is None:
            return None
        if settings.resource_url is None:
            raise ConfigError(
                "KLINK_OAUTH_ISSUER is set but KLINK_RESOURCE_URL is not: set it to this server's public "
                "MCP URL (e.g. https://klink.example.com/mcp); tokens must be issued for it."
            )
        for name, url in (
            ("KLINK_OAUTH_ISSUER", settings.oauth_issuer),
            ("KLINK_RESOURCE_URL", settings.resource_url),
            ("KLINK_OAUTH_JWKS_URL", settings.oauth_jwks_url),
        ):
            if url is not None and urlparse(url).scheme not in ("http", "https"):
                raise ConfigError(f"{name} must be an http(s) URL, got {url!r}")
        return cls(
            issuer=settings.oauth_issuer,
            resource_url=settings.resource_url,
            audience=settings.oauth_audience or settings.resource_url,
            jwks_url=settings.oauth_jwks_url,
        )


class IdentityProvider:
    """Discovery document and signing keys of one issuer, fetched lazily and cached."""

    def __init__(
        self,
        issuer: str,
        *,
        jwks_url: str | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._jwks_url = jwks_url
        self._transport = transport
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at: float | None = None
        self._tried_at: float | None = None
        self._lock = anyio.Lock()

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with httpx2.AsyncClient(transport=self._transport, timeout=FETCH_TIMEOUT_S) as http:
            response = await http.get(url, headers={"accept": "application/json"})
        if response.status_code != 200:
            raise InvalidToken(f"identity provider answered {response.status_code} for {url}")
        data = response.json()
        if not isinstance(data, dict):
            raise InvalidToken(f"identity provider sent no JSON object at {url}")
        return data

    async def metadata(self) -> ProviderMetadata:
        """The issuer's OpenID discovery document (RFC 8414 metadata as a fallback).

        Raises:
            InvalidToken: the provider cannot be reached, or its document names another issuer.
        """
        if self._metadata is not None:
            return self._metadata
        base = self.issuer.rstrip("/")
        problems: list[str] = []
        for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            try:
                doc = await self._get_json(base + suffix)
            except (InvalidToken, httpx2.HTTPError, ValueError) as exc:
                problems.append(f"{suffix}: {type(exc).__name__}")
                continue
            if doc.get("issuer") != self.issuer:
                # RFC 8414 §3.3: a document for another issuer must not be used.
                raise InvalidToken(
                    f"discovery document names issuer {doc.get('issuer')!r}, not {self.issuer!r}"
                )
            jwks_uri = self._jwks_url or doc.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise InvalidToken("discovery document has no jwks_uri")
            self._metadata = ProviderMetadata(
                issuer=self.issuer,
                jwks_uri=jwks_uri,
                authorization_endpoint=doc.get("authorization_endpoint"),
                token_endpoint=doc.get("token_endpoint"),
            )
            return self._metadata
        if self._jwks_url is not None:
            # A configured JWKS is enough for verifying access tokens.
            self._metadata = ProviderMetadata(issuer=self.issuer, jwks_uri=self._jwks_url)
            return self._metadata
        raise ProviderUnavailable(f"identity provider discovery failed ({'; '.join(problems)})")

    async def _refresh_keys(self) -> None:
        jwks_uri = self._jwks_url or (await self.metadata()).jwks_uri
        data = await self._get_json(jwks_uri)
        try:
            keyset = jwt.PyJWKSet.from_dict(data)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the identity provider's JWKS is unusable: {type(exc).__name__}") from None
        self._keys = {
            key.key_id: key
            for key in keyset.keys
            if key.key_id and key.public_key_use in (None, "sig") and key.algorithm_name in ALLOWED_ALGORITHMS
        }
        self._keys_at = self._clock()

    async def signing_key(self, kid: str) -> jwt.PyJWK:
        """The verification key with this key id; refetches the JWKS when the id is unknown.

        Fetches are at most one per `JWKS_MIN_REFRESH_S`, successful or not, so neither made-up key
        ids nor an unreachable IdP turn every request into a JWKS request. When a refresh fails,
        keys already known keep working (an IdP outage does not lock everyone out).

        Raises:
            ProviderUnavailable: the JWKS cannot be fetched and the key is not known from before.
            InvalidToken: no such key (after a refetch, rate-limited).
        """
        async with self._lock:
            now = self._clock()
            due = self._keys_at is None or now - self._keys_at > JWKS_CACHE_S or kid not in self._keys
            may_fetch = self._tried_at is None or now - self._tried_at > JWKS_MIN_REFRESH_S
            if due and may_fetch:
                self._tried_at = now
                try:
                    await self._refresh_keys()
                except (InvalidToken, httpx2.HTTPError, ValueError) as exc:
                    reason = str(exc) if isinstance(exc, InvalidToken) else type(exc).__name__
                    if kid not in self._keys:
                        raise ProviderUnavailable(
                            f"the identity provider's keys cannot be fetched: {reason}"
                        ) from None
                    logger.warning("JWKS refresh failed (%s); still using the keys fetched before", reason)
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("token signed with an unknown key")
        return key


def fingerprint(token: str) -> str:
    """A non-reversible label for a token (never the token itself)."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def scopes_of(claims: dict[str, Any]) -> list[str]:
    """Scopes from `scope` (space-separated, RFC 9068) or `scp` (list or string, common IdPs)."""
    raw = claims.get("scope", claims.get("scp"))
    if isinstance(raw, str):
        return [s for s in raw.split() if s]
    if isinstance(raw, list):
        return [s for s in raw if isinstance(s, str) and s]
    return []


async def decode_jwt(
    idp: IdentityProvider, token: str, *, audience: str, issuer: str, required: Iterable[str]
) -> dict[str, Any]:
    """Verify a JWT's signature (JWKS key by `kid`, RS256/ES256 only) and its claims.

    Raises:
        InvalidToken: with a short reason (malformed, algorithm, key, signature, expiry, issuer, audience).
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise InvalidToken(f"algorithm {alg!r} is not accepted (only {', '.join(ALLOWED_ALGORITHMS)})")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("token has no key id (kid)")
    key = await idp.signing_key(kid)
    if key.algorithm_name != alg:
        raise InvalidToken(f"key {kid!r} is for {key.algorithm_name}, not {alg}")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": list(required)},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("token not valid yet") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("token was not issued for this server (audience)") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("token issuer is not trusted") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("token signature does not verify") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid token ({type(exc).__name__})") from None
    return claims


class JwtVerifier:
    """The SDK's `TokenVerifier` for JWT access tokens of one issuer, for one audience."""

    def __init__(self, idp: IdentityProvider, *, audience: str) -> None:
        self.idp = idp
        self.audience = audience

    async def verify(self, token: str) -> AccessToken:
        """The verified token as the SDK's `AccessToken` (claims trimmed, token fingerprinted).

        Raises:
            InvalidToken: the token is refused (see `decode_jwt`).
        """
        claims = await decode_jwt(
            self.idp,
            token,
            audience=self.audience,
            issuer=self.idp.issuer,
            required=("exp", "iss", "aud", "sub"),
        )
        subject = str(claims["sub"])
        client = claims.get("client_id") or claims.get("azp") or subject
        return AccessToken(
            token=fingerprint(token),
            client_id=str(client),
            scopes=scopes_of(claims),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=subject,
            claims={k: claims[k] for k in KEPT_CLAIMS if k in claims},
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK protocol: None for any refused token."""
        try:
            return await self.verify(token)
        except InvalidToken:
            return None


def static_access_token(token: str) -> AccessToken:
    """The operator behind `KLINK_HTTP_AUTH_TOKEN`: every scope, no person."""
    return AccessToken(
        token=fingerprint(token),
        client_id="static-bearer-token",
        scopes=list(ALL_SCOPES),
        subject="operator",
        claims={"klink_kind": "static", "name": "operator (static bearer token)"},
    )


class AuthGate:
    """ASGI middleware: every HTTP request outside `public_paths` must present a good bearer token."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        static_token: str | None,
        verifier: JwtVerifier | None,
        resource_metadata_url: str | None,
        public_paths: Iterable[str] = (),
        required_scope: str = SCOPE_READ,
    ) -> None:
        if static_token is None and verifier is None:
            raise ValueError("AuthGate needs a static token, a JWT verifier, or both")
        self.app = app
        self._static = static_token.encode() if static_token is not None else None
        self._verifier = verifier
        self._metadata_url = resource_metadata_url
        self._public = frozenset(public_paths)
        self._required_scope = required_scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in self._public:
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        if presented is None:
            await self._refuse(send, 401, None, "Authentication required")
            return
        if self._static is not None and hmac.compare_digest(presented.encode(), self._static):
            access = static_access_token(presented)
        elif self._verifier is not None:
            try:
                access = await self._verifier.verify(presented)
            except ProviderUnavailable as exc:
                logger.warning("bearer token not checked: %s", exc)
                await self._unavailable(send, str(exc))
                return
            except InvalidToken as exc:
                logger.info("bearer token refused: %s", exc)
                await self._refuse(send, 401, "invalid_token", str(exc))
                return
            if self._required_scope not in access.scopes:
                await self._refuse(
                    send,
                    403,
                    "insufficient_scope",
                    f"Required scope: {self._required_scope}",
                    self._required_scope,
                )
                return
        else:
            await self._refuse(send, 401, "invalid_token", "The bearer token is not valid")
            return
        user = AuthenticatedUser(access)
        scope["user"] = user
        scope["auth"] = AuthCredentials(access.scopes)
        reset = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(reset)

    async def _unavailable(self, send: Send, reason: str) -> None:
        body = json.dumps({"error": "temporarily_unavailable", "error_description": reason}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"10"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _refuse(
        self, send: Send, status: int, error: str | None, description: str, needed_scope: str | None = None
    ) -> None:
        params: list[str] = []
        if error is not None:
            params.append(f'error="{error}"')
            params.append(f'error_description="{_quoted(description)}"')
        if needed_scope is not None:
            params.append(f'scope="{needed_scope}"')
        if self._metadata_url is not None:
            params.append(f'resource_metadata="{self._metadata_url}"')
        challenge = "Bearer " + ", ".join(params) if params else "Bearer"
        body = json.dumps({"error": error or "unauthorized", "error_description": description}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            if value[:7].lower() != b"bearer ":
                return None
            token = value[7:].strip().decode("latin-1")
            return token or None
    return None


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


def metadata_url_for(resource_url: str) -> str:
    """Where this resource's RFC 9728 metadata lives (path inserted after the well-known prefix)."""
    return str(build_resource_metadata_url(AnyHttpUrl(resource_url)))


def protected_resource_routes(config: ResourceServerConfig) -> list[Route]:
    """RFC 9728 metadata at the path-inserted URL and at the root well-known URL (MCP's fallback)."""
    # Validated from strings so the model keeps path-less URLs exactly as configured (issuer
    # comparison is exact string comparison; a spurious trailing slash would break clients).
    metadata = ProtectedResourceMetadata.model_validate(
        {
            "resource": config.resource_url,
            "authorization_servers": [config.issuer],
            "scopes_supported": list(ALL_SCOPES),
            "resource_name": "klink-mcp",
        }
    )
    handler = ProtectedResourceMetadataHandler(metadata)
    paths = {METADATA_ROOT, urlparse(metadata_url_for(config.resource_url)).path}
    return [Route(path, endpoint=handler.handle, methods=["GET"]) for path in sorted(paths)]
