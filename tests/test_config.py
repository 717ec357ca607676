"""The settings model is the one source of truth: TOML keys, environment variables, the README table,
and one clear line for every bad value (never a traceback, never a quoted secret)."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from klink_mcp.config import (
    _ENV_KEYS,
    CONFIG_BEGIN,
    CONFIG_END,
    MIN_SECRET_BYTES,
    ConfigError,
    Settings,
    env_name,
    is_secret,
    load_settings,
    settings_table,
    toml_key,
)
from klink_mcp.toolsets import TOOLSET_NAMES

README = Path(__file__).resolve().parent.parent / "README.md"
LONG = "x" * MIN_SECRET_BYTES
FIELDS = list(_ENV_KEYS.values())

PATHS = {"sandbox_fixture", "audit_log", "events_db"}  # covered with real files below

# A good value per setting, as TOML text and the value the model then holds (others: their default).
GOOD: dict[str, tuple[str, Any]] = {
    "database_url": (
        '"postgresql://klink:pw@db.example.com/klink"',
        SecretStr("postgresql://klink:pw@db.example.com/klink"),
    ),
    "api_token": ('"tok-123"', SecretStr("tok-123")),
    "basic_user": ('"agent"', "agent"),
    "basic_password": ('"pw"', SecretStr("pw")),
    "base_url": ('"https://gw.example.com"', "https://gw.example.com"),
    "allow_insecure_http": ("true", True),
    "connect_timeout_s": ("3", 3.0),
    "read_timeout_s": ("7.5", 7.5),
    "call_deadline_s": ("30", 30.0),
    "max_attempts": ("2", 2),
    "page_concurrency": ("8", 8),
    "sandbox": ("true", True),
    "sandbox_token": ('"demo-token"', SecretStr("demo-token")),
    "read_only": ("true", True),
    "toolsets": ('"tickets"', ("tickets",)),
    "schema_ttl_s": ("60", 60.0),
    "log_level": ('"DEBUG"', "DEBUG"),
    "confirm": ('"elicit"', "elicit"),
    "confirm_tools": ('"update_ticket, create_ticket"', ("update_ticket", "create_ticket")),
    "guard_secret": (f'"{LONG}"', SecretStr(LONG)),
    "confirmation_ttl_s": ("90", 90.0),
    "elicitation_timeout_s": ("30", 30.0),
    "audit_include_bodies": ("true", True),
    "webhook_secret": (f'"{LONG}"', SecretStr(LONG)),
    "webhook_auth": ('"basic"', "basic"),
    "webhook_basic_user": ('"hook"', "hook"),
    "webhook_basic_password": ('"pw"', SecretStr("pw")),
    "webhook_header_name": ('"X-Hook"', "X-Hook"),
    "webhook_header_value": (f'"{LONG}"', SecretStr(LONG)),
    "webhook_max_body_bytes": ("2048", 2048),
    "events_retention": ("50", 50),
    "http_auth_token": (f'"{LONG}"', SecretStr(LONG)),
    "resource_url": ('"https://mcp.example.com/mcp"', "https://mcp.example.com/mcp"),
    "oauth_issuer": ('"https://idp.example.com"', "https://idp.example.com"),
    "oauth_jwks_url": ('"https://idp.example.com/jwks"', "https://idp.example.com/jwks"),
    "oauth_audience": ('"klink-mcp"', "klink-mcp"),
    "oauth_client_id": ('"klink-approvals"', "klink-approvals"),
    "oauth_client_secret": ('"client-pw"', SecretStr("client-pw")),
    "four_eyes_tools": ('"delete_contact, send_message"', ("delete_contact", "send_message")),
    "log_format": ('"json"', "json"),
    "metrics_public": ("true", True),
    "approval_statuses": ('"Resolved, closed, spam"', ("resolved", "closed", "spam")),
    "confirm_overwrites": ("true", True),
}
# Settings that are only valid together with another one.
COMPANIONS: dict[str, dict[str, str]] = {
    "basic_user": {"basic_password": "pw"},
    "basic_password": {"basic_user": "agent"},
    "oauth_issuer": {"resource_url": "https://mcp.example.com/mcp"},
}
_OAUTH = {"oauth_issuer": "https://idp.example.com", "resource_url": "https://mcp.example.com/mcp"}
for _field in ("oauth_jwks_url", "oauth_audience", "oauth_client_id", "four_eyes_tools"):
    COMPANIONS[_field] = dict(_OAUTH)
COMPANIONS["oauth_client_secret"] = {**_OAUTH, "oauth_client_id": "klink-approvals"}


def _write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "klink.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_the_readme_configuration_table_is_generated_from_the_settings_model() -> None:
    readme = README.read_text(encoding="utf-8")
    assert CONFIG_BEGIN in readme and CONFIG_END in readme, "README lacks the generated configuration table"
    current = readme.split(CONFIG_BEGIN, 1)[1].split(CONFIG_END, 1)[0].strip()
    assert current == settings_table().strip(), "README is stale: run `klink-mcp config --markdown`"


def test_every_setting_has_a_variable_a_description_and_a_row() -> None:
    table = settings_table()
    for field in Settings.model_fields:
        if field == "operations":  # a table of its own, documented in its own row
            continue
        assert field in _ENV_KEYS.values(), f"{field} has no KLINK_* variable in _ENV_KEYS"
        assert Settings.model_fields[field].description, f"{field} has no description"
    for env_key, field in _ENV_KEYS.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{env_key}` |"))
        assert f"`{toml_key(field)}`" in row
        assert row.rstrip(" |").endswith("Secret.") == is_secret(field)


@pytest.mark.parametrize("field", sorted(set(FIELDS) - PATHS))
def test_every_documented_toml_key_is_accepted(field: str, tmp_path: Path) -> None:
    text, expected = _good(field)
    lines = f"{toml_key(field)} = {text}\n"
    for other, value in COMPANIONS.get(field, {}).items():
        lines += f'{toml_key(other)} = "{value}"\n'
    settings = load_settings(env={}, config_file=_write_toml(tmp_path, lines))
    assert getattr(settings, field) == expected


@pytest.mark.parametrize("field", sorted(set(FIELDS) - PATHS))
def test_every_variable_is_accepted_from_the_environment(field: str) -> None:
    text, expected = _good(field)
    env = {env_name(field): text.strip('"')}
    for other, value in COMPANIONS.get(field, {}).items():
        env[env_name(other)] = value
    settings = load_settings(env=env)
    assert getattr(settings, field) == expected


def _good(field: str) -> tuple[str, Any]:
    """A good value: from GOOD, else the field's own (non-None) default written as TOML."""
    if field in GOOD:
        return GOOD[field]
    default = Settings.model_fields[field].get_default(call_default_factory=True)
    if isinstance(default, bool):
        return ("true" if default else "false"), default
    if isinstance(default, int | float):
        return repr(default), default
    if isinstance(default, str):
        return f'"{default}"', default
    pytest.fail(f"add a good value for the new setting {field!r} to GOOD in {__name__}")


