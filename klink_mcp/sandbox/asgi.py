"""`create_app`: the sandbox tenant as a Starlette ASGI app (mount it, or serve it with uvicorn).

ASGI cannot drop a connection, so the two reset faults raise `ConnectionDropped` from the app
(before anything is applied for reset_before, after applying for reset_after). Under
`httpx2.ASGITransport` that exception reaches the caller; under uvicorn it becomes a 500. Use
`serve_sandbox` (a real socket server) when a test needs real connection drops.

This module must not log bodies or the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from klink_mcp.config import DEFAULT_SANDBOX_TOKEN
from klink_mcp.sandbox.exchange import Dropped, as_secret, begin, complete, lower_headers
from klink_mcp.sandbox.tenant import SandboxTenant

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ConnectionDropped(ConnectionError):
    """A reset fault inside the ASGI app: the connection would have been dropped here."""

    def __init__(self, applied: bool) -> None:
        when = "after applying the request" if applied else "before reading the request"
        super().__init__(f"sandbox fault: connection dropped {when}")
        self.applied = applied


def create_app(tenant: SandboxTenant, token: str | SecretStr = DEFAULT_SANDBOX_TOKEN) -> Starlette:
    """An ASGI app answering every path from `tenant` (requests need `Authorization: Bearer <token>`)."""
    secret = as_secret(token)

    async def endpoint(request: Request) -> Response:
        decision = await begin(tenant, request.method)
        if decision.reset_before:
            raise ConnectionDropped(applied=False)
        body = await request.body()
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        outcome = complete(
            tenant,
            secret,
            decision,
            request.method,
            raw_path.decode("ascii", "replace"),
            request.scope.get("query_string", b""),
            lower_headers(request.scope["headers"]),
            body,
        )
        if isinstance(outcome, Dropped):
            raise ConnectionDropped(applied=True)
        headers = dict(outcome.headers)
        if outcome.slow_body_s > 0:
            delay, payload = outcome.slow_body_s, outcome.body

            async def late() -> AsyncIterator[bytes]:
                await tenant.sleep(delay)
                yield payload

            headers["content-length"] = str(len(payload))
            return StreamingResponse(late(), status_code=outcome.status, headers=headers)
        return Response(outcome.body, status_code=outcome.status, headers=headers)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])
