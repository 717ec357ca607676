"""`klink-mcp webhooks`: safe defaults, refusals, and a real process whose events survive a restart."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from klink_mcp.webhooks.cli import main
from klink_mcp.webhooks.store import EventStore

from ._support import SECRET, body_of, event_dict, signed


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("KLINK_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("KLINK_EVENTS_DB", str(tmp_path / "events.sqlite3"))


def test_a_public_host_is_refused_without_allow_remote(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLINK_WEBHOOK_SECRET", SECRET)
    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--allow-remote" in captured.err


def test_no_authentication_is_refused_on_a_public_host_even_with_allow_remote(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLINK_WEBHOOK_AUTH", "none")
    assert main(["--host", "0.0.0.0", "--allow-remote"]) == 2
    assert "loopback-only" in capsys.readouterr().err


def test_signature_mode_without_a_secret_refuses_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0"]) == 2
    assert "KLINK_WEBHOOK_SECRET" in capsys.readouterr().err


def test_an_invalid_port_or_config_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLINK_WEBHOOK_SECRET", SECRET)
    assert main(["--port", "70000"]) == 2
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().out == ""


@asynccontextmanager
async def receiver_process(env: dict[str, str]) -> AsyncIterator[tuple[Process, str]]:
    command = [sys.executable, "-m", "klink_mcp.webhooks.cli", "--port", "0"]
    async with await anyio.open_process(command, env=env) as process:
        assert process.stderr is not None
        lines = BufferedByteReceiveStream(process.stderr)
        url = None
        with anyio.fail_after(30):
            while url is None:
                line = (await lines.receive_until(b"\n", 65536)).decode()
                match = re.search(r"listening on (http://\S+)", line)
                url = match.group(1) if match else None
        try:
            yield process, url
        finally:
            if process.returncode is None:
                process.kill()


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_the_receiver_process_stores_events_that_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite3"
    env = {**os.environ, "KLINK_WEBHOOK_SECRET": SECRET, "KLINK_EVENTS_DB": str(db)}
    first, second = body_of(event_dict(n=1)), body_of(event_dict(n=2))

    async with receiver_process(env) as (process, url), httpx2.AsyncClient() as client:
        assert url.startswith("http://127.0.0.1:")
        response = await client.post(url, content=first, headers=signed(first))
        assert response.json() == {"duplicate": False, "id": 1}
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(20):
            assert await process.wait() == 0
        assert process.stdout is not None
        with pytest.raises(anyio.EndOfStream):
            await process.stdout.receive()  # stdout stays empty: on stdio it would be the MCP protocol

    async with receiver_process(env) as (process, url), httpx2.AsyncClient() as client:
        replay = await client.post(url, content=first, headers=signed(first))
        assert replay.json() == {"duplicate": True, "id": 1}
        fresh = await client.post(url, content=second, headers=signed(second))
        assert fresh.json() == {"duplicate": False, "id": 2}
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await process.wait() == 0
        assert process.stdout is not None
        with pytest.raises(anyio.EndOfStream):
            await process.stdout.receive()

    async with EventStore(db) as store:
        assert [e.contact_id for e in await store.recent()] == ["contact-2", "contact-1"]
