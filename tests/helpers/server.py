"""Building the real MCP server over a sandbox tenant, and reading tool results, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp.server import MCPServer

from klink_mcp.config import Settings, load_settings
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.server import build_server

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MODES = ["legacy", "auto"]


def make_settings(**overrides: Any) -> Settings:
    """Settings isolated from the developer's environment (no token: sandbox)."""
    overrides.setdefault("events_db", ":memory:")
    return load_settings(env={}, **overrides)


def make_server(tenant: SandboxTenant, **overrides: Any) -> MCPServer[Any]:
    settings = make_settings(**overrides)
    return build_server(settings, transport=SandboxTransport(tenant, token="sandbox-token"))


def sc(result: Any) -> dict[str, Any]:
    """The structured content of a successful tool result."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_code(result: Any) -> str:
    """The machine-readable code of a tool error."""
    assert result.is_error
    return str((result.meta or {}).get("klink_mcp/error", {}).get("code"))


def a_contact(tenant: SandboxTenant) -> dict[str, Any]:
    """A live (not deleted) contact of the tenant."""
    return next(c for c in tenant.contacts.values() if not c.get("deletedAt"))
