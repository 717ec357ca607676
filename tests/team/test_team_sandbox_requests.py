"""The sandbox-only `GET /_sandbox/requests` endpoint the team harness counts upstream writes with."""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from klink_mcp.sandbox import SandboxTenant
from klink_mcp.sandbox.exchange import Reply, complete
from klink_mcp.sandbox.faults import NO_FAULT

TOKEN = SecretStr("team-sandbox-token")
AUTH = {"authorization": "Bearer team-sandbox-token"}


def _call(tenant: SandboxTenant, method: str, path: str, query: dict[str, str], payload: Any = None) -> Any:
    body = b"" if payload is None else json.dumps(payload).encode()
    reply = complete(
        tenant, TOKEN, NO_FAULT, method, path, "&".join(f"{k}={v}" for k, v in query.items()), AUTH, body
    )
    assert isinstance(reply, Reply)
    return reply.status, json.loads(reply.body)


def test_recorded_requests_lists_what_reached_the_tenant_and_filters_by_method() -> None:
    tenant = SandboxTenant.seeded()
    contact = next(c for c in tenant.contacts.values() if not c.get("deletedAt"))
    assert _call(tenant, "GET", f"/api/v1/contacts/{contact['id']}", {})[0] == 200
    sent = {"contactId": contact["id"], "messageType": "text", "message": "counted once"}
    assert _call(tenant, "POST", "/api/v1/messages/send", {}, sent)[0] == 200

    status, everything = _call(tenant, "GET", "/_sandbox/requests", {})
    assert status == 200
    assert [(r["method"], r["path"]) for r in everything["requests"]] == [
        ("GET", f"/api/v1/contacts/{contact['id']}"),
        ("POST", "/api/v1/messages/send"),
    ]
    assert everything["count"] == 2

    status, posts = _call(tenant, "GET", "/_sandbox/requests", {"method": "post"})
    assert status == 200 and posts["count"] == 1
    assert posts["requests"][0]["json"]["message"] == "counted once"
    assert "headers" not in posts["requests"][0]  # nothing of the caller's headers comes back


def test_recorded_requests_needs_the_token() -> None:
    reply = complete(SandboxTenant.seeded(), TOKEN, NO_FAULT, "GET", "/_sandbox/requests", "", {}, b"")
    assert isinstance(reply, Reply) and reply.status == 401
