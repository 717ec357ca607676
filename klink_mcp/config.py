"""One `Settings` object for the whole process, read from the environment and an optional TOML file.

Precedence (highest first): explicit keyword overrides (CLI flags, tests) > environment variables
> the TOML file (`KLINK_CONFIG` or `--config`) > defaults.

The model is the one source of truth: each field carries its description (and, where the plain
default would mislead, the default to show) and `_ENV_KEYS` gives its `KLINK_*` variable. The TOML key
is always the variable name in lower case without `KLINK_` (`KLINK_SCHEMA_TTL` -> `schema_ttl`), the
README's configuration table is generated from here (`klink-mcp config --markdown`), and a field is
secret when its type is `SecretStr`. Adding a setting is: a field with a description, plus its
variable in `_ENV_KEYS`.

Every problem becomes one `ConfigError` line that names the variable or key, says what is valid and,
for a near miss, what was probably meant. Secrets are held as `SecretStr` so that a `repr`, a log line
or an error message never shows them; a secret's value is never quoted in an error.

TOML layout (every key optional)::

    api_token = "..."                 # or basic_user + basic_password (Basic auth), never both
    base_url = "https://apigw.klinkcx.com"
    read_only = true
    toolsets = ["contacts", "tickets"]  # or "contacts,tickets"

    [operations.create_contact]      # override an [inferred] operation of the catalogue
    method = "POST"
    path = "/api/v1/customers"

Environment overrides for operations: `KLINK_OP_<NAME>_METHOD` and `KLINK_OP_<NAME>_PATH`
(e.g. `KLINK_OP_CREATE_CONTACT_PATH=/api/v1/customers`).

This module must not import `mcp` and does no I/O beyond reading the TOML file and checking that a
sandbox fixture file exists.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from klink_mcp.toolsets import TOOLSET_NAMES

DEFAULT_BASE_URL = "https://apigw.klinkcx.com"
DEFAULT_SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - a public, documented demo credential
MIN_SECRET_BYTES = 32

ConfirmMode = Literal["on", "off", "elicit", "token"]


class ConfigError(ValueError):
    """The configuration cannot be used (bad TOML, a wrong type, an unknown key or operation)."""


class OperationOverride(BaseModel):
    """A tenant-specific method and/or path for one catalogued operation."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] | None = None
    path: str | None = None

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("an operation path must start with '/'")
        return value


