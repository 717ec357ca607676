"""One `Settings` object for the whole process, read from the environment and an optional TOML file.

Precedence (highest first): explicit keyword overrides (CLI flags, tests) > environment variables
> the TOML file (`KLINK_CONFIG` or `--config`) > defaults.

Secrets (the API token, the guard and webhook signing secrets) are held as `SecretStr` so that a
`repr`, a log line or an error message never shows them. This module must not import `mcp`.

TOML layout (every key optional; the same names as the environment variables, lower-case and
without the `KLINK_` prefix)::

    api_token = "kpt_..."
    base_url = "https://apigw.klinkcx.com"
    read_only = true
    toolsets = ["contacts", "tickets"]

    [operations.create_contact]      # override an [inferred] operation of the catalogue
    method = "POST"
    path = "/api/v1/customers"

Environment overrides for operations: `KLINK_OP_<NAME>_METHOD` and `KLINK_OP_<NAME>_PATH`
(e.g. `KLINK_OP_CREATE_CONTACT_PATH=/api/v1/customers`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

DEFAULT_BASE_URL = "https://apigw.klinkcx.com"
DEFAULT_SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - a public, documented demo credential

ConfirmMode = Literal["on", "off", "elicit"]


class ConfigError(ValueError):
    """The configuration cannot be used (bad TOML, a wrong type, an unknown operation)."""


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


class Settings(BaseModel):
    """Everything the process can be configured with. Build it with `load_settings()`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # K-LINK connection
    api_token: SecretStr | None = None
    base_url: str = DEFAULT_BASE_URL
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=20.0, gt=0)
    call_deadline_s: float = Field(default=45.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=10)
    page_concurrency: int = Field(default=4, ge=1, le=16)
    operations: dict[str, OperationOverride] = Field(default_factory=dict)

    # Sandbox (embedded tenant)
    sandbox: bool = False
    sandbox_token: SecretStr = SecretStr(DEFAULT_SANDBOX_TOKEN)
    sandbox_fixture: Path | None = None

    # MCP surface
    read_only: bool = False
    toolsets: tuple[str, ...] | None = None
    schema_ttl_s: float = Field(default=600.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # Guard
    confirm: ConfirmMode = "on"
    confirm_tools: tuple[str, ...] = ()
    guard_secret: SecretStr | None = None
    confirmation_ttl_s: float = Field(default=120.0, gt=0, le=300)
    elicitation_timeout_s: float = Field(default=300.0, gt=0)
    audit_log: Path | None = None
    audit_include_bodies: bool = False

    # Webhooks
    webhook_secret: SecretStr | None = None
    webhook_auth: Literal["signature", "basic", "header", "none"] = "signature"
    webhook_basic_user: str | None = None
    webhook_basic_password: SecretStr | None = None
    webhook_header_name: str | None = None
    webhook_header_value: SecretStr | None = None
    webhook_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    events_db: Path | None = None
    events_retention: int = Field(default=10_000, ge=10)

    # HTTP transport of the MCP server
    http_auth_token: SecretStr | None = None

    # Retries and HTTP serving limits (ci-retries): see api/_http.py (RetryBudget) and http_server.py
    # client-wide retry tokens: a retry costs 5 (10 after a timeout); 0 turns retries off
    retry_budget: float = Field(default=100.0, ge=0, le=10_000)
    # serve --http and the webhook receiver: a request head must arrive within this (else 408, closed)
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # ... and its whole body within this after the head
    http_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # an idle keep-alive connection is closed after this
    http_keepalive_s: float = Field(default=5.0, gt=0, le=300)
    # open connections at most (one more is closed at once); also requests in flight (503 beyond)
    http_max_connections: int = Field(default=256, ge=1, le=100_000)
    # on SIGTERM, calls in flight get this long to finish before they are cancelled
    http_shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600)

    @property
    def uses_sandbox(self) -> bool:
        """True when requests go to the embedded tenant (asked for, or no API token is set)."""
        return self.sandbox or self.api_token is None

    def redacted(self) -> dict[str, Any]:
        """A dict safe to print: secrets appear as '**********' or None."""
        return self.model_dump(mode="json")


