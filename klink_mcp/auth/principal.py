"""Who is calling, and what they may do: scopes, the authenticated principal, `require_scope`.

Scopes decide what a person may do through the MCP server:

- `klink:read`    - list and read (tools, resources, prompts);
- `klink:write`   - create and change records;
- `klink:send`    - reach a customer (send a message);
- `klink:delete`  - lose data (delete, remove tags);
- `klink:approve` - approve a guarded call on the approval page.

The principal comes from the SDK's auth context (`mcp.server.auth.middleware.auth_context`), which the
HTTP auth gate (`klink_mcp.auth.resource_server`) fills for every authenticated request; the SDK
carries that contextvar into the tool handlers. Where nobody authenticated (stdio: the local user
who started the process), there is no principal and `require_scope` allows everything, as before.

This module must not do I/O, must not import the tool layer, and never holds a raw token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver.exceptions import ToolError

__all__ = [
    "ALL_SCOPES",
    "SCOPE_APPROVE",
    "SCOPE_DELETE",
    "SCOPE_READ",
    "SCOPE_SEND",
    "SCOPE_WRITE",
    "InsufficientScope",
    "Principal",
    "current_principal",
    "principal_from_access_token",
    "require_scope",
    "scope_for_effects",
]

SCOPE_READ: Final = "klink:read"
SCOPE_WRITE: Final = "klink:write"
SCOPE_SEND: Final = "klink:send"
SCOPE_DELETE: Final = "klink:delete"
SCOPE_APPROVE: Final = "klink:approve"
ALL_SCOPES: Final = (SCOPE_READ, SCOPE_WRITE, SCOPE_SEND, SCOPE_DELETE, SCOPE_APPROVE)

# The strongest effect wins: a call that writes and sends needs the send scope (and the tool layer
# may ask for each with several `require_scope` calls if it wants all of them).
_EFFECT_SCOPES: Final = (
    ("delete", SCOPE_DELETE),
    ("send", SCOPE_SEND),
    ("write", SCOPE_WRITE),
    ("read", SCOPE_READ),
)

# The claims kept from a token (no raw token, nothing else a log line could leak).
KEPT_CLAIMS: Final = ("iss", "sub", "name", "email", "preferred_username", "azp", "client_id")


class InsufficientScope(ToolError):
    """The authenticated person lacks the scope an effect needs (the message says which).

    A `ToolError`, so raised in a tool it reaches the model as an error result it can relay.
    """

    def __init__(self, scope: str, principal: Principal) -> None:
        held = ", ".join(sorted(principal.scopes)) or "none"
        super().__init__(
            f"Not allowed: this needs the '{scope}' scope and {principal.display} holds {held}. "
            "Ask your identity-provider administrator to grant it, or leave this action to someone who has it."
        )
        self.scope = scope
        self.principal = principal


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a person (OAuth) or the operator's static bearer token."""

    subject: str
    scopes: frozenset[str]
    kind: Literal["oauth", "static"]
    issuer: str | None = None
    name: str | None = None
    email: str | None = None
    client_id: str | None = None

    @property
    def display(self) -> str:
        """A human label for messages and the audit (name, else email, else subject)."""
        return self.name or self.email or self.subject

    def has(self, scope: str) -> bool:
        return scope in self.scopes


def principal_from_access_token(token: AccessToken) -> Principal:
    """The `Principal` behind an SDK `AccessToken` built by this package's verifiers."""
    claims = token.claims or {}
    kind: Literal["oauth", "static"] = "static" if claims.get("klink_kind") == "static" else "oauth"
    return Principal(
        subject=token.subject or token.client_id,
        scopes=frozenset(token.scopes),
        kind=kind,
        issuer=_str_or_none(claims.get("iss")),
        name=_str_or_none(claims.get("name")) or _str_or_none(claims.get("preferred_username")),
        email=_str_or_none(claims.get("email")),
        client_id=token.client_id,
    )


def current_principal() -> Principal | None:
    """The caller of the current request, or None when nobody authenticated (stdio, local HTTP)."""
    token = get_access_token()
    return principal_from_access_token(token) if token is not None else None


def require_scope(scope: str) -> Principal | None:
    """Refuse the current call unless its principal holds `scope`; returns the principal.

    Without an authenticated principal (stdio, loopback HTTP without auth) everything stays allowed:
    the person who started the process is the only user.

    Raises:
        InsufficientScope: a principal is authenticated and does not hold `scope`.
        ValueError: `scope` is not one of this server's scopes (a programming error).
    """
    if scope not in ALL_SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(ALL_SCOPES)}")
    principal = current_principal()
    if principal is not None and not principal.has(scope):
        raise InsufficientScope(scope, principal)
    return principal


def scope_for_effects(effects: Iterable[str]) -> str:
    """The scope a call with these effects needs: delete > send > write > read (empty means read).

    Raises:
        ValueError: an effect is not one of read, write, send, delete.
    """
    wanted = set(effects)
    unknown = wanted - {effect for effect, _ in _EFFECT_SCOPES}
    if unknown:
        raise ValueError(f"unknown effect(s) {sorted(unknown)}; expected read, write, send or delete")
    for effect, scope in _EFFECT_SCOPES:
        if effect in wanted:
            return scope
    return SCOPE_READ


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