def _doc(description: str, shown_default: str | None = None) -> Any:
    """Field metadata for the generated table: the description, and the default to show if not the value."""
    extra: dict[str, Any] = {"shown_default": shown_default} if shown_default is not None else {}
    return {"description": description, "json_schema_extra": extra or None}


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseModel):
    """Everything the process can be configured with. Build it with `load_settings()`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # K-LINK connection and auth (exactly one scheme: Bearer token, or Basic user + password)
    api_token: SecretStr | None = Field(
        None,
        **_doc(
            "K-LINK bearer token (Authorization: Bearer). Without any credentials the embedded sandbox is used.",
            "unset (sandbox)",
        ),
    )
    basic_user: str | None = Field(
        None,
        **_doc("User name for K-LINK Basic authentication (with KLINK_BASIC_PASSWORD; not with a token)."),
    )
    basic_password: SecretStr | None = Field(
        None, **_doc("Password for K-LINK Basic authentication (with KLINK_BASIC_USER).")
    )
    base_url: str = Field(
        DEFAULT_BASE_URL, **_doc("API gateway (scheme and host; the paths add /api/v1/...).")
    )
    allow_insecure_http: bool = Field(
        False, **_doc("Allow sending credentials over plain http:// to a non-loopback host.")
    )
    connect_timeout_s: float = Field(5.0, gt=0, **_doc("Seconds to open a connection to K-LINK."))
    read_timeout_s: float = Field(20.0, gt=0, **_doc("Seconds to wait for K-LINK's answer."))
    call_deadline_s: float = Field(45.0, gt=0, **_doc("Seconds one call may take, retries included."))
    max_attempts: int = Field(
        5,
        ge=1,
        le=10,
        **_doc(
            "Attempts for safe (idempotent) reads within the call deadline; a POST is never resent once sent."
        ),
    )
    retry_budget: float = Field(
        100.0,
        ge=0,
        le=10_000,
        **_doc(
            "Client-wide retry tokens: a retry costs 5 (10 after a timeout), a success returns 1; when spent, "
            "calls fail fast instead of piling onto a K-LINK that is down. 0 turns retries off."
        ),
    )
    page_concurrency: int = Field(4, ge=1, le=16, **_doc("Pages fetched at once when reading every page."))
    # serve --http and the webhook receiver (klink_mcp/http_server.py)
    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        **_doc("Seconds for a request head to arrive (else 408 and the connection closes)."),
    )
    http_body_timeout_s: float = Field(
        30.0, gt=0, le=3600, **_doc("Seconds for a request body to arrive after its head.")
    )
    http_keepalive_s: float = Field(
        5.0, gt=0, le=300, **_doc("Seconds an idle keep-alive connection stays open.")
    )
    http_max_connections: int = Field(
        256, ge=1, le=100_000, **_doc("Open connections at most (one more is closed at once).")
    )
    http_shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        **_doc("On SIGTERM, seconds calls in flight get to finish before they are cancelled."),
    )
    operations: dict[str, OperationOverride] = Field(default_factory=dict)

    # Sandbox (embedded tenant)
    sandbox: bool = Field(
        False, **_doc("Use the embedded sandbox even when credentials are set (also --sandbox).")
    )
    sandbox_token: SecretStr = Field(
        SecretStr(DEFAULT_SANDBOX_TOKEN),
        **_doc("Bearer token of the embedded sandbox (a public demo value).", DEFAULT_SANDBOX_TOKEN),
    )
    sandbox_fixture: Path | None = Field(
        None, **_doc("JSON fixture describing another sandbox tenant (see klink_mcp/sandbox/tenant.py).")
    )

    # MCP surface
    read_only: bool = Field(False, **_doc("Offer read tools only (also --read-only); wins over everything."))
    toolsets: tuple[str, ...] | None = Field(
        None, **_doc(f"Allow-list of toolsets, comma-separated: {', '.join(TOOLSET_NAMES)}.", "all")
    )
    schema_ttl_s: float = Field(600.0, ge=0, **_doc("Seconds the compiled form schemas are cached."))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", **_doc("Log level; logs go to stderr (stdout is the MCP protocol on stdio).")
    )

    # Guard
    confirm: ConfirmMode = Field(
        "on",
        **_doc(
            "on: the client's elicitation form, else URL elicitation, else the server's approval page "
            "(a person approves; the model cannot); elicit: in-client elicitation only; token: a two-step "
            "token the model can satisfy itself (headless automation only); off: none (warns at start)."
        ),
    )
    confirm_tools: tuple[str, ...] = Field(
        (), **_doc("Extra write tools that need confirmation, comma-separated.", "none")
    )
    guard_secret: SecretStr | None = Field(
        None,
        **_doc("Confirmation-token signing key shared by replicas (32+ bytes).", "random per process"),
    )
    confirmation_ttl_s: float = Field(
        120.0, gt=0, le=300, **_doc("Lifetime of a confirmation token, seconds (max 300).")
    )
    elicitation_timeout_s: float = Field(
        300.0, gt=0, **_doc("Seconds to wait for the user's answer to a confirmation question.")
    )
    audit_log: Path | None = Field(
        None, **_doc("JSON-lines audit log of every write attempt and decision (must be writable).")
    )
    audit_include_bodies: bool = Field(False, **_doc("Also write message bodies into the audit log."))
    # Guard: the approval page (klink_mcp/approval_page.py)
    approval_port: int = Field(
        0, ge=0, le=65535, **_doc("Port of the approval page on stdio (127.0.0.1).", "0 (ephemeral)")
    )
    approval_open_browser: bool = Field(
        False, **_doc("Open the approval page in the desktop's browser when an approval is needed.")
    )
    approval_ttl_s: float = Field(
        600.0, gt=0, le=3600, **_doc("Seconds a pending approval stays open on the page (max 3600).")
    )

    # Guard: policy by effect (klink_mcp/guard/policy.py)
    approval_statuses: tuple[str, ...] = Field(
        ("resolved", "closed"),
        **_doc(
            "Ticket statuses that solve or close a ticket (the customer is usually notified), "
            "comma-separated: moving a ticket to one of them needs approval.",
            "resolved,closed",
        ),
    )
    confirm_overwrites: bool = Field(
        False,
        **_doc(
            "Also ask for approval before overwriting a field with a new value (clearing a field, "
            "replacing tags, names, e-mails or phones always asks)."
        ),
    )

    # Webhooks
    webhook_secret: SecretStr | None = Field(
        None, **_doc("Signing secret of the K-LINK webhook (x-signature), 32+ bytes.")
    )
    webhook_auth: Literal["signature", "basic", "header", "none"] = Field(
        "signature", **_doc("How webhook deliveries authenticate: signature, basic, header or none.")
    )
    webhook_basic_user: str | None = Field(None, **_doc("User of webhook Basic auth (webhook_auth=basic)."))
    webhook_basic_password: SecretStr | None = Field(
        None, **_doc("Password of webhook Basic auth (webhook_auth=basic).")
    )
    webhook_header_name: str | None = Field(
        None, **_doc("Header carrying the webhook secret (webhook_auth=header).")
    )
    webhook_header_value: SecretStr | None = Field(
        None, **_doc("Value of that header (webhook_auth=header), 32+ bytes.")
    )
    webhook_max_body_bytes: int = Field(1_048_576, ge=1024, **_doc("Largest webhook body accepted, bytes."))
    events_db: Path | None = Field(
        None,
        **_doc(
            "SQLite file for received webhook events (must be writable; ':memory:' keeps none).",
            "user data dir",
        ),
    )
    events_retention: int = Field(10_000, ge=10, **_doc("Webhook events kept."))

    # Shared store (klink_mcp.store): postgresql://... for replicas; unset = the embedded SQLite file
    database_url: SecretStr | None = Field(
        None,
        **_doc(
            "Shared store for replicas: postgresql://user:pass@host/db (approvals, nonces, events, audit, "
            "notifications); unset keeps the embedded SQLite file.",
            "unset (SQLite)",
        ),
    )

    # HTTP transport of the MCP server
    http_auth_token: SecretStr | None = Field(
        None,
        **_doc("Bearer token every HTTP request must carry (32+ bytes); required to listen beyond loopback."),
    )

    # Team deployment: OAuth resource server, approval sign-in, operations (klink_mcp/auth, ops.py)
    resource_url: str | None = Field(
        None,
        **_doc(
            "This server's public URL (the OAuth resource and JWT audience), e.g. https://mcp.example.com/mcp."
        ),
    )
    oauth_issuer: str | None = Field(
        None, **_doc("OAuth/OpenID issuer whose JWT access tokens `serve --http` accepts (turns OAuth on).")
    )
    oauth_jwks_url: str | None = Field(
        None, **_doc("JWKS URL of the issuer.", "from the issuer's OpenID discovery")
    )
    oauth_audience: str | None = Field(None, **_doc("Expected JWT audience.", "KLINK_RESOURCE_URL"))
    oauth_client_id: str | None = Field(
        None, **_doc("OpenID client id the approval page signs people in with (code flow with PKCE).")
    )
    oauth_client_secret: SecretStr | None = Field(None, **_doc("Client secret of that OpenID client."))
    four_eyes_tools: tuple[str, ...] = Field(
        (), **_doc("Tools whose approvals must come from another person holding klink:approve.", "none")
    )
    log_format: Literal["text", "json"] = Field(
        "text", **_doc("text, or json: one JSON line per request and log record, with the request id.")
    )
    metrics_public: bool = Field(False, **_doc("Serve /metrics without authentication."))

    @field_validator("toolsets")
    @classmethod
    def _known_toolsets(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("is empty; leave it unset to offer every toolset")
        for name in value:
            if name not in TOOLSET_NAMES:
                raise ValueError(f"unknown toolset {name!r}{_did_you_mean(name, TOOLSET_NAMES)}")
        return value

    @field_validator("approval_statuses")
    @classmethod
    def _status_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Compared case-insensitively with the ticket's new status; a blank name would match nothing.
        names = tuple(dict.fromkeys(v.strip().lower() for v in value))
        if not names or any(not n for n in names):
            raise ValueError("give at least one status name, comma-separated (e.g. resolved,closed)")
        return names

    @field_validator("api_token", "basic_password")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is empty; leave it unset to use the embedded sandbox")
        return value

    @field_validator("api_token", "sandbox_token")
    @classmethod
    def _header_safe(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here because the HTTP stack's own error would quote the header, token and all.
        if value is not None and not all(33 <= ord(ch) < 127 for ch in value.get_secret_value()):
            raise ValueError("contains spaces or characters an HTTP header cannot carry")
        return value

    @field_validator("webhook_header_name")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
            raise ValueError("is not an HTTP header name (letters, digits and -, e.g. X-Klink-Token)")
        return value

    @field_validator("basic_user", "webhook_basic_user")
    @classmethod
    def _basic_user(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or ":" in value):
            raise ValueError("must be a non-empty user name without ':' (Basic auth sends user:password)")
        return value

    @field_validator(
        "guard_secret", "webhook_secret", "webhook_header_value", "http_auth_token", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        empty = value == "" or (isinstance(value, SecretStr) and value.get_secret_value() == "")
        return None if empty else value

    @field_validator("guard_secret", "webhook_secret", "webhook_header_value", "http_auth_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"is shorter than {MIN_SECRET_BYTES} bytes; use a random value, e.g. "
                "`openssl rand -base64 32`"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _gateway_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://apigw.klinkcx.com")
        path = parts.path.rstrip("/")
        if path.lower() in ("/api", "/api/v1"):
            # Every catalogue path already starts with /api/v1: this would request /api/api/v1/...
            raise ValueError(
                f"ends with {path!r}, but every K-LINK path already starts with /api/v1; "
                f"use {parts.scheme}://{parts.netloc}"
            )
        return value.strip()

    @field_validator("resource_url", "oauth_issuer", "oauth_jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL such as https://idp.example.com")
            return value.strip()
        return value

    @field_validator("database_url")
    @classmethod
    def _store_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            scheme = value.get_secret_value().split("://", 1)[0].lower()
            if scheme not in ("postgresql", "postgres", "sqlite", "memory"):
                raise ValueError("must start with postgresql://, sqlite:/// or memory://")
        return value

    @field_validator("sandbox_fixture")
    @classmethod
    def _fixture_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @model_validator(mode="after")
    def _one_auth_scheme(self) -> Settings:
        if self.api_token is not None and (self.basic_user is not None or self.basic_password is not None):
            raise ValueError(
                "both KLINK_API_TOKEN (Bearer) and KLINK_BASIC_USER/KLINK_BASIC_PASSWORD (Basic) are set; "
                "set only one scheme"
            )
        if (self.basic_user is None) != (self.basic_password is None):
            raise ValueError("Basic authentication needs both KLINK_BASIC_USER and KLINK_BASIC_PASSWORD")
        if self.oauth_issuer is not None and self.resource_url is None:
            raise ValueError(
                "KLINK_OAUTH_ISSUER is set but KLINK_RESOURCE_URL is not: set it to this server's public "
                "MCP URL (tokens must be issued for it)"
            )
        needs_issuer = {
            "KLINK_OAUTH_AUDIENCE": self.oauth_audience,
            "KLINK_OAUTH_JWKS_URL": self.oauth_jwks_url,
            "KLINK_OAUTH_CLIENT_ID": self.oauth_client_id,
            "KLINK_FOUR_EYES_TOOLS": self.four_eyes_tools or None,
        }
        for name, value in needs_issuer.items():
            if value is not None and self.oauth_issuer is None:
                raise ValueError(f"{name} needs KLINK_OAUTH_ISSUER (people are known only through OAuth)")
        if self.oauth_client_secret is not None and self.oauth_client_id is None:
            raise ValueError("KLINK_OAUTH_CLIENT_SECRET needs KLINK_OAUTH_CLIENT_ID")
        if self.has_credentials and not self.sandbox and not self.allow_insecure_http:
            parts = urlsplit(self.base_url)
            if parts.scheme == "http" and not _is_loopback_host(parts.hostname or ""):
                raise ValueError(
                    f"refusing to send K-LINK credentials over plain http:// to {parts.hostname}; "
                    "use https://, or set KLINK_ALLOW_INSECURE_HTTP=1 if you really mean it"
                )
        return self

    @property
    def has_credentials(self) -> bool:
        """True when a K-LINK token or Basic credentials are configured."""
        return self.api_token is not None or self.basic_user is not None

    @property
    def auth_scheme(self) -> Literal["bearer", "basic"]:
        """The scheme requests use: Basic when Basic credentials are set (and not in sandbox mode)."""
        return "basic" if self.basic_user is not None and not self.uses_sandbox else "bearer"

    @property
    def uses_sandbox(self) -> bool:
        """True when requests go to the embedded tenant (asked for, or no credentials are set)."""
        return self.sandbox or not self.has_credentials

    def redacted(self) -> dict[str, Any]:
        """A dict safe to print: secrets appear as '**********' or None."""
        return self.model_dump(mode="json")


# env var name -> settings field. The TOML key is the variable in lower case without `KLINK_`.
_ENV_KEYS: dict[str, str] = {
    # K-LINK connection and auth
    "KLINK_API_TOKEN": "api_token",
    "KLINK_BASIC_USER": "basic_user",
    "KLINK_BASIC_PASSWORD": "basic_password",
    "KLINK_BASE_URL": "base_url",
    "KLINK_ALLOW_INSECURE_HTTP": "allow_insecure_http",
    "KLINK_CONNECT_TIMEOUT": "connect_timeout_s",
    "KLINK_READ_TIMEOUT": "read_timeout_s",
    "KLINK_CALL_DEADLINE": "call_deadline_s",
    "KLINK_MAX_ATTEMPTS": "max_attempts",
    "KLINK_PAGE_CONCURRENCY": "page_concurrency",
    "KLINK_RETRY_BUDGET": "retry_budget",
    "KLINK_HTTP_HEADER_TIMEOUT": "http_header_timeout_s",
    "KLINK_HTTP_BODY_TIMEOUT": "http_body_timeout_s",
    "KLINK_HTTP_KEEPALIVE": "http_keepalive_s",
    "KLINK_HTTP_MAX_CONNECTIONS": "http_max_connections",
    "KLINK_HTTP_SHUTDOWN_GRACE": "http_shutdown_grace_s",
    # Sandbox
    "KLINK_SANDBOX": "sandbox",
    "KLINK_SANDBOX_TOKEN": "sandbox_token",
    "KLINK_SANDBOX_FIXTURE": "sandbox_fixture",
    # MCP surface
    "KLINK_READ_ONLY": "read_only",
    "KLINK_TOOLSETS": "toolsets",
    "KLINK_SCHEMA_TTL": "schema_ttl_s",
    "KLINK_LOG_LEVEL": "log_level",
    # Guard
    "KLINK_CONFIRM": "confirm",
    "KLINK_CONFIRM_TOOLS": "confirm_tools",
    "KLINK_GUARD_SECRET": "guard_secret",
    "KLINK_CONFIRMATION_TTL": "confirmation_ttl_s",
    "KLINK_ELICITATION_TIMEOUT": "elicitation_timeout_s",
    "KLINK_AUDIT_LOG": "audit_log",
    "KLINK_AUDIT_INCLUDE_BODIES": "audit_include_bodies",
    "KLINK_APPROVAL_PORT": "approval_port",
    "KLINK_APPROVAL_OPEN_BROWSER": "approval_open_browser",
    "KLINK_APPROVAL_TTL": "approval_ttl_s",
    # Webhooks
    "KLINK_WEBHOOK_SECRET": "webhook_secret",
    "KLINK_WEBHOOK_AUTH": "webhook_auth",
    "KLINK_WEBHOOK_BASIC_USER": "webhook_basic_user",
    "KLINK_WEBHOOK_BASIC_PASSWORD": "webhook_basic_password",
    "KLINK_WEBHOOK_HEADER_NAME": "webhook_header_name",
    "KLINK_WEBHOOK_HEADER_VALUE": "webhook_header_value",
    "KLINK_WEBHOOK_MAX_BODY": "webhook_max_body_bytes",
    "KLINK_EVENTS_DB": "events_db",
    "KLINK_EVENTS_RETENTION": "events_retention",
    "KLINK_DATABASE_URL": "database_url",
    # HTTP transport of the MCP server
    "KLINK_HTTP_AUTH_TOKEN": "http_auth_token",
    # Team deployment: OAuth resource server, approval sign-in, operations
    "KLINK_RESOURCE_URL": "resource_url",
    "KLINK_OAUTH_ISSUER": "oauth_issuer",
    "KLINK_OAUTH_JWKS_URL": "oauth_jwks_url",
    "KLINK_OAUTH_AUDIENCE": "oauth_audience",
    "KLINK_OAUTH_CLIENT_ID": "oauth_client_id",
    "KLINK_OAUTH_CLIENT_SECRET": "oauth_client_secret",
    "KLINK_FOUR_EYES_TOOLS": "four_eyes_tools",
    "KLINK_APPROVAL_STATUSES": "approval_statuses",
    "KLINK_CONFIRM_OVERWRITES": "confirm_overwrites",
    "KLINK_LOG_FORMAT": "log_format",
    "KLINK_METRICS_PUBLIC": "metrics_public",
}

# KLINK_* variables that are read elsewhere (not settings): never reported as unknown.
OTHER_VARIABLES: frozenset[str] = frozenset(
    {
        "KLINK_CONFIG",
        "KLINK_SANDBOX_WEBHOOK_URL",
        "KLINK_SANDBOX_BASIC_USER",
        "KLINK_SANDBOX_BASIC_PASSWORD",
        "KLINK_REQUIRE_REAL_SERVICES",
        "KLINK_UPDATE_SNAPSHOTS",
        "KLINK_TEST_DATABASE_URL",
        "KLINK_TEAM_KEEP_LOGS",
    }
)

ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(_ENV_KEYS)


def env_name(field: str) -> str:
    """The `KLINK_*` variable of a settings field.

    Raises:
        KeyError: the field has no variable.
    """
    for env_key, name in _ENV_KEYS.items():
        if name == field:
            return env_key
    raise KeyError(field)


def toml_key(field: str) -> str:
    """The TOML key of a settings field: its variable in lower case without `KLINK_`.

    Raises:
        KeyError: the field has no variable.
    """
    return env_name(field).removeprefix("KLINK_").lower()


def _toml_keys() -> dict[str, str]:
    return {env_key.removeprefix("KLINK_").lower(): field for env_key, field in _ENV_KEYS.items()}


def is_secret(field: str) -> bool:
    """True when the field holds a secret (its type is `SecretStr`)."""
    return SecretStr in _flat_args(Settings.model_fields[field].annotation)


def _flat_args(annotation: Any) -> tuple[Any, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(a for arg in typing.get_args(annotation) for a in _flat_args(arg))
    return (annotation,)


def _is_list_field(field: str) -> bool:
    return any(typing.get_origin(a) is tuple for a in _flat_args(Settings.model_fields[field].annotation))


def _literal_values(field: str) -> tuple[str, ...]:
    return tuple(
        str(v)
        for a in _flat_args(Settings.model_fields[field].annotation)
        if typing.get_origin(a) is Literal
        for v in typing.get_args(a)
    )


def _did_you_mean(value: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """ "; did you mean 'x'; valid: a, b, c" - the near miss (if any) and every valid choice."""
    valid = list(choices)
    close = difflib.get_close_matches(value, valid, n=1, cutoff=cutoff)
    hint = f", did you mean {close[0]!r}" if close else ""
    return f"{hint}; valid: {', '.join(valid)}"


def _normalise(field: str, value: Any) -> Any:
    """Lists from comma-separated strings; enumerations in any letter case (`debug` -> `DEBUG`)."""
    if _is_list_field(field):
        return _split_list(value)
    choices = _literal_values(field)
    if choices and isinstance(value, str) and value not in choices:
        folded = [c for c in choices if c.lower() == value.strip().lower()]
        if len(folded) == 1:
            return folded[0]
    return value


def _split_list(value: Any) -> Any:
    """Lists may be given as a comma-separated string, in TOML and in the environment alike."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list):
        return tuple(value)
    return value


