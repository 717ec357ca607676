"""Fixtures for the sandbox tenant tests: one client per frontend (in-process transport, loopback socket)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from klink_mcp.sandbox import DEFAULT_TOKEN, SandboxTenant, SandboxTransport, serve_sandbox

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
# Loopback is plain HTTP; one shared context spares every client the cost of loading CA certificates.
PLAIN_HTTP = ssl.create_default_context()


@dataclass
class Sandbox:
    tenant: SandboxTenant
    client: httpx2.AsyncClient
    frontend: str


@pytest.fixture
def tenant() -> SandboxTenant:
    return SandboxTenant.seeded()


@pytest.fixture(params=["inprocess", "loopback"])
async def sandbox(request: pytest.FixtureRequest, tenant: SandboxTenant) -> AsyncIterator[Sandbox]:
    """The same tenant reached in process and over a real loopback socket."""
    if request.param == "inprocess":
        async with httpx2.AsyncClient(
            transport=SandboxTransport(tenant), base_url="http://sandbox.test", headers=AUTH
        ) as client:
            yield Sandbox(tenant, client, "inprocess")
    else:
        async with (
            serve_sandbox(tenant) as server,
            httpx2.AsyncClient(base_url=server.url, headers=AUTH, timeout=10, verify=PLAIN_HTTP) as client,
        ):
            yield Sandbox(tenant, client, "loopback")