def test_every_plain_setting_has_a_good_value() -> None:
    for field in FIELDS:
        if field not in PATHS:
            _good(field)


def test_the_names_the_issue_found_refused_are_accepted_in_toml(tmp_path: Path) -> None:
    text = (
        "schema_ttl = 30\nconfirmation_ttl = 60\nconnect_timeout = 2\nread_timeout = 9\ncall_deadline = 20\n"
        'toolsets = "tickets"\nconfirm_tools = ["update_ticket"]\n'
    )
    settings = load_settings(env={}, config_file=_write_toml(tmp_path, text))
    assert (settings.schema_ttl_s, settings.confirmation_ttl_s) == (30.0, 60.0)
    assert (settings.connect_timeout_s, settings.read_timeout_s, settings.call_deadline_s) == (2.0, 9.0, 20.0)
    assert settings.toolsets == ("tickets",) and settings.confirm_tools == ("update_ticket",)


def test_lists_take_comma_separated_strings_in_the_environment_and_arrays_in_toml(tmp_path: Path) -> None:
    assert load_settings(env={"KLINK_TOOLSETS": " tickets , contacts,"}).toolsets == ("tickets", "contacts")
    toml = _write_toml(tmp_path, 'toolsets = ["tags", "tickets"]\n')
    assert load_settings(env={}, config_file=toml).toolsets == ("tags", "tickets")