def _operations_from_env(env: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    ops: dict[str, dict[str, str]] = {}
    bad: list[str] = []
    for key, value in env.items():
        if not key.startswith("KLINK_OP_"):
            continue
        rest = key[len("KLINK_OP_") :]
        for suffix, attr in (("_METHOD", "method"), ("_PATH", "path")):
            if rest.endswith(suffix):
                name = rest[: -len(suffix)].lower()
                ops.setdefault(name, {})[attr] = value.upper() if attr == "method" else value
                break
        else:
            bad.append(key)
    return ops, bad


def _unknown_env(env: Mapping[str, str]) -> str | None:
    """A message for a `KLINK_*` variable that is a near miss of a known one (a typo), else None."""
    known = [*_ENV_KEYS, *OTHER_VARIABLES]
    for key in env:
        if not key.startswith("KLINK_") or key in _ENV_KEYS or key in OTHER_VARIABLES:
            continue
        if key.startswith("KLINK_OP_"):
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.85)
        if close:
            return f"unknown variable {key}, did you mean {close[0]}?"
    return None


def _show_input(field: str, value: Any) -> str:
    if field not in Settings.model_fields or is_secret(field):
        return ""  # a secret's value is never quoted
    text = repr(",".join(map(str, value)) if isinstance(value, tuple) else value)
    return f"={text[:60]}{'...' if len(text) > 60 else ''}"


