"""Two-step confirmation tokens: proof that a human saw one exact preview and said yes.

A token is minted when the server shows a preview ("delete contact Alice, 2 open tickets") and is
accepted once, for the same tool, the same arguments and the same state of the target, before it
expires. Its text is ``<payload>.<mac>``, both url-safe base64 without padding: the payload is
canonical JSON of ``{v, purpose, tool, args, tv, exp, nonce}`` (``args`` = SHA-256 of the normalised
arguments, ``tv`` = the target version the preview showed) and the MAC is HMAC-SHA256 over the
payload bytes under a key derived from the secret and the token's purpose, so a token minted for one
purpose (say the 2026 elicitation state) is never valid for another.

The secret is random per process unless one is given (`KLINK_GUARD_SECRET`, for replicas that must
accept each other's tokens). Consumed nonces are remembered per process until their token expires,
so with several replicas a token could be replayed once on each; give replicas sticky sessions or
use elicitation when that matters.

This module must not import `mcp`, log token text, or put the secret into any error, repr or
token (a MAC does not reveal its key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from klink_mcp.guard.canonical import args_digest, canonical_json

__all__ = [
    "MAX_TTL_S",
    "ConfirmationTokens",
    "Minted",
    "RejectReason",
    "TokenRejected",
]

MAX_TTL_S = 300.0
_MIN_SECRET_BYTES = 32
_VERSION = 1
_MAX_TOKEN_CHARS = 2048  # a real token is ~300 chars; refuse to parse anything absurd

RejectReason = Literal[
    "malformed", "bad_signature", "wrong_tool", "wrong_arguments", "expired", "target_changed", "replayed"
]
REJECT_REASONS: frozenset[str] = frozenset(get_args(RejectReason))


class TokenRejected(Exception):
    """A token was not accepted. `reason` says which check failed (never anything secret)."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(reason)
        self.reason: RejectReason = reason


