"""The request log: complete by default (tests count requests), bounded when a cap is set (demo mode)."""

from __future__ import annotations

import httpx2
import pytest

from klink_mcp.sandbox import SandboxTenant, SandboxTransport

pytestmark = pytest.mark.anyio


async def test_a_capped_request_log_keeps_only_the_newest_requests() -> None:
    tenant = SandboxTenant.seeded()
    tenant.max_recorded_requests = 3
    headers = {"Authorization": "Bearer sandbox-token"}
    async with httpx2.AsyncClient(
        transport=SandboxTransport(tenant), base_url="http://t", headers=headers
    ) as http:
        for page in range(1, 7):
            await http.get("/api/v1/contacts", params={"page": page})
    assert [r.query["page"] for r in tenant.requests] == ["4", "5", "6"]


async def test_the_log_is_complete_without_a_cap() -> None:
    tenant = SandboxTenant.seeded()
    headers = {"Authorization": "Bearer sandbox-token"}
    async with httpx2.AsyncClient(
        transport=SandboxTransport(tenant), base_url="http://t", headers=headers
    ) as http:
        for _ in range(20):
            await http.get("/api/v1/tags")
    assert len(tenant.requests) == 20
