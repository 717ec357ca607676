"""The embedded K-LINK sandbox tenant: the contract of `docs/klink-api.md`, in memory.

It is the tenant of the demo mode and of every test of the project. Three ways to reach it:

- `SandboxTransport(tenant)`: an httpx2 transport, in process, no socket;
- `create_app(tenant)`: a Starlette ASGI app;
- `serve_sandbox(tenant)`: an async context manager serving real HTTP on loopback, where the
  reset faults are real connection drops.

All three share the tenant's fault injection (`tenant.faults = FaultConfig(...)`) and record
every request that reached it in `tenant.requests`. The conventions the sandbox fixes where the
contract is silent, and the fixture file format, are in `klink_mcp.sandbox.tenant`'s docstring;
what the seeded data holds is in `klink_mcp.sandbox.seed`. Nothing runs at import time.
"""

from klink_mcp.config import DEFAULT_SANDBOX_TOKEN as DEFAULT_TOKEN
from klink_mcp.sandbox.asgi import ConnectionDropped, create_app
from klink_mcp.sandbox.faults import FaultConfig
from klink_mcp.sandbox.server import SandboxServer, serve_sandbox
from klink_mcp.sandbox.tenant import RecordedRequest, SandboxTenant
from klink_mcp.sandbox.transport import SandboxTransport

__all__ = [
    "DEFAULT_TOKEN",
    "ConnectionDropped",
    "FaultConfig",
    "RecordedRequest",
    "SandboxServer",
    "SandboxTenant",
    "SandboxTransport",
    "create_app",
    "serve_sandbox",
]
