"""The command line: every misconfiguration is one line on stderr and exit code 2, never a traceback,
found before anything claims to be serving. A representative set runs the real console entry point as
a subprocess; the rest runs `main([...])` in process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from klink_mcp.cli import main
from klink_mcp.config import _ENV_KEYS, MIN_SECRET_BYTES, settings_table

SUBPROCESS_TIMEOUT_S = 60


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The process environment without any KLINK_* setting, with a private data dir."""
    for key in list(os.environ):
        if key.startswith("KLINK_") and key != "KLINK_REQUIRE_REAL_SERVICES":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return {k: v for k, v in os.environ.items()}


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _unwritable(tmp_path: Path) -> Path:
    """A path no user (root included) can create a file at: its parent is a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    return blocker / "inside.db"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klink_mcp", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _assert_one_line(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        (
            {"KLINK_TOOLSETS": "ticket"},
            ["unknown toolset 'ticket'", "did you mean 'tickets'", "valid: contacts"],
        ),
        ({"KLINK_SANDBOX_FIXTURE": "/nope.json"}, ["KLINK_SANDBOX_FIXTURE", "no such file"]),
        ({"KLINK_AUDIT_LOG": "UNWRITABLE"}, ["KLINK_AUDIT_LOG", "cannot be written"]),
        ({"KLINK_EVENTS_DB": "UNWRITABLE"}, ["KLINK_EVENTS_DB", "cannot be opened"]),
        ({"KLINK_SCHEMA_TTL": "ten"}, ["KLINK_SCHEMA_TTL='ten'", "expected a number"]),
        ({"KLINK_HTTP_AUTH_TOKEN": "x"}, ["KLINK_HTTP_AUTH_TOKEN", "32 bytes"]),
    ],
    ids=[
        "typo-toolset",
        "missing-fixture",
        "unwritable-audit",
        "unwritable-events",
        "bad-number",
        "short-secret",
    ],
)
def test_a_misconfigured_process_says_one_line_and_exits_2(
    case: dict[str, str], needles: list[str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **clean_env,
        **{k: str(_unwritable(tmp_path)) if v == "UNWRITABLE" else v for k, v in case.items()},
    }
    done = _run(["serve"], env)
    _assert_one_line(done.returncode, done.stderr, *needles)
    assert done.stdout == ""  # stdout is the protocol: nothing was served


def test_serve_port_without_http_is_an_error(clean_env: dict[str, str]) -> None:
    done = _run(["serve", "--port", "18002"], clean_env)
    _assert_one_line(done.returncode, done.stderr, "--port applies to HTTP only", "--http")


def test_a_taken_port_is_reported_before_anything_claims_to_serve(
    clean_env: dict[str, str], taken_port: int
) -> None:
    env = {**clean_env, "KLINK_EVENTS_DB": ":memory:"}
    done = _run(["serve", "--http", "--port", str(taken_port)], env)
    _assert_one_line(done.returncode, done.stderr, f"127.0.0.1:{taken_port}", "already in use")
    assert "serving" not in done.stderr


def test_the_documented_toml_keys_work_from_a_file(clean_env: dict[str, str], tmp_path: Path) -> None:
    toml = tmp_path / "klink.toml"
    toml.write_text(
        'schema_ttl = 30\nconfirmation_ttl = 60\nconnect_timeout = 2\nread_timeout = 9\ncall_deadline = 20\ntoolsets = "tickets"\n',
        encoding="utf-8",
    )
    done = _run(["config", "--config", str(toml)], clean_env)
    assert done.returncode == 0, done.stderr
    assert "KLINK_TOOLSETS                   = ['tickets']" in done.stdout
    assert "KLINK_CONFIRMATION_TTL           = 60.0" in done.stdout


def test_config_markdown_prints_the_generated_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--markdown"]) == 0
    assert capsys.readouterr().out == settings_table()


# ------------------------------------------------------------------------------------------- in process


def _in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"KLINK_TOOLSETS": "ticket"}, ["did you mean 'tickets'"]),
        ({"KLINK_READ_ONLY": "maybe"}, ["KLINK_READ_ONLY='maybe'", "true or false"]),
        ({"KLINK_CONFIRM": "always"}, ["KLINK_CONFIRM='always'", "valid: on, off, elicit"]),
        ({"KLINK_LOG_LEVEL": "LOUD"}, ["KLINK_LOG_LEVEL", "valid: DEBUG, INFO, WARNING, ERROR"]),
        ({"KLINK_MAX_ATTEMPTS": "0"}, ["KLINK_MAX_ATTEMPTS='0'", "greater than or equal to 1"]),
        ({"KLINK_CONFIRMATION_TTL": "900"}, ["KLINK_CONFIRMATION_TTL", "less than or equal to 300"]),
        ({"KLINK_WEBHOOK_SECRET": "short"}, ["KLINK_WEBHOOK_SECRET", "32 bytes"]),
        ({"KLINK_GUARD_SECRET": "short"}, ["KLINK_GUARD_SECRET", "32 bytes"]),
        ({"KLINK_API_TOKEN": "t", "KLINK_BASIC_USER": "u", "KLINK_BASIC_PASSWORD": "p"}, ["only one scheme"]),
        ({"KLINK_API_TOKEN": "t", "KLINK_BASE_URL": "http://gw.example.com"}, ["KLINK_ALLOW_INSECURE_HTTP"]),
        ({"KLINK_BASE_URL": "https://apigw.klinkcx.com/api"}, ["use https://apigw.klinkcx.com"]),
        ({"KLINK_TOOLSET": "tickets"}, ["did you mean KLINK_TOOLSETS"]),
        ({"KLINK_CONFIRM_TOOLS": "no_such_tool"}, ["no_such_tool"]),
        ({"KLINK_OP_NO_SUCH_OP_PATH": "/api/v1/x"}, ["operations.no_such_op", "unknown operation"]),
        ({"KLINK_OP_GET_CONTACT_PATH": "/api/v1/people"}, ["get_contact"]),
    ],
)
@pytest.mark.parametrize("command", [["serve"], ["tools"], ["demo"]])
def test_bad_settings_stop_every_command_with_one_line(
    env: dict[str, str],
    needles: list[str],
    command: list[str],
    clean_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KLINK_EVENTS_DB", ":memory:")
    rc, err = _in_process(command, capsys)
    _assert_one_line(rc, err, *needles)


def test_a_fixture_that_is_not_json_is_one_line(
    clean_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    fixture = tmp_path / "tenant.json"
    fixture.write_text("{not json", encoding="utf-8")
    monkeypatch.setenv("KLINK_SANDBOX_FIXTURE", str(fixture))
    rc, err = _in_process(["tools"], capsys)
    _assert_one_line(rc, err, "KLINK_SANDBOX_FIXTURE", "not a usable fixture")


@pytest.mark.parametrize("name", ["KLINK_AUDIT_LOG", "KLINK_EVENTS_DB"])
def test_a_store_that_cannot_be_opened_stops_the_start(
    name: str,
    clean_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    monkeypatch.setenv(name, str(folder))  # a directory where the file should be
    rc, err = _in_process(["tools"], capsys)
    _assert_one_line(rc, err, name, str(folder))


def test_a_taken_webhooks_port_is_reported_first(
    clean_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    taken_port: int,
) -> None:
    monkeypatch.setenv("KLINK_WEBHOOK_SECRET", "w" * MIN_SECRET_BYTES)
    monkeypatch.setenv("KLINK_EVENTS_DB", ":memory:")
    rc, err = _in_process(["serve", "--webhooks-port", str(taken_port)], capsys)
    _assert_one_line(rc, err, "--webhooks-port", "already in use")


@pytest.mark.parametrize(
    "argv", [["serve", "--host", "0.0.0.0"], ["--log-level", "LOUD"], ["serve", "--port", "x"]]
)
def test_usage_errors_are_one_line_too(
    argv: list[str], clean_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, err = _in_process(argv, capsys)
    _assert_one_line(rc, err)


def test_every_variable_reaches_the_effective_settings(
    clean_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for env_key in _ENV_KEYS:
        assert f"{env_key} " in out
    assert "sandbox-token" not in out  # even the public demo token is shown as hidden
