"""The audit resource reads the audit file's tail: records from before a restart (or from another
replica sharing the file) stay in view; an unusable audit path is refused at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from klink_mcp.config import load_settings
from klink_mcp.guard.audit import AuditLog
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.server import build_server

pytestmark = pytest.mark.anyio


def _write(path: Path, count: int) -> None:
    log = AuditLog(path)
    for n in range(count):
        log.record("delete_contact", "confirmation_required", target_ids={"contact_id": f"c{n}"})


def test_a_new_audit_log_on_the_same_file_shows_the_earlier_records_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 5)
    restarted = AuditLog(path)
    ids = [r["target_ids"]["contact_id"] for r in restarted.recent(10)]
    assert ids == ["c4", "c3", "c2", "c1", "c0"]
    restarted.record("send_message", "declined")
    assert [r["tool"] for r in restarted.recent(2)] == ["send_message", "delete_contact"]


def test_the_tail_is_bounded_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 300)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"tool": "half-writ')  # a writer died mid-line
    log = AuditLog(path, ring_size=50)
    recent = log.recent(100)
    assert len(recent) == 50  # never more than the ring size
    assert (
        recent[0]["target_ids"]["contact_id"] == "c299" and recent[-1]["target_ids"]["contact_id"] == "c250"
    )


def test_another_process_writing_the_same_file_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    reader = AuditLog(path)
    _write(path, 2)  # a second AuditLog (another replica) appends
    assert len(reader.recent(10)) == 2


def test_an_audit_path_that_cannot_be_opened_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        AuditLog(tmp_path)  # a directory
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(OSError):
        AuditLog(blocker / "audit.jsonl")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_audit_resource_shows_records_written_before_the_server_started(
    tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 3)
    settings = load_settings(env={}, events_db=":memory:", audit_log=path)
    server = build_server(settings, transport=SandboxTransport(SandboxTenant.seeded(), token="sandbox-token"))
    async with Client(server, mode=mode) as client:  # type: ignore[arg-type]
        body = await client.read_resource("klink://audit/recent")
    records = json.loads(body.contents[0].text)  # type: ignore[union-attr]
    assert [r["target_ids"]["contact_id"] for r in records] == ["c2", "c1", "c0"]
