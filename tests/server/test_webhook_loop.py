"""The whole webhook loop on one machine, through the real commands as separate processes:

sandbox (emits signed events) -> `klink-mcp webhooks` receiver (stores) -> stdio MCP server following
the same events database -> a subscribed client is notified and `list_recent_events` returns it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.subscriptions import ResourceUpdated

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SECRET = "loop-test-webhook-secret-0123456789"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLINK_")}
    env.update({"KLINK_EVENTS_DB": str(db), "KLINK_WEBHOOK_SECRET": SECRET})
    return env


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "events.sqlite3"
    hook_port, sandbox_port = _port(), _port()
    env = _env(db)
    cmd = [sys.executable, "-m", "klink_mcp"]
    logs = [open(tmp_path / name, "wb") for name in ("receiver.log", "sandbox.log")]  # noqa: SIM115
    receiver = subprocess.Popen([*cmd, "webhooks", "--port", str(hook_port)], env=env, stderr=logs[0])
    sandbox = subprocess.Popen(
        [
            *cmd,
            "sandbox",
            "--port",
            str(sandbox_port),
            "--webhook-url",
            f"http://127.0.0.1:{hook_port}/webhooks/klink",
        ],
        env=env,
        stderr=logs[1],
    )
    try:
        yield f"http://127.0.0.1:{sandbox_port}", db
    finally:
        for proc in (sandbox, receiver):
            proc.terminate()
            proc.wait(timeout=10)
        for log in logs:
            log.close()


async def _post_until_up(url: str, body: dict[str, Any]) -> httpx2.Response:
    headers = {"Authorization": "Bearer sandbox-token"}
    async with httpx2.AsyncClient(headers=headers) as http:
        with anyio.fail_after(20):
            while True:
                try:
                    return await http.post(url, json=body)
                except httpx2.ConnectError:
                    await anyio.sleep(0.05)  # the subprocess is still starting


async def test_a_simulated_inbound_message_reaches_a_subscribed_assistant(
    processes: tuple[str, Path],
) -> None:
    sandbox_url, db = processes
    contacts = await _post_until_up(f"{sandbox_url}/_sandbox/inbound-messages", {})
    assert contacts.status_code == 400  # the sandbox answers: an empty body is refused
    async with httpx2.AsyncClient(headers={"Authorization": "Bearer sandbox-token"}) as http:
        first = (await http.get(f"{sandbox_url}/api/v1/contacts", params={"pageSize": 1})).json()["data"][0]

    params = StdioServerParameters(command=sys.executable, args=["-m", "klink_mcp"], env=_env(db))
    with anyio.fail_after(60):
        async with (
            Client(params) as client,
            client.listen(resource_subscriptions=["klink://events/recent"]) as sub,
        ):
            sent = await _post_until_up(
                f"{sandbox_url}/_sandbox/inbound-messages",
                {"contactId": first["id"], "message": "Hi, my parcel never arrived"},
            )
            assert sent.status_code == 201
            event = await sub.__anext__()
            assert isinstance(event, ResourceUpdated) and event.uri == "klink://events/recent"
            result = await client.call_tool(
                "list_recent_events", {"event_type": "message.inbound", "contact_id": first["id"]}
            )
            items = result.structured_content["items"]
            assert items and "my parcel never arrived" in str(items[0])