# env var name -> settings field
_ENV_KEYS: dict[str, str] = {
    "KLINK_API_TOKEN": "api_token",
    "KLINK_BASE_URL": "base_url",
    "KLINK_CONNECT_TIMEOUT": "connect_timeout_s",
    "KLINK_READ_TIMEOUT": "read_timeout_s",
    "KLINK_CALL_DEADLINE": "call_deadline_s",
    "KLINK_MAX_ATTEMPTS": "max_attempts",
    # Retries and HTTP serving limits (ci-retries)
    "KLINK_RETRY_BUDGET": "retry_budget",
    "KLINK_HTTP_HEADER_TIMEOUT": "http_header_timeout_s",
    "KLINK_HTTP_BODY_TIMEOUT": "http_body_timeout_s",
    "KLINK_HTTP_KEEPALIVE": "http_keepalive_s",
    "KLINK_HTTP_MAX_CONNECTIONS": "http_max_connections",
    "KLINK_HTTP_SHUTDOWN_GRACE": "http_shutdown_grace_s",
    "KLINK_SANDBOX": "sandbox",
    "KLINK_SANDBOX_TOKEN": "sandbox_token",
    "KLINK_SANDBOX_FIXTURE": "sandbox_fixture",
    "KLINK_READ_ONLY": "read_only",
    "KLINK_TOOLSETS": "toolsets",
    "KLINK_SCHEMA_TTL": "schema_ttl_s",
    "KLINK_LOG_LEVEL": "log_level",
    "KLINK_CONFIRM": "confirm",
    "KLINK_CONFIRM_TOOLS": "confirm_tools",
    "KLINK_GUARD_SECRET": "guard_secret",
    "KLINK_CONFIRMATION_TTL": "confirmation_ttl_s",
    "KLINK_ELICITATION_TIMEOUT": "elicitation_timeout_s",
    "KLINK_AUDIT_LOG": "audit_log",
    "KLINK_AUDIT_INCLUDE_BODIES": "audit_include_bodies",
    "KLINK_WEBHOOK_SECRET": "webhook_secret",
    "KLINK_WEBHOOK_AUTH": "webhook_auth",
    "KLINK_WEBHOOK_BASIC_USER": "webhook_basic_user",
    "KLINK_WEBHOOK_BASIC_PASSWORD": "webhook_basic_password",
    "KLINK_WEBHOOK_HEADER_NAME": "webhook_header_name",
    "KLINK_WEBHOOK_HEADER_VALUE": "webhook_header_value",
    "KLINK_WEBHOOK_MAX_BODY": "webhook_max_body_bytes",
    "KLINK_EVENTS_DB": "events_db",
    "KLINK_EVENTS_RETENTION": "events_retention",
    "KLINK_HTTP_AUTH_TOKEN": "http_auth_token",
}
_LIST_FIELDS = {"toolsets", "confirm_tools"}
_BOOL_FIELDS = {"sandbox", "read_only", "audit_include_bodies"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(_ENV_KEYS)


def _env_value(field: str, raw: str) -> Any:
    if field in _LIST_FIELDS:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if field in _BOOL_FIELDS:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{field}: expected a boolean (true/false), got {raw!r}")
    return raw


def _operations_from_env(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    ops: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if not key.startswith("KLINK_OP_"):
            continue
        rest = key[len("KLINK_OP_") :]
        for suffix, attr in (("_METHOD", "method"), ("_PATH", "path")):
            if rest.endswith(suffix):
                name = rest[: -len(suffix)].lower()
                ops.setdefault(name, {})[attr] = value.upper() if attr == "method" else value
    return ops


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from defaults, a TOML file, the environment and explicit overrides.

    Raises:
        ConfigError: the file cannot be read or parsed, or a value has the wrong type.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}

    path = config_file or env.get("KLINK_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data.update(tomllib.load(fh))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc

    for env_key, field in _ENV_KEYS.items():
        if env_key in env:
            data[field] = _env_value(field, env[env_key])

    env_ops = _operations_from_env(env)
    if env_ops:
        merged: dict[str, Any] = {k: dict(v) for k, v in data.get("operations", {}).items()}
        for name, op in env_ops.items():
            merged.setdefault(name, {}).update(op)
        data["operations"] = merged

    data.update({k: v for k, v in overrides.items() if v is not None})
    if data.get("api_token") == "":
        data["api_token"] = None
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
