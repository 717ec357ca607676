"""`SandboxTransport`: an httpx2 transport that answers from a `SandboxTenant` in process (no socket).

Faults become what a real client would see:
- reset_before -> `httpx2.ConnectError` (nothing recorded, nothing applied);
- reset_after  -> the request is applied, then `httpx2.RemoteProtocolError("Server disconnected
  without sending a response.")`;
- latency      -> a wait (through `tenant.sleep`) before the request is handled;
- slow body    -> the headers come at once, the body after `slow_body_s`; when the client's read
  timeout is shorter, the body read raises `httpx2.ReadTimeout` after that timeout instead.

This module must not open sockets or log request bodies or the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
from pydantic import SecretStr

from klink_mcp.config import DEFAULT_SANDBOX_TOKEN
from klink_mcp.sandbox.exchange import Dropped, as_secret, begin, complete, lower_headers
from klink_mcp.sandbox.tenant import SandboxTenant


class _LateBody(httpx2.AsyncByteStream):
    """A body that arrives late, or never within the client's read timeout."""

    def __init__(
        self,
        body: bytes,
        delay_s: float,
        read_timeout_s: float | None,
        sleep: Callable[[float], Awaitable[None]],
        request: httpx2.Request,
    ) -> None:
        self._body = body
        self._delay_s = delay_s
        self._timeout_s = read_timeout_s
        self._sleep = sleep
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._timeout_s is not None and self._timeout_s < self._delay_s:
            await self._sleep(self._timeout_s)
            raise httpx2.ReadTimeout("The read operation timed out", request=self._request)
        await self._sleep(self._delay_s)
        yield self._body


class SandboxTransport(httpx2.AsyncBaseTransport):
    """Send httpx2 requests straight to a sandbox tenant: `httpx2.AsyncClient(transport=...)`."""

    def __init__(self, tenant: SandboxTenant, token: str | SecretStr = DEFAULT_SANDBOX_TOKEN) -> None:
        self.tenant = tenant
        self._token = as_secret(token)

    def __repr__(self) -> str:
        return f"SandboxTransport(tenant_seed={self.tenant.seed})"

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Raises:
        httpx2.ConnectError: a reset_before fault.
        httpx2.RemoteProtocolError: a reset_after fault (the request was applied).
        """
        tenant = self.tenant
        decision = await begin(tenant, request.method)
        if decision.reset_before:
            raise httpx2.ConnectError("[Errno 104] Connection reset by peer (sandbox fault)", request=request)
        body = await request.aread()
        raw_path = request.url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
        outcome = complete(
            tenant,
            self._token,
            decision,
            request.method,
            raw_path,
            request.url.query,
            lower_headers(request.headers.raw),
            body,
        )
        if isinstance(outcome, Dropped):
            raise httpx2.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        headers = [*outcome.headers, ("content-length", str(len(outcome.body)))]
        if outcome.slow_body_s > 0:
            timeout = request.extensions.get("timeout", {}).get("read")
            stream = _LateBody(outcome.body, outcome.slow_body_s, timeout, tenant.sleep, request)
            return httpx2.Response(outcome.status, headers=headers, stream=stream, request=request)
        return httpx2.Response(outcome.status, headers=headers, content=outcome.body, request=request)
