"""Fixtures for driving the real MCP server in process over the sandbox tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer

from klink_mcp.config import Settings, load_settings
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.server import build_server

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MODES = ["legacy", "auto"]


def make_settings(**overrides: Any) -> Settings:
    """Settings isolated from the developer's environment (no token: sandbox)."""
    overrides.setdefault("events_db", ":memory:")
    # These tests were written for the token flow; the approval page (the default) is in tests/approval.
    overrides.setdefault("confirm", "token")
    return load_settings(env={}, **overrides)


def make_server(tenant: SandboxTenant, **overrides: Any) -> MCPServer[Any]:
    settings = make_settings(**overrides)
    return build_server(settings, transport=SandboxTransport(tenant, token="sandbox-token"))


@pytest.fixture
def tenant() -> SandboxTenant:
    return SandboxTenant.seeded()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(tenant: SandboxTenant, mode: str) -> AsyncIterator[Client]:
    async with Client(make_server(tenant), mode=mode) as c:  # type: ignore[arg-type]
        yield c
