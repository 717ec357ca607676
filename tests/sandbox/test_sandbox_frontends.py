"""The loopback server as an HTTP/1.1 server, the ASGI app, and the `klink-mcp sandbox` command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from klink_mcp.sandbox import (
    ConnectionDropped,
    FaultConfig,
    SandboxTenant,
    create_app,
    serve_sandbox,
)
from klink_mcp.sandbox.cli import main as sandbox_main

from .conftest import AUTH, FIXTURES, PLAIN_HTTP

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    received = b""
    with anyio.fail_after(5):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(data)
            try:
                while True:
                    received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return received


# ----------------------------------------------------------------------------------- loopback server


async def test_one_keep_alive_connection_serves_many_requests() -> None:
    async with (
        serve_sandbox(SandboxTenant.seeded()) as server,
        httpx2.AsyncClient(base_url=server.url, headers=AUTH, verify=PLAIN_HTTP) as client,
    ):
        with anyio.fail_after(10):
            for _ in range(20):
                assert (await client.get("/api/v1/tags")).status_code == 200
        assert server.connections_accepted == 1


async def test_concurrent_clients_are_served_side_by_side() -> None:
    tenant = SandboxTenant.seeded()
    statuses: list[int] = []
    async with serve_sandbox(tenant) as server:

        async def worker(n: int) -> None:
            async with httpx2.AsyncClient(base_url=server.url, headers=AUTH, verify=PLAIN_HTTP) as client:
                for _ in range(5):
                    statuses.append(
                        (
                            await client.post(
                                "/api/v1/channels", json={"name": f"c{n}-{_}", "type": "custom"}
                            )
                        ).status_code
                    )

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                for n in range(8):
                    tg.start_soon(worker, n)
    assert statuses == [201] * 40 and server.connections_accepted == 8


async def test_a_slow_request_does_not_hold_up_other_connections() -> None:
    tenant = SandboxTenant.seeded()
    release = anyio.Event()

    async def gated_sleep(seconds: float) -> None:
        await release.wait()

    tenant.sleep = gated_sleep
    async with (
        serve_sandbox(tenant) as server,
        httpx2.AsyncClient(base_url=server.url, headers=AUTH, verify=PLAIN_HTTP) as slow,
        httpx2.AsyncClient(base_url=server.url, headers=AUTH, verify=PLAIN_HTTP) as fast,
    ):
        tenant.faults = FaultConfig(latency_s=1.0, only_methods=frozenset({"POST"}))
        results: dict[str, int] = {}

        async def slow_call() -> None:
            results["slow"] = (
                await slow.post("/api/v1/channels", json={"name": "S", "type": "custom"})
            ).status_code

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow_call)
                results["fast"] = (await fast.get("/api/v1/tags")).status_code
                assert "slow" not in results
                release.set()
    assert results == {"fast": 200, "slow": 201}


async def test_a_chunked_request_body_is_read_whole() -> None:
    tenant = SandboxTenant.seeded()

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "Chunk'
        yield b'ed", "type": "custom"}'

    async with (
        serve_sandbox(tenant) as server,
        httpx2.AsyncClient(base_url=server.url, headers=AUTH, verify=PLAIN_HTTP) as client,
    ):
        r = await client.post(
            "/api/v1/channels", content=chunks(), headers={"content-type": "application/json"}
        )
    assert r.status_code == 201 and r.json()["data"]["name"] == "Chunked"


async def test_garbage_on_the_socket_gets_a_400_and_a_close() -> None:
    async with serve_sandbox(SandboxTenant.seeded()) as server:
        answer = await raw_exchange(server.port, b"THIS IS NOT HTTP\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")


async def test_an_oversized_body_gets_413() -> None:
    async with serve_sandbox(SandboxTenant.seeded()) as server:
        size = 2 * 1024 * 1024
        head = (
            f"POST /api/v1/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sandbox-token\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        ).encode()
        answer = await raw_exchange(server.port, head)  # refused on the declared length, before any body
    assert answer.startswith(b"HTTP/1.1 413")


async def test_a_connection_close_request_is_answered_then_closed() -> None:
    async with serve_sandbox(SandboxTenant.seeded()) as server:
        answer = await raw_exchange(
            server.port,
            b"GET /api/v1/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sandbox-token\r\nConnection: close\r\n\r\n",
        )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b'"data"' in body


async def test_the_server_refuses_a_non_loopback_host_unless_allowed() -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        async with serve_sandbox(SandboxTenant.seeded(), host="0.0.0.0"):
            pass  # pragma: no cover


async def test_a_custom_token_is_required_by_the_server() -> None:
    async with (
        serve_sandbox(SandboxTenant.seeded(), token="kpt_custom") as server,
        httpx2.AsyncClient(base_url=server.url, verify=PLAIN_HTTP) as client,
    ):
        assert (await client.get("/api/v1/tags", headers=AUTH)).status_code == 401
        ok = await client.get("/api/v1/tags", headers={"Authorization": "Bearer kpt_custom"})
        assert ok.status_code == 200


# ------------------------------------------------------------------------------------------ ASGI app


async def test_the_asgi_app_answers_like_the_other_frontends() -> None:
    tenant = SandboxTenant.seeded()
    transport = httpx2.ASGITransport(app=create_app(tenant))
    async with httpx2.AsyncClient(transport=transport, base_url="http://asgi", headers=AUTH) as client:
        assert (await client.get("/api/v1/tags")).json().keys() == {"data"}
        assert (await client.get("/api/v1/tags", headers={"Authorization": "Bearer x"})).status_code == 401
        created = await client.post(
            "/api/v1/tickets", json={"title": "T", "contact_id": next(iter(tenant.contacts))}
        )
        assert created.status_code == 201
        tenant.faults = FaultConfig(reset_after_rate=1.0)
        with pytest.raises(ConnectionDropped) as dropped:
            await client.post("/api/v1/channels", json={"name": "Dropped", "type": "custom"})
        assert dropped.value.applied and any(c["name"] == "Dropped" for c in tenant.channels.values())
        tenant.faults = FaultConfig(reset_before_rate=1.0)
        with pytest.raises(ConnectionDropped) as early:
            await client.post("/api/v1/channels", json={"name": "Never", "type": "custom"})
        assert not early.value.applied and not any(c["name"] == "Never" for c in tenant.channels.values())


async def test_the_asgi_app_sends_a_slow_body_late() -> None:
    tenant = SandboxTenant.seeded()
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    tenant.sleep = fake_sleep
    tenant.faults = FaultConfig(slow_body_s=2.0)
    transport = httpx2.ASGITransport(app=create_app(tenant))
    async with httpx2.AsyncClient(transport=transport, base_url="http://asgi", headers=AUTH) as client:
        r = await client.get("/api/v1/tags")
    assert r.status_code == 200 and len(r.json()["data"]) == 20 and waits == [2.0]


# ---------------------------------------------------------------------------------------------- CLI


def test_the_cli_refuses_a_non_loopback_host_without_allow_remote(capsys: pytest.CaptureFixture[str]) -> None:
    assert sandbox_main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert capsys.readouterr().out == ""


def test_the_cli_refuses_a_broken_fixture_or_impossible_faults(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert sandbox_main(["--fixture", str(bad), "--port", "0"]) == 2
    assert sandbox_main(["--error-rate", "3", "--port", "0"]) == 2
    assert sandbox_main(["--no-such-flag"]) == 2


@pytest.mark.slow
def test_the_cli_serves_until_interrupted_and_never_writes_stdout() -> None:
    env = {
        **os.environ,
        "KLINK_SANDBOX_TOKEN": "kpt_cli",
        "KLINK_SANDBOX_FIXTURE": str(FIXTURES / "tenant_acme.json"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "klink_mcp.sandbox", "--port", "0", "--latency", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        assert "kpt_cli" not in line
        with httpx2.Client(base_url=match.group(1), verify=PLAIN_HTTP) as client:
            r = client.get("/api/v1/contacts", headers={"Authorization": "Bearer kpt_cli"})
        assert r.status_code == 200 and r.json()["total"] == 6  # the fixture tenant
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and out == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
