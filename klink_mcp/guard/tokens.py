"""Two-step confirmation tokens: proof that a human saw one exact preview and said yes.

A token is minted when the server shows a preview ("delete contact Alice, 2 open tickets") and is
accepted once, for the same tool, the same arguments and the same state of the target, before it
expires. Its text is ``<payload>.<mac>``, both url-safe base64 without padding: the payload is
canonical JSON of ``{v, purpose, tool, args, tv, exp, nonce}`` (``args`` = SHA-256 of the normalised
arguments, ``tv`` = the target version the preview showed) and the MAC is HMAC-SHA256 over the
payload bytes under a key derived from the secret and the token's purpose, so a token minted for one
purpose (say the 2026 elicitation state) is never valid for another.

The secret is random per process unless one is given (`KLINK_GUARD_SECRET`, for replicas that must
accept each other's tokens). Single use is decided by a `NonceLedger`: the server passes its shared
store (`klink_mcp.store.Store.consume_nonce`, one insert on a unique key), so with several replicas
on one database a token is accepted once in all (`consume`). Without a ledger a `LocalNonces`
(this process only) answers, which is right for one process and for the synchronous
`verify_and_consume`.

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
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

from klink_mcp.guard.canonical import args_digest, canonical_json

__all__ = [
    "MAX_TTL_S",
    "ConfirmationTokens",
    "LocalNonces",
    "Minted",
    "NonceLedger",
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


class NonceLedger(Protocol):
    """Where used nonces are recorded; `klink_mcp.store.Store` is one (shared by the replicas)."""

    async def consume_nonce(self, nonce: str, expires_at: datetime) -> bool:
        """True for the one caller that used `nonce` first (False: already used, or expired).

        Raises:
            StoreError: the ledger cannot be written (the token is then not accepted).
        """
        ...


class LocalNonces:
    """A `NonceLedger` in this process: nonces kept until their token expires (a heap prunes them)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.consumed: dict[str, float] = {}  # nonce -> expiry; kept until the token could no longer verify
        self._expiries: list[tuple[float, str]] = []  # heap of (expiry, nonce): pruning costs O(log n)
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, nonce = heapq.heappop(self._expiries)
            self.consumed.pop(nonce, None)

    def seen(self, nonce: str) -> bool:
        """Whether `nonce` was used (and its token has not expired yet)."""
        with self._lock:
            self._prune(self._clock())
            return nonce in self.consumed

    def take(self, nonce: str, expiry: float) -> bool:
        """Record `nonce` as used until `expiry`; False when it already was."""
        with self._lock:
            self._prune(self._clock())
            if nonce in self.consumed:
                return False
            self.consumed[nonce] = expiry
            heapq.heappush(self._expiries, (expiry, nonce))
            return True

    async def consume_nonce(self, nonce: str, expires_at: datetime) -> bool:
        """See `NonceLedger.consume_nonce`."""
        return self.take(nonce, expires_at.timestamp())


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
        nonces: NonceLedger | None = None,
    ) -> None:
        """`nonces`: the ledger `consume` records used nonces in (a shared store for replicas).

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
        self._local = LocalNonces(clock)
        self._ledger: NonceLedger = nonces if nonces is not None else self._local

    def __repr__(self) -> str:
        return f"ConfirmationTokens(purpose={self._purpose!r}, ttl_s={self.ttl_s!r})"

    def derive(self, purpose: str, ttl_s: float | None = None) -> ConfirmationTokens:
        """A sibling with the same secret and clock but its own key (by purpose) and nonce store.

        Raises:
            ValueError: `ttl_s` is not positive.
        """
        return ConfirmationTokens(
            self._root,
            ttl_s=self.ttl_s if ttl_s is None else ttl_s,
            clock=self._clock,
            purpose=purpose,
            nonces=None if self._ledger is self._local else self._ledger,
        )

    def use_ledger(self, nonces: NonceLedger) -> None:
        """Record used nonces in `nonces` from now on (the server's shared store)."""
        self._ledger = nonces

    @property
    def _consumed(self) -> dict[str, float]:
        return self._local.consumed

    def subkey(self, purpose: str) -> bytes:
        """A key derived from the secret for another use (e.g. approval ids shared by replicas)."""
        return hmac.new(self._root, f"klink-mcp/{purpose}/key".encode(), hashlib.sha256).digest()

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

    def check(self, token: str, tool: str, args: Mapping[str, Any]) -> None:
        """Every check that needs no knowledge of the target, without consuming anything.

        Lets a caller refuse a forged, expired or used token before it spends an upstream call on
        loading the target's current version; `verify_and_consume` repeats these checks.

        Raises:
            TokenRejected: with reason "malformed", "bad_signature", "wrong_tool", "wrong_arguments",
                "expired" or "replayed".
        """
        claims = self._verify_claims(token, tool, args)
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
        self._check_fresh(claims)
        if claims["tv"] != current_target_version:
            raise TokenRejected("target_changed")
        if not self._local.take(claims["nonce"], float(claims["exp"])):
            raise TokenRejected("replayed")

    async def consume(
        self, token: str, tool: str, args: Mapping[str, Any], current_target_version: str | None
    ) -> None:
        """`verify_and_consume` through the ledger: single use across every replica sharing it.

        The ledger decides in one write (a unique key), so of two replicas racing with the same token
        exactly one succeeds; a refused check consumes nothing.

        Raises:
            TokenRejected: as `verify_and_consume`.
            StoreError: the ledger cannot be written (nothing runs).
        """
        claims = self._verify_claims(token, tool, args)
        self._check_fresh(claims)
        if claims["tv"] != current_target_version:
            raise TokenRejected("target_changed")
        expires_at = datetime.fromtimestamp(float(claims["exp"]), UTC)
        if not await self._ledger.consume_nonce(str(claims["nonce"]), expires_at):
            # Refused by the ledger: used already, or (clock skew between replicas) already expired.
            raise TokenRejected("replayed" if self._clock() < float(claims["exp"]) else "expired")
        if self._ledger is not self._local:
            # Remembered here too, so `check` refuses a replay on this replica before any upstream read.
            self._local.take(str(claims["nonce"]), float(claims["exp"]))

    def _verify_claims(self, token: str, tool: str, args: Mapping[str, Any]) -> dict[str, Any]:
        claims = self._decode(token)
        if claims["tool"] != tool:
            raise TokenRejected("wrong_tool")
        if not hmac.compare_digest(str(claims["args"]), args_digest(args)):
            raise TokenRejected("wrong_arguments")
        return claims

    def _check_fresh(self, claims: Mapping[str, Any]) -> None:
        if self._clock() >= claims["exp"]:
            raise TokenRejected("expired")
        if self._local.seen(claims["nonce"]):
            raise TokenRejected("replayed")