@dataclass(frozen=True)
class Minted:
    """A freshly minted token and the clock time (seconds since the epoch) after which it is refused."""

    token: str
    expires_at: float

    def __repr__(self) -> str:  # a token is a one-time credential: keep it out of logs and tracebacks
        return f"Minted(token='<{len(self.token)} chars>', expires_at={self.expires_at!r})"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConfirmationTokens:
    """Mints and verifies single-use confirmation tokens bound to a tool, its arguments and its target.

    `ttl_s` is capped at 300 seconds. `clock` is injectable for tests.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        ttl_s: float = 120.0,
        clock: Callable[[], float] = time.time,
        *,
        purpose: str = "confirmation",
    ) -> None:
        """
        Raises:
            ValueError: `secret` is shorter than 32 bytes, or `ttl_s` is not positive.
        """
        if secret is not None and len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"the guard secret must be at least {_MIN_SECRET_BYTES} bytes")
        if not ttl_s > 0:
            raise ValueError("ttl_s must be positive")
        self._root = secret if secret is not None else secrets.token_bytes(32)
        self._purpose = purpose
        self._key = hmac.new(self._root, f"klink-mcp/{purpose}/v{_VERSION}".encode(), hashlib.sha256).digest()
        self.ttl_s = min(float(ttl_s), MAX_TTL_S)
        self._clock = clock
        self._consumed: dict[str, float] = {}  # nonce -> expiry; kept until the token could no longer verify
        self._expiries: list[tuple[float, str]] = []  # heap of (expiry, nonce): pruning costs O(log n)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ConfirmationTokens(purpose={self._purpose!r}, ttl_s={self.ttl_s!r})"

    def derive(self, purpose: str, ttl_s: float | None = None) -> ConfirmationTokens:
        """A sibling with the same secret and clock but its own key (by purpose) and nonce store.

        Raises:
            ValueError: `ttl_s` is not positive.
        """
        return ConfirmationTokens(
            self._root, ttl_s=self.ttl_s if ttl_s is None else ttl_s, clock=self._clock, purpose=purpose
        )

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def mint(self, tool: str, args: Mapping[str, Any], target_version: str | None) -> Minted:
        """A token for this tool, these (normalised) arguments and this target version.

        Raises:
            pydantic_core.PydanticSerializationError: an argument has no JSON form.
        """
        expires_at = self._clock() + self.ttl_s
        payload = canonical_json(
            {
                "v": _VERSION,
                "purpose": self._purpose,
                "tool": tool,
                "args": args_digest(args),
                "tv": target_version,
                "exp": expires_at,
                "nonce": secrets.token_urlsafe(16),
            }
        ).encode("utf-8")
        return Minted(token=f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}", expires_at=expires_at)

    def _decode(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
            raise TokenRejected("malformed")
        payload_text, mac_text = token.split(".")
        try:
            payload, mac = _b64decode(payload_text), _b64decode(mac_text)
        except (binascii.Error, ValueError):
            raise TokenRejected("malformed") from None
        # Only the canonical encoding is accepted: base64 without padding has spare bits in its last
        # character, and a token must not have several spellings.
        if (
            not payload
            or len(mac) != hashlib.sha256().digest_size
            or _b64encode(payload) != payload_text
            or _b64encode(mac) != mac_text
        ):
            raise TokenRejected("malformed")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenRejected("bad_signature")
        try:
            claims = json.loads(payload)
        except ValueError:
            raise TokenRejected("malformed") from None
        expected = {"v", "purpose", "tool", "args", "tv", "exp", "nonce"}
        if not isinstance(claims, dict) or set(claims) != expected or claims["v"] != _VERSION:
            raise TokenRejected("malformed")
        if claims["purpose"] != self._purpose:  # unreachable with distinct keys; kept as a second lock
            raise TokenRejected("bad_signature")
        if not isinstance(claims["exp"], int | float) or not isinstance(claims["nonce"], str):
            raise TokenRejected("malformed")
        return claims

    def _prune(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, nonce = heapq.heappop(self._expiries)
            self._consumed.pop(nonce, None)

    def check(self, token: str, tool: str, args: Mapping[str, Any]) -> None:
        """Every check that needs no knowledge of the target, without consuming anything.

        Lets a caller refuse a forged, expired or used token before it spends an upstream call on
        loading the target's current version; `verify_and_consume` repeats these checks.

        Raises:
            TokenRejected: with reason "malformed", "bad_signature", "wrong_tool", "wrong_arguments",
                "expired" or "replayed".
        """
        claims = self._verify_claims(token, tool, args)
        with self._lock:
            self._check_fresh(claims)

    def verify_and_consume(
        self, token: str, tool: str, args: Mapping[str, Any], current_target_version: str | None
    ) -> None:
        """Accept `token` once for this exact call, or raise.

        Checks, in order: well-formed, signature, tool, arguments, expiry, single use, target version.
        The nonce is consumed only when every check passed; checking and consuming happen under one
        lock with no await in between, so of two racing confirms exactly one succeeds.

        Raises:
            TokenRejected: with reason "malformed", "bad_signature", "wrong_tool", "wrong_arguments",
                "expired", "replayed" or "target_changed".
        """
        claims = self._verify_claims(token, tool, args)
        with self._lock:
            self._check_fresh(claims)
            if claims["tv"] != current_target_version:
                raise TokenRejected("target_changed")
            expiry = float(claims["exp"])
            self._consumed[claims["nonce"]] = expiry
            heapq.heappush(self._expiries, (expiry, claims["nonce"]))

    def _verify_claims(self, token: str, tool: str, args: Mapping[str, Any]) -> dict[str, Any]:
        claims = self._decode(token)
        if claims["tool"] != tool:
            raise TokenRejected("wrong_tool")
        if not hmac.compare_digest(str(claims["args"]), args_digest(args)):
            raise TokenRejected("wrong_arguments")
        return claims

    def _check_fresh(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        self._prune(now)
        if now >= claims["exp"]:
            raise TokenRejected("expired")
        if claims["nonce"] in self._consumed:
            raise TokenRejected("replayed")
