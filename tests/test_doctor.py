"""`klink-mcp doctor` against the sandbox over loopback HTTP (Bearer and Basic), a wrong password, an
unreachable port, a host that never answers, and a tenant missing a path: one line per problem."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from klink_mcp.api.catalog import Catalog
from klink_mcp.cli import main
from klink_mcp.config import load_settings
from klink_mcp.doctor import REACH_TIMEOUT_S, run_doctor
from klink_mcp.sandbox import SandboxTenant
from klink_mcp.sandbox.server import SandboxServer, serve_sandbox

pytestmark = pytest.mark.anyio

TOKEN = "doctor-bearer-canary-5521"
USER = "agent-smith"
PASSWORD = "doctor-basic-canary-7734"
READS = [op.name for op in Catalog() if op.method == "GET"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("KLINK_") and key != "KLINK_REQUIRE_REAL_SERVICES":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    tenant = SandboxTenant.seeded()
    tenant.basic_auth = (USER, SecretStr(PASSWORD))
    async with serve_sandbox(tenant, token=TOKEN) as server:
        yield server


def _settings(**overrides: Any) -> Any:
    return load_settings(env={}, events_db=":memory:", **overrides)


def _fails(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


def _assert_every_read_answered(out: str) -> None:
    for name in READS:
        assert any(line.startswith(f"ok    {name} ") for line in out.splitlines()), (
            f"{name} not probed:\n{out}"
        )
    assert not _fails(out)


async def test_bearer_against_the_loopback_sandbox_probes_every_read_operation(
    sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_doctor(_settings(api_token=TOKEN, base_url=sandbox.url)) == 0
    out = capsys.readouterr().out
    _assert_every_read_answered(out)
    assert "auth           : Bearer (KLINK_API_TOKEN)" in out
    assert "find_contacts_by_social_platform_id" in out and TOKEN not in out


async def test_basic_against_the_loopback_sandbox_works_and_says_so(
    sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_doctor(_settings(basic_user=USER, basic_password=PASSWORD, base_url=sandbox.url)) == 0
    out = capsys.readouterr().out
    _assert_every_read_answered(out)
    assert f"auth           : Basic (KLINK_BASIC_USER='{USER}' + KLINK_BASIC_PASSWORD)" in out
    assert PASSWORD not in out


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
async def test_refused_credentials_are_one_401_line_with_what_to_do(
    scheme: str, sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "wrong-secret-canary-0042"
    creds = {"basic_user": USER, "basic_password": wrong} if scheme == "basic" else {"api_token": wrong}
    assert await run_doctor(_settings(base_url=sandbox.url, **creds)) == 1
    out = capsys.readouterr().out
    fails = _fails(out)
    assert len(fails) == 1 and "HTTP 401" in fails[0]
    assert ("KLINK_BASIC_PASSWORD" if scheme == "basic" else "KLINK_API_TOKEN") in fails[0]
    assert wrong not in out


async def test_the_summary_shows_toolsets_confirmation_mode_and_approval_channel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run_doctor(_settings(toolsets="tickets,contacts", confirm="elicit", read_only=True)) == 0
    out = capsys.readouterr().out
    assert "toolsets       : tickets, contacts" in out
    assert "read-only      : yes" in out
    assert "KLINK_CONFIRM=elicit; approvals: the client's elicitation only" in out
    assert "target         : embedded sandbox tenant" in out
    await run_doctor(_settings())
    assert (
        "KLINK_CONFIRM=on; approvals: the client's elicitation form, else URL elicitation, else the approval "
        "page (stdio: http://127.0.0.1:<ephemeral port>/approvals/<id>; serve --http: "
        "<this server>/approvals/<id>; open 600 s)" in capsys.readouterr().out
    )
    await run_doctor(
        _settings(approval_port=8765, resource_url="https://mcp.example.com/mcp", approval_open_browser=True)
    )
    assert (
        "(stdio: http://127.0.0.1:8765/approvals/<id>; serve --http: https://mcp.example.com/approvals/<id>; "
        "open 600 s, opened in the desktop browser)" in capsys.readouterr().out
    )
    await run_doctor(_settings(confirm="token"))
    assert (
        "KLINK_CONFIRM=token; approvals: the client's elicitation form, else a two-step confirmation_token "
        "the model can pass itself" in capsys.readouterr().out
    )


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: connections are refused


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) but never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("which", ["refused", "silent"])
async def test_an_unreachable_host_is_one_probe_and_one_line_within_3_s(
    which: str, closed_port: int, silent_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port if which == "refused" else silent_port
    started = time.monotonic()
    with anyio.fail_after(10):  # the bound of the wait; the figure that matters is checked below
        rc = await run_doctor(_settings(api_token=TOKEN, base_url=f"http://127.0.0.1:{port}"))
    elapsed = time.monotonic() - started
    out = capsys.readouterr().out
    assert rc == 1
    fails = _fails(out)
    assert len(fails) == 1 and "cannot reach K-LINK at 127.0.0.1" in fails[0]
    assert elapsed < 3.0, f"doctor took {elapsed:.2f} s (one probe of {REACH_TIMEOUT_S} s at most)"
    assert not any(line.startswith("ok") for line in out.splitlines())


async def test_a_missing_path_is_named_with_the_override_to_use(
    sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from klink_mcp.config import OperationOverride

    settings = _settings(
        api_token=TOKEN,
        base_url=sandbox.url,
        operations={
            "find_contacts_by_social_platform_id": OperationOverride(path="/api/v1/people/{socialPlatformId}")
        },
    )
    assert await run_doctor(settings) == 1
    fails = _fails(capsys.readouterr().out)
    assert len(fails) == 1
    assert "find_contacts_by_social_platform_id" in fails[0] and "does not exist on this tenant" in fails[0]
    assert "KLINK_OP_FIND_CONTACTS_BY_SOCIAL_PLATFORM_ID_PATH" in fails[0]


async def test_a_base_url_with_a_path_prefix_is_one_line_with_the_fix(
    sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_doctor(_settings(api_token=TOKEN, base_url=sandbox.url + "/klink")) == 1
    fails = _fails(capsys.readouterr().out)
    assert len(fails) == 1 and f"try KLINK_BASE_URL={sandbox.url}" in fails[0]


def test_a_base_url_ending_in_api_stops_doctor_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KLINK_API_TOKEN", TOKEN)
    monkeypatch.setenv("KLINK_BASE_URL", "https://apigw.klinkcx.com/api")
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "use https://apigw.klinkcx.com" in err[0]


def test_doctor_reports_a_store_it_cannot_open(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("KLINK_EVENTS_DB", str(tmp_path))  # a directory
    assert main(["doctor"]) == 1
    fails = _fails(capsys.readouterr().out)
    assert len(fails) == 1 and "KLINK_EVENTS_DB" in fails[0]


def test_doctor_over_the_cli_probes_the_embedded_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    _assert_every_read_answered(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("name", "value"),
    [("KLINK_TOOLSETS", "ticket"), ("KLINK_SCHEMA_TTL", "soon"), ("KLINK_SANDBOX_FIXTURE", "/nope.json")],
)
def test_doctor_refuses_a_bad_setting_with_one_line_instead_of_saying_all_is_well(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["doctor"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and captured.out == ""


@pytest.mark.parametrize("fault", ["error_rate", "rate_limit_rate"])
async def test_an_upstream_that_fails_every_request_is_one_line(
    fault: str, sandbox: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from klink_mcp.sandbox.faults import FaultConfig

    sandbox.tenant.faults = FaultConfig(**{fault: 1.0})
    assert await run_doctor(_settings(api_token=TOKEN, base_url=sandbox.url)) == 1
    fails = _fails(capsys.readouterr().out)
    assert len(fails) == 1 and "first probe" in fails[0] and "try again later" in fails[0]


def test_doctor_starts_without_the_mcp_sdk_and_names_the_pages_real_path() -> None:
    # A doctor run must answer fast (an unreachable host within ~3 s, start-up included): it never
    # loads the MCP SDK, and the approval path it prints is the page's own.
    import subprocess
    import sys

    code = (
        "import sys, klink_mcp.cli, klink_mcp.doctor; "
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from klink_mcp import approval_page, doctor

    assert doctor.APPROVAL_PATH == approval_page.APPROVAL_PATH
