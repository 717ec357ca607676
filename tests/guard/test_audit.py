"""The audit log: one JSON line per decision, private by default, never a secret."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from guard_harness import FakeClock

from klink_mcp.guard.audit import AuditLog, summarize_args
from klink_mcp.guard.canonical import args_digest


def test_a_record_is_one_json_line_appended_to_a_private_file_in_a_created_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "audit.jsonl"
    log = AuditLog(path, clock=FakeClock(1_767_225_600.25))
    args = {"contact_id": "c1", "message": "hello there"}
    log.record(
        "send_message", "confirmation_required", target_ids={"contact_id": "c1"}, args=args, channel="token"
    )
    log.record("send_message", "executed", target_ids={"contact_id": "c1"}, args=args, upstream_status=200)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["decision"] for line in lines] == ["confirmation_required", "executed"]
    assert lines[0] == {
        "time": "2026-01-01T00:00:00.250Z",
        "tool": "send_message",
        "decision": "confirmation_required",
        "channel": "token",
        "target_ids": {"contact_id": "c1"},
        "args_digest": args_digest(args),
        "args": {"contact_id": "c1", "message": {"chars": 11}},
        "upstream_status": None,
        "error": None,
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_credentials_never_appear_even_with_bodies_included(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, include_bodies=True)
    log.record(
        "create_channel",
        "executed",
        args={
            "name": "Support",
            "confirmation_token": "tok-123",
            "api_token": "kpt_live_abc",
            "settings": {"password": "hunter2", "region": "sg"},
        },
    )
    text = path.read_text(encoding="utf-8")
    for secret in ("tok-123", "kpt_live_abc", "hunter2"):
        assert secret not in text
    assert json.loads(text)["args"] == {"name": "Support", "settings": {"region": "sg"}}


def test_free_text_is_kept_only_as_a_length_unless_bodies_are_included() -> None:
    args = {"ticket_id": "t9", "status": "resolved", "description": "My card 4111 was charged", "tags": ["vip"],
            "emails": ["a@b.c", "d@e.f"], "priority": "high", "page": 2}  # fmt: skip
    assert summarize_args(args) == {
        "ticket_id": "t9",
        "status": "resolved",
        "description": {"chars": 24},
        "tags": ["vip"],
        "emails": {"items": 2},
        "priority": "high",
        "page": 2,
    }
    assert summarize_args(args, include_bodies=True)["description"] == "My card 4111 was charged"


def test_customer_text_in_an_error_is_sanitized_and_capped(tmp_path: Path) -> None:
    log = AuditLog(None)
    entry = log.record("delete_contact", "failed", error="boom\u202e" + "x" * 1000)
    assert "\u202e" not in entry["error"]
    assert len(entry["error"]) < 560


def test_recent_returns_the_newest_records_first_from_a_bounded_ring() -> None:
    log = AuditLog(None, ring_size=3)
    for i in range(5):
        log.record("delete_contact", "executed", target_ids={"contact_id": f"c{i}"})
    assert [r["target_ids"]["contact_id"] for r in log.recent(10)] == ["c4", "c3", "c2"]
    assert [r["target_ids"]["contact_id"] for r in log.recent(1)] == ["c4"]
    assert log.recent(0) == []


def test_an_unknown_decision_is_a_programming_error() -> None:
    log = AuditLog(None)
    log.record("delete_contact", "refused:expired")
    with pytest.raises(ValueError, match="unknown audit decision"):
        log.record("delete_contact", "approved")
    with pytest.raises(ValueError, match="unknown audit decision"):
        log.record("delete_contact", "refused:")


def test_a_failing_disk_is_logged_and_the_record_is_still_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "audit.jsonl"
    log = AuditLog(blocker)  # writable at start...
    blocker.unlink()
    blocker.mkdir()  # ...then a directory where the file should be: every append (and read) fails
    with caplog.at_level("ERROR", logger="klink_mcp.guard"):
        log.record("delete_contact", "executed")
    assert log.recent(1)[0]["decision"] == "executed"
    assert any("audit log write" in r.getMessage() for r in caplog.records)


def test_an_argument_without_a_json_form_still_gets_recorded(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    entry = log.record("update_ticket", "executed", args={"ticket_id": "t1", "weight": float("nan")})
    assert entry["args_digest"] is None
    assert json.loads((tmp_path / "audit.jsonl").read_text(encoding="utf-8"))["args"]["ticket_id"] == "t1"


def test_an_approval_record_says_how_and_from_where_and_is_sanitized() -> None:
    log = AuditLog(None)
    entry = log.record(
        "delete_contact",
        "approved_on_page",
        args={"contact_id": "c1"},
        channel="page",
        approval={"ref": "abc", "via": "page", "client": "127.0.0.1", "user_agent": "Chrome\u202e/1"},
    )
    assert entry["approval"] == {"ref": "abc", "via": "page", "client": "127.0.0.1", "user_agent": "Chrome/1"}
    assert "approval" not in log.record("delete_contact", "executed")
