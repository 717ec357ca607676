"""The K-LINK credentials and the one function that turns them into an `Authorization` header.

K-LINK documents two schemes: Bearer (recommended; a token from a Developer Tools app or the API
Tokens page) and Basic (`base64(user:password)`). A bearer token travels as a plain `SecretStr`;
Basic credentials as `BasicCredentials`, a `SecretStr` whose secret value is the password and which
also carries the (non-secret) user name. Keeping both `SecretStr` lets the transport layer treat them
alike: it asks `authorization_header()` for the header and scrubs `get_secret_value()` from any text
the server sends back.

This module must not import `mcp`, log, or put a secret (token, password, encoded header) into an
error or a `repr`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from klink_mcp.config import ConfigError

if TYPE_CHECKING:
    from klink_mcp.config import Settings

__all__ = ["BasicCredentials", "authorization_header", "credentials_from_settings", "describe_scheme"]


class BasicCredentials(SecretStr):
    """Credentials for `Authorization: Basic`: the password is the secret value, `user` is plain."""

    def __init__(self, user: str, password: str | SecretStr) -> None:
        """
        Raises:
            ConfigError: the user name is empty or holds ':' (Basic auth joins user and password with it).
        """
        if not user or ":" in user:
            raise ConfigError("the Basic auth user name must be non-empty and must not contain ':'")
        super().__init__(password.get_secret_value() if isinstance(password, SecretStr) else password)
        self.user = user

    def __repr__(self) -> str:
        return f"BasicCredentials(user={self.user!r}, password=SecretStr('**********'))"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BasicCredentials)
            and other.user == self.user
            and other.get_secret_value() == self.get_secret_value()
        )

    def __hash__(self) -> int:
        return hash((self.user, self.get_secret_value()))


def scheme_of(credentials: SecretStr) -> Literal["bearer", "basic"]:
    """Which scheme these credentials use."""
    return "basic" if isinstance(credentials, BasicCredentials) else "bearer"


def authorization_header(credentials: SecretStr) -> str:
    """The `Authorization` header value: `Bearer <token>` or `Basic base64(user:password)`.

    Raises:
        ConfigError: the token is empty or holds characters a header cannot carry (the HTTP stack's
            own error would quote the header, secret and all).
    """
    secret = credentials.get_secret_value()
    if isinstance(credentials, BasicCredentials):
        if not secret:
            raise ConfigError("the K-LINK Basic auth password is empty")
        raw = f"{credentials.user}:{secret}".encode()
        return f"Basic {base64.b64encode(raw).decode('ascii')}"
    if not secret.strip():
        raise ConfigError("the K-LINK API token is empty")
    if not all(33 <= ord(ch) < 127 for ch in secret):
        raise ConfigError("the K-LINK API token contains spaces or characters a header cannot carry")
    return f"Bearer {secret}"


def credentials_from_settings(settings: Settings) -> SecretStr:
    """The credentials `settings` select: the sandbox token, Basic user + password, or the API token.

    Raises:
        ConfigError: no credentials are configured outside sandbox mode.
    """
    if settings.uses_sandbox:
        return settings.sandbox_token
    if settings.basic_user is not None and settings.basic_password is not None:
        return BasicCredentials(settings.basic_user, settings.basic_password)
    if settings.api_token is None:
        raise ConfigError(
            "no K-LINK credentials: set KLINK_API_TOKEN, or KLINK_BASIC_USER and KLINK_BASIC_PASSWORD"
        )
    return settings.api_token


def describe_scheme(settings: Settings) -> str:
    """One line for people: which scheme and which settings it comes from (never the secret)."""
    if settings.uses_sandbox:
        return "Bearer, the embedded sandbox's demo token (no K-LINK credentials in use)"
    if settings.basic_user is not None:
        return f"Basic (KLINK_BASIC_USER={settings.basic_user!r} + KLINK_BASIC_PASSWORD)"
    return "Bearer (KLINK_API_TOKEN)"
