"""The reference load balancer (deploy/haproxy.cfg) for real: Debian's HAProxy before three replicas.

Skips with a loud reason when HAProxy is not installed, except under KLINK_REQUIRE_REAL_SERVICES=1
(CI), where a missing HAProxy fails the test. `.ci/install-haproxy.sh` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.auth.harness import STATIC_TOKEN, RunningServer, authed_client, running_klink
from tests.auth.idp import bind_loopback

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None
    )
    if found is None:
        reason = "HAProxy is not installed (apt-get install haproxy, or run .ci/install-haproxy.sh)"
        if os.environ.get("KLINK_REQUIRE_REAL_SERVICES") == "1":
            pytest.fail(f"KLINK_REQUIRE_REAL_SERVICES=1 but {reason}")
        pytest.skip(f"SKIPPED LOUDLY: {reason}")
    return found


def test_the_reference_configuration_is_valid() -> None:
    checked = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(CONFIG)], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@asynccontextmanager
async def haproxy_before(replicas: list[RunningServer], tmp_path: Path) -> AsyncIterator[str]:
    """The reference config with free loopback ports and quicker health checks, run in the foreground."""
    binary = haproxy_binary()
    sock, lb_url = bind_loopback()
    port = sock.getsockname()[1]
    sock.close()  # HAProxy binds it itself; the kernel will not hand this port out again at once
    text = CONFIG.read_text()
    text = text.replace("bind 127.0.0.1:8100", f"bind 127.0.0.1:{port}")
    for n, replica in enumerate(replicas, start=1):
        text = text.replace(f"127.0.0.1:810{n}", replica.url.removeprefix("http://"))
    # Same checks, faster rhythm, so a failing replica leaves within a test's patience.
    text = text.replace("inter 2s fall 3 rise 2", "inter 200ms fall 2 rise 1")
    # A stats socket lets the test read what HAProxy thinks of each replica.
    text = text.replace(
        "    maxconn 4096\n", f"    maxconn 4096\n    stats socket {tmp_path}/stats.sock mode 600\n"
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    log = (tmp_path / "haproxy.log").open("wb")
    process = await anyio.open_process([binary, "-db", "-f", str(config)], stdout=log, stderr=log)
    try:
        async with httpx2.AsyncClient() as http:
            with anyio.fail_after(15):
                while True:  # until HAProxy listens (it starts in a few milliseconds)
                    try:
                        await http.get(f"{lb_url}/healthz")
                        break
                    except httpx2.ConnectError:
                        await anyio.sleep(0.02)
        yield lb_url
    finally:
        process.terminate()
        with anyio.move_on_after(10):
            await process.wait()
        log.close()


async def server_status(tmp_path: Path, server: str) -> str:
    """The health status HAProxy gives one server (UP, DOWN, ...), from `show stat` on the stats socket."""
    async with await anyio.connect_unix(str(tmp_path / "stats.sock")) as stream:
        await stream.send(b"show stat\n")
        raw = b""
        try:
            while True:
                raw += await stream.receive()
        except anyio.EndOfStream:
            pass
    lines = raw.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("pxname") == "klink_replicas" and row.get("svname") == server:
            return row["status"]
    raise AssertionError(f"no server {server} in HAProxy's stats")


async def test_three_replicas_behind_haproxy_serve_mcp_and_a_failing_replica_is_taken_out(
    tmp_path: Path,
) -> None:
    with anyio.fail_after(90):
        async with AsyncExitStack() as stack:
            replicas = [
                await stack.enter_async_context(running_klink(None, http_auth_token=STATIC_TOKEN))
                for _ in range(3)
            ]
            lb = await stack.enter_async_context(haproxy_before(replicas, tmp_path))
            for mode in ("legacy", "auto"):  # legacy sessions stick to one replica by Mcp-Session-Id
                async with authed_client(f"{lb}/mcp", STATIC_TOKEN, mode) as client:
                    assert (await client.list_tools()).tools
                    for _ in range(3):
                        assert not (await client.call_tool("list_tags", {})).is_error
            async with httpx2.AsyncClient() as http:
                ready = await http.get(f"{lb}/readyz")
                assert ready.status_code == 200
                assert len(ready.headers["x-request-id"]) == 36  # set by HAProxy, echoed by the replica

                assert await server_status(tmp_path, "replica2") == "UP"

                replicas[1].upstream.refuse_with = 401  # K-LINK now refuses replica 2
                with anyio.fail_after(30):
                    # HAProxy's checks see /readyz turn 503 once the replica's 5 s cache expires.
                    while await server_status(tmp_path, "replica2") != "DOWN":  # noqa: ASYNC110 - polling another process
                        await anyio.sleep(0.05)
                assert await server_status(tmp_path, "replica1") == "UP"
                for _ in range(6):  # every request now lands on a ready replica
                    assert (await http.get(f"{lb}/readyz")).status_code == 200
            async with authed_client(f"{lb}/mcp", STATIC_TOKEN, "legacy") as client:
                for _ in range(3):
                    assert not (await client.call_tool("list_tags", {})).is_error
    served = [sum("/tags" in seen for seen in r.upstream.seen) for r in replicas]
    assert sum(served) >= 7 and sum(1 for s in served if s) >= 2  # the load was spread