def test_precedence_is_flags_then_environment_then_file(tmp_path: Path) -> None:
    toml = _write_toml(tmp_path, "schema_ttl = 1\nmax_attempts = 2\nread_only = true\n")
    settings = load_settings(env={"KLINK_SCHEMA_TTL": "5"}, config_file=toml, max_attempts=4)
    assert (settings.schema_ttl_s, settings.max_attempts, settings.read_only) == (5.0, 4, True)


def test_file_paths_are_accepted(tmp_path: Path) -> None:
    fixture = tmp_path / "tenant.json"
    fixture.write_text("{}", encoding="utf-8")
    env = {
        "KLINK_SANDBOX_FIXTURE": str(fixture),
        "KLINK_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "KLINK_EVENTS_DB": str(tmp_path / "events.db"),
    }
    settings = load_settings(env=env)
    assert settings.sandbox_fixture == fixture and settings.audit_log == tmp_path / "audit.jsonl"


def test_an_unknown_toolset_is_refused_with_the_near_miss_and_the_valid_names() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"KLINK_TOOLSETS": "ticket"})
    line = _one_line(exc)
    assert (
        "KLINK_TOOLSETS" in line and "unknown toolset 'ticket'" in line and "did you mean 'tickets'" in line
    )
    assert "valid: " + ", ".join(TOOLSET_NAMES) in line


def test_an_empty_toolset_list_is_refused_not_silently_zero_tools(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"toolsets.*empty"):
        load_settings(env={}, config_file=_write_toml(tmp_path, "toolsets = []\n"))


def test_an_unknown_toml_key_names_the_near_miss_and_every_valid_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env={}, config_file=_write_toml(tmp_path, "schema_ttl_s = 5\n"))
    line = _one_line(exc)
    assert "unknown key 'schema_ttl_s'" in line and "did you mean 'schema_ttl'" in line
    assert "valid: " in line and "confirmation_ttl" in line


def test_a_misspelt_variable_is_refused_with_the_right_name() -> None:
    with pytest.raises(ConfigError, match="KLINK_TOOLSET, did you mean KLINK_TOOLSETS"):
        load_settings(env={"KLINK_TOOLSET": "tickets"})
    # Variables read elsewhere, or far from any setting, are left alone.
    load_settings(env={"KLINK_REQUIRE_REAL_SERVICES": "1", "KLINK_SOMETHING_ELSE_ENTIRELY": "x"})


def test_an_enum_value_gets_the_near_miss_and_the_valid_values() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"KLINK_CONFIRM": "onn"})
    assert "KLINK_CONFIRM='onn'" in _one_line(exc) and "did you mean 'on'; valid: on, off, elicit" in str(
        exc.value
    )


@pytest.mark.parametrize(
    "name",
    ["KLINK_HTTP_AUTH_TOKEN", "KLINK_WEBHOOK_SECRET", "KLINK_GUARD_SECRET", "KLINK_WEBHOOK_HEADER_VALUE"],
)
def test_signing_secrets_shorter_than_32_bytes_are_refused_without_quoting_them(name: str) -> None:
    short = "s3cr3t-" + "q" * (MIN_SECRET_BYTES - 8)
    with pytest.raises(ConfigError) as exc:
        load_settings(env={name: short})
    line = _one_line(exc)
    assert name in line and "32 bytes" in line and short not in line
    assert load_settings(env={name: short + "q"}) is not None  # 32 bytes is enough