_TYPE_HINTS = {
    "bool_parsing": "expected true or false (also 1/0, yes/no, on/off)",
    "bool_type": "expected true or false",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "string_type": "expected a string",
    "path_type": "expected a file path",
    "tuple_type": "expected a list or a comma-separated string",
    "dict_type": "expected a table",
}


def _explain(err: Any, origin: Mapping[str, str], data: Mapping[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    field = loc[0] if loc else ""
    label = origin.get(field, field) if field else "settings"
    if len(loc) > 1 and field != "toolsets" and field != "confirm_tools":
        label = f"{label}.{'.'.join(loc[1:])}"
    shown = _show_input(field, data[field]) if field in data and len(loc) == 1 else ""
    kind = err["type"]
    if kind == "literal_error" and field in Settings.model_fields:
        valid = _literal_values(field)
        given = str(data.get(field, ""))
        return f"{label}{shown}: not a valid value{_did_you_mean(given, valid)}"
    if kind in _TYPE_HINTS:
        return f"{label}{shown}: {_TYPE_HINTS[kind]}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if not field:
        return message
    return f"{label}{shown}: {message[:1].lower()}{message[1:]}"


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from defaults, a TOML file, the environment and explicit overrides.

    Overrides use field names (`schema_ttl_s=...`); `None` means "not given".

    Raises:
        ConfigError: one line: the file cannot be read or parsed, a key or variable is unknown, or a value
            is invalid (naming the variable/key and what is valid).
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    toml_keys = _toml_keys()

    path = config_file or env.get("KLINK_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                from_file = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        name = Path(path).name
        for key, value in from_file.items():
            if key == "operations":
                data["operations"] = value
                origin["operations"] = f"[operations] in {name}"
                continue
            field = toml_keys.get(key)
            if field is None:
                raise ConfigError(
                    f"unknown key {key!r} in {name}{_did_you_mean(key, [*toml_keys, 'operations'])}"
                )
            data[field] = _normalise(field, value)
            origin[field] = f"{key} in {name}"

    unknown = _unknown_env(env)
    if unknown:
        raise ConfigError(unknown)
    for env_key, field in _ENV_KEYS.items():
        raw = env.get(env_key)
        if raw is None or not raw.strip():
            continue  # an empty variable means "not set", as in most shells' `VAR= cmd`
        data[field] = _normalise(field, raw.strip())
        origin[field] = env_key

    env_ops, bad_ops = _operations_from_env(env)
    if bad_ops:
        raise ConfigError(
            f"{bad_ops[0]}: operation overrides are KLINK_OP_<NAME>_METHOD or KLINK_OP_<NAME>_PATH"
        )
    if env_ops:
        if not isinstance(data.get("operations", {}), Mapping):
            raise ConfigError(f"{origin['operations']}: expected a table of operations")
        merged: dict[str, Any] = {
            k: dict(v) if isinstance(v, Mapping) else v for k, v in data.get("operations", {}).items()
        }
        for op_name, op in env_ops.items():
            target = merged.setdefault(op_name, {})
            if isinstance(target, dict):
                target.update(op)
        data["operations"] = merged
        origin.setdefault("operations", "KLINK_OP_*")

    for key, value in overrides.items():
        if value is None:
            continue
        if key not in Settings.model_fields:
            raise ConfigError(f"unknown setting {key!r}{_did_you_mean(key, Settings.model_fields)}")
        data[key] = _normalise(key, value)
        origin[key] = f"--{key.replace('_', '-')}"

    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise ConfigError("; ".join(_explain(err, origin, data) for err in errors)) from None


# ------------------------------------------------------------------------------ docs from the model

CONFIG_BEGIN = "<!-- config:begin (generated by `klink-mcp config --markdown`; a test checks it) -->"
CONFIG_END = "<!-- config:end -->"


def _shown_default(field: str) -> str:
    info = Settings.model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "shown_default" in extra:
        return f"{extra['shown_default']}"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, tuple | list):
        return ", ".join(f"`{v}`" for v in value) if value else "none"
    return f"`{value}`"


def settings_table() -> str:
    """The README's configuration table, generated from the settings model (Markdown).

    A field without a description shows "(undocumented)"; a test refuses that.
    """
    lines = [
        "| variable | TOML key | default | meaning |",
        "|---|---|---|---|",
        "| `KLINK_CONFIG` | - | unset | TOML config file (also `--config`). |",
    ]
    for env_key, field in _ENV_KEYS.items():
        description = Settings.model_fields[field].description or "(undocumented)"
        secret = " Secret." if is_secret(field) else ""
        lines.append(
            f"| `{env_key}` | `{toml_key(field)}` | {_shown_default(field)} | "
            f"{description.replace('|', '/')}{secret} |"
        )
    lines.append(
        "| `KLINK_OP_<NAME>_METHOD` / `KLINK_OP_<NAME>_PATH` | `[operations.<name>]` `method` / `path` | "
        "catalogue | Override an operation's method or path (see below). |"
    )
    return "\n".join(lines) + "\n"


def settings_lines(settings: Settings) -> str:
    """The effective settings as `KLINK_X = value` lines; secrets masked, never shown."""
    dumped = settings.redacted()
    out = []
    for env_key, field in _ENV_KEYS.items():
        value = dumped.get(field)
        if is_secret(field) and value is not None:
            value = "(set, hidden)"
        out.append(f"{env_key:32} = {value}")
    if settings.operations:
        for name, op in settings.operations.items():
            out.append(f"operations.{name:21} = {op.model_dump(exclude_none=True)}")
    return "\n".join(out) + "\n"
