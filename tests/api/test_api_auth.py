"""Both K-LINK auth schemes: Bearer and Basic, the header built in one place, the sandbox accepting
both (in process and over loopback HTTP), and the secret kept out of errors, reprs and logs."""

from __future__ import annotations

import base64
import logging

import httpx2
import pytest
from pydantic import SecretStr

from klink_mcp.api import errors as api_errors
from klink_mcp.api.auth import BasicCredentials, authorization_header, credentials_from_settings
from klink_mcp.api.client import KlinkClient
from klink_mcp.config import ConfigError, load_settings
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.sandbox.cli import build_parser
from klink_mcp.sandbox.server import serve_sandbox

pytestmark = pytest.mark.anyio

TOKEN = "bearer-canary-0b7e"
USER = "api-user"
PASSWORD = "pässword canary:9f2"  # a space, a colon and a non-ASCII letter: Basic carries them all
BASE = "http://sandbox.klink.invalid"


def _tenant() -> SandboxTenant:
    tenant = SandboxTenant.seeded()
    tenant.basic_auth = (USER, SecretStr(PASSWORD))
    return tenant


def test_the_header_is_bearer_for_a_token_and_basic_for_user_and_password() -> None:
    assert authorization_header(SecretStr(TOKEN)) == f"Bearer {TOKEN}"
    basic = authorization_header(BasicCredentials(USER, PASSWORD))
    assert basic == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.mark.parametrize(
    "bad",
    [SecretStr(""), SecretStr("has space"), SecretStr("tab\there"), BasicCredentials("u", "")],
    ids=["empty-token", "space", "tab", "empty-password"],
)
def test_an_unsendable_secret_is_refused_without_quoting_it(bad: SecretStr) -> None:
    with pytest.raises(ConfigError) as exc:
        authorization_header(bad)
    secret = bad.get_secret_value()
    assert not secret or secret not in str(exc.value)


def test_basic_credentials_never_show_the_password() -> None:
    creds = BasicCredentials(USER, PASSWORD)
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds) and USER in repr(creds)
    with pytest.raises(ConfigError):
        BasicCredentials("a:b", "pw")


def test_the_settings_select_the_scheme() -> None:
    basic = credentials_from_settings(
        load_settings(env={"KLINK_BASIC_USER": USER, "KLINK_BASIC_PASSWORD": PASSWORD})
    )
    assert isinstance(basic, BasicCredentials) and basic.user == USER
    bearer = credentials_from_settings(load_settings(env={"KLINK_API_TOKEN": TOKEN}))
    assert not isinstance(bearer, BasicCredentials) and bearer.get_secret_value() == TOKEN
    sandbox = credentials_from_settings(load_settings(env={"KLINK_API_TOKEN": TOKEN, "KLINK_SANDBOX": "1"}))
    assert sandbox.get_secret_value() == "sandbox-token"


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
async def test_both_schemes_work_against_the_in_process_sandbox(scheme: str) -> None:
    creds: SecretStr = BasicCredentials(USER, PASSWORD) if scheme == "basic" else SecretStr(TOKEN)
    async with KlinkClient(BASE, creds, transport=SandboxTransport(_tenant(), token=TOKEN)) as client:
        assert (await client.list_contacts(page_size=1)).items


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
async def test_both_schemes_work_against_the_sandbox_over_loopback_http(scheme: str) -> None:
    env = (
        {"KLINK_BASIC_USER": USER, "KLINK_BASIC_PASSWORD": PASSWORD}
        if scheme == "basic"
        else {"KLINK_API_TOKEN": TOKEN}
    )
    async with serve_sandbox(_tenant(), token=TOKEN) as server:
        settings = load_settings(env={**env, "KLINK_BASE_URL": server.url})
        assert settings.auth_scheme == scheme
        async with KlinkClient.from_settings(settings) as client:
            assert await client.list_tags()
            assert (await client.list_tickets(page_size=1)).items


async def test_a_wrong_password_is_a_401_that_never_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-password-canary-61"
    caplog.set_level(logging.DEBUG)
    async with serve_sandbox(_tenant(), token=TOKEN) as server:
        settings = load_settings(
            env={"KLINK_BASIC_USER": USER, "KLINK_BASIC_PASSWORD": wrong, "KLINK_BASE_URL": server.url}
        )
        async with KlinkClient.from_settings(settings) as client:
            with pytest.raises(api_errors.Unauthorized) as exc:
                await client.list_contacts(page_size=1)
    encoded = base64.b64encode(f"{USER}:{wrong}".encode()).decode()
    for text in (str(exc.value), repr(exc.value), repr(client), caplog.text):
        assert wrong not in text and encoded not in text
    assert exc.value.status == 401


async def test_the_sandbox_refuses_basic_unless_configured_and_says_both_schemes_when_it_is() -> None:
    header = {"Authorization": authorization_header(BasicCredentials(USER, PASSWORD))}
    plain = SandboxTenant.seeded()
    async with httpx2.AsyncClient(transport=SandboxTransport(plain, token=TOKEN), base_url=BASE) as http:
        refused = await http.get("/api/v1/tags", headers=header)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    async with httpx2.AsyncClient(transport=SandboxTransport(_tenant(), token=TOKEN), base_url=BASE) as http:
        assert (await http.get("/api/v1/tags", headers=header)).status_code == 200
        wrong = await http.get(
            "/api/v1/tags", headers={"Authorization": "Basic " + base64.b64encode(b"x:y").decode()}
        )
        assert wrong.status_code == 401 and "Basic" in wrong.headers["www-authenticate"]


def test_the_sandbox_cli_takes_basic_credentials_from_options_and_the_environment() -> None:
    defaults = build_parser({}).parse_args([])
    assert (defaults.basic_user, defaults.basic_password) == ("sandbox", "sandbox-password")
    env = {"KLINK_SANDBOX_BASIC_USER": "ops", "KLINK_SANDBOX_BASIC_PASSWORD": "pw-env"}
    from_env = build_parser(env).parse_args([])
    assert (from_env.basic_user, from_env.basic_password) == ("ops", "pw-env")
    flags = build_parser(env).parse_args(["--basic-user", "u2", "--basic-password", "p2"])
    assert (flags.basic_user, flags.basic_password) == ("u2", "p2")