def test_the_vendor_issued_credentials_have_no_length_rule() -> None:
    assert load_settings(env={"KLINK_API_TOKEN": "abc"}).api_token is not None
    basic = load_settings(env={"KLINK_BASIC_USER": "u", "KLINK_BASIC_PASSWORD": "p"})
    assert basic.auth_scheme == "basic" and not basic.uses_sandbox


def test_bearer_and_basic_together_are_refused() -> None:
    with pytest.raises(ConfigError, match="set only one scheme"):
        load_settings(env={"KLINK_API_TOKEN": "t", "KLINK_BASIC_USER": "u", "KLINK_BASIC_PASSWORD": "p"})


@pytest.mark.parametrize("env", [{"KLINK_BASIC_USER": "u"}, {"KLINK_BASIC_PASSWORD": "p"}])
def test_basic_needs_both_user_and_password(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="needs both KLINK_BASIC_USER and KLINK_BASIC_PASSWORD"):
        load_settings(env=env)


@pytest.mark.parametrize(
    "creds", [{"KLINK_API_TOKEN": "tok"}, {"KLINK_BASIC_USER": "u", "KLINK_BASIC_PASSWORD": "pw"}]
)
def test_credentials_over_plain_http_to_a_remote_host_are_refused_unless_allowed(
    creds: dict[str, str],
) -> None:
    remote = {**creds, "KLINK_BASE_URL": "http://gw.example.com"}
    with pytest.raises(ConfigError, match=r"plain http:// to gw\.example\.com.*KLINK_ALLOW_INSECURE_HTTP"):
        load_settings(env=remote)
    assert load_settings(env={**remote, "KLINK_ALLOW_INSECURE_HTTP": "1"}).allow_insecure_http
    for loopback in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
        assert load_settings(env={**creds, "KLINK_BASE_URL": loopback}).base_url == loopback


@pytest.mark.parametrize("suffix", ["/api", "/api/", "/api/v1"])
def test_a_base_url_with_an_api_suffix_is_refused_with_the_fix(suffix: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"KLINK_BASE_URL": "https://apigw.klinkcx.com" + suffix})
    assert "use https://apigw.klinkcx.com" in _one_line(exc)


def test_a_missing_fixture_is_refused_at_load() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"KLINK_SANDBOX_FIXTURE": "/nope.json"})
    assert _one_line(exc) == "KLINK_SANDBOX_FIXTURE='/nope.json': no such file"


