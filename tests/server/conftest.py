"""Fixtures for driving the real MCP server in process over the sandbox tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mcp import Client

from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import MODES, make_server


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