def _bad_env_value(field: str) -> str | None:
    """A value of the right shape for the environment that the field refuses, or None."""
    annotation = Settings.model_fields[field].annotation
    args = typing.get_args(annotation) or (annotation,)
    if bool in args:
        return "maybe"
    if int in args or float in args:
        return "lots"
    if (
        any(typing.get_origin(a) is typing.Literal for a in args)
        or typing.get_origin(annotation) is typing.Literal
    ):
        return "bogus"
    return {
        "toolsets": "ticket",
        "base_url": "ftp://gw.example.com",
        "basic_user": "a:b",
        "confirm_tools": "no_such_tool",
        "webhook_basic_user": "a:b",
        "api_token": "has space",
        "sandbox_token": "has space",
        "guard_secret": "s3cr3t-tiny",
        "webhook_secret": "s3cr3t-tiny",
        "webhook_header_value": "s3cr3t-tiny",
        "http_auth_token": "s3cr3t-tiny",
        "webhook_header_name": "Not A Header",
        "sandbox_fixture": "/nope.json",
        "database_url": "mysql://user:pw-canary@db/klink",
        "resource_url": "ftp://mcp.example.com",
        "oauth_issuer": "not-a-url",
        "oauth_jwks_url": "ftp://idp.example.com/jwks",
        "approval_statuses": " , ",
    }.get(field)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("KLINK_") and key != "KLINK_REQUIRE_REAL_SERVICES":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def _main_fails_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from klink_mcp.cli import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert captured.out == ""
    return lines[0].removeprefix("klink-mcp: ")


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.usefixtures("clean_env")
def test_a_wrongly_typed_value_of_every_setting_is_one_line_naming_its_toml_key(
    field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = toml_key(field)
    toml = _write_toml(tmp_path, f"{key} = {{ nested = 1 }}\n")
    line = _main_fails_with_one_line(["serve", "--config", str(toml)], capsys)
    assert line.startswith(f"{key} in klink.toml"), line


# Any non-empty string is a valid password: its bad values are the wrongly typed ones (TOML test above).
ANY_STRING_IS_VALID = {"webhook_basic_password"}


@pytest.mark.parametrize("field", [f for f in FIELDS if f not in ANY_STRING_IS_VALID])
@pytest.mark.usefixtures("clean_env")
def test_a_bad_environment_value_of_every_setting_is_one_line_naming_its_variable(
    field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_env_value(field)
    env = {env_name(field): bad} if bad is not None else _bad_env_combination(field, tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    line = _main_fails_with_one_line(["serve"], capsys)
    assert env_name(field) in line, line
    if is_secret(field):
        assert all(value not in line for value in env.values() if len(value) > 3)  # never quoted


def _bad_env_combination(field: str, tmp_path: Path) -> dict[str, str]:
    """For settings any string suits: the way they can still be wrong (a path, a missing partner)."""
    folder = tmp_path / "a-folder"
    folder.mkdir(exist_ok=True)
    return {
        "basic_password": {"KLINK_BASIC_PASSWORD": "pw-canary-1187"},  # without KLINK_BASIC_USER
        "audit_log": {"KLINK_AUDIT_LOG": str(folder)},  # a directory
        "events_db": {"KLINK_EVENTS_DB": str(folder)},
        "oauth_audience": {"KLINK_OAUTH_AUDIENCE": "klink-mcp"},  # without an issuer
        "oauth_client_id": {"KLINK_OAUTH_CLIENT_ID": "klink-approvals"},
        "oauth_client_secret": {"KLINK_OAUTH_CLIENT_SECRET": "cs-canary-5521"},  # without a client id
        "four_eyes_tools": {"KLINK_FOUR_EYES_TOOLS": "delete_contact"},
    }.get(field) or pytest.fail(f"add a bad value for the new setting {field!r} to {__name__}")


def test_secrets_never_appear_in_reprs_or_the_effective_settings() -> None:
    from klink_mcp.config import settings_lines

    settings = load_settings(
        env={
            "KLINK_BASIC_USER": "agent",
            "KLINK_BASIC_PASSWORD": "pw-canary-9931",
            "KLINK_GUARD_SECRET": "g" * 40,
        }
    )
    for text in (repr(settings), str(settings.redacted()), settings_lines(settings)):
        assert "pw-canary-9931" not in text and "g" * 40 not in text
    assert "agent" in settings_lines(settings)


def test_operation_overrides_come_from_toml_and_the_environment(tmp_path: Path) -> None:
    toml = _write_toml(tmp_path, '[operations.create_contact]\npath = "/api/v1/customers"\n')
    settings = load_settings(env={"KLINK_OP_CREATE_CONTACT_METHOD": "put"}, config_file=toml)
    assert settings.operations["create_contact"].path == "/api/v1/customers"
    assert settings.operations["create_contact"].method == "PUT"
    with pytest.raises(ConfigError, match="KLINK_OP_CREATE_CONTACT_VERB: operation overrides are"):
        load_settings(env={"KLINK_OP_CREATE_CONTACT_VERB": "PUT"})


def test_enumerations_take_any_letter_case(tmp_path: Path) -> None:
    settings = load_settings(env={"KLINK_LOG_LEVEL": "debug", "KLINK_CONFIRM": "OFF"})
    assert (settings.log_level, settings.confirm) == ("DEBUG", "off")
    toml = _write_toml(tmp_path, 'webhook_auth = "Header"\n')
    assert load_settings(env={}, config_file=toml).webhook_auth == "header"
