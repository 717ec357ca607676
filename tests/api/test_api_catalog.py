"""The catalogue is the contract's 21 operations as data, and configuration can re-point any of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from klink_mcp.api.catalog import DEFAULT_OPERATIONS, OPERATION_NAMES, Catalog, path_placeholders
from klink_mcp.api.client import KlinkClient
from klink_mcp.config import ConfigError, OperationOverride, load_settings

from .conftest import Script, contact_body, paged

pytestmark = pytest.mark.anyio

CONTRACT_TOOLS = [
    "list_contacts", "create_contact", "find_contacts_by_social_platform_id", "get_contact_form_fields",
    "get_contact", "update_contact", "delete_contact", "list_contact_groups", "update_contact_tags", "list_tags",
    "list_channels", "create_channel", "list_tickets", "create_ticket", "list_contact_tickets",
    "get_ticket_form_fields", "update_ticket", "update_ticket_status", "list_categories", "list_cx_logs",
    "send_message",
]  # fmt: skip


def test_the_catalogue_holds_exactly_the_contracts_21_operations_in_order() -> None:
    assert list(OPERATION_NAMES) == CONTRACT_TOOLS
    assert len(Catalog()) == 21


def test_every_path_is_under_api_v1_and_every_placeholder_is_a_plain_name() -> None:
    for op in DEFAULT_OPERATIONS:
        assert op.path.startswith("/api/v1/"), op.name
        assert op.placeholders == path_placeholders(op.path)
        assert op.status in {"documented", "inferred", "partly"}


def test_posts_are_never_idempotent_and_reads_always_are() -> None:
    for op in DEFAULT_OPERATIONS:
        if op.method == "POST":
            assert not op.idempotent, op.name
        if op.method == "GET":
            assert op.idempotent, op.name
    assert {op.name for op in DEFAULT_OPERATIONS if not op.idempotent} == {
        "create_contact",
        "create_channel",
        "create_ticket",
        "send_message",
    }


def test_overriding_the_method_recomputes_idempotency() -> None:
    catalog = Catalog().with_overrides(
        {
            "update_contact": OperationOverride(method="POST"),
            "update_ticket_status": OperationOverride(method="PATCH"),
            "create_contact": OperationOverride(method="PUT"),
        }
    )
    assert not catalog["update_contact"].idempotent
    assert catalog["update_ticket_status"].idempotent
    assert not catalog["create_contact"].idempotent  # a create stays unsafe to repeat whatever the verb


def test_an_override_for_an_unknown_operation_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="unknown operation"):
        Catalog().with_overrides({"get_ticket": OperationOverride(path="/api/v1/tickets/{id}")})


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("get_contact", "/api/v1/customers"),
        ("get_contact", "/api/v1/customers/{contactId}"),
        ("list_tags", "/api/v1/labels/{id}"),
        ("get_contact", "/api/v1/customers/{id.x}"),
        ("get_contact", "/api/v1/customers/{id"),
        ("list_tags", "/api/v1/labels?all=1"),
        ("list_tags", "/api/v1/my labels"),
    ],
)
def test_an_override_path_must_keep_the_placeholders_and_be_a_bare_path(name: str, path: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Catalog().with_overrides({name: OperationOverride(path=path)})


async def test_overrides_from_toml_and_environment_change_what_is_actually_requested(
    tmp_path: Path, make_client: Callable[..., KlinkClient]
) -> None:
    toml = tmp_path / "k.toml"
    toml.write_text(
        '[operations.create_contact]\npath = "/api/v2/customers"\n\n'
        '[operations.get_contact]\nmethod = "POST"\npath = "/api/v1/customers/{id}/view"\n'
    )
    settings = load_settings(
        env={
            "KLINK_API_TOKEN": "kpt_x",
            "KLINK_OP_LIST_TAGS_PATH": "/api/v1/labels",
            "KLINK_OP_GET_CONTACT_METHOD": "put",
        },
        config_file=toml,
    )
    script = Script((200, contact_body()), (200, contact_body()), (200, {"data": []}), (200, paged([])))
    client = make_client(script, catalog=Catalog.from_settings(settings))
    await client.create_contact({"name": "Ann"})
    await client.get_contact("c1")
    await client.list_tags()
    await client.list_contacts()
    sent = [(r.method, r.url.path) for r in script.requests]
    assert sent == [
        ("POST", "/api/v2/customers"),
        ("PUT", "/api/v1/customers/c1/view"),  # the environment wins over the file
        ("GET", "/api/v1/labels"),
        ("GET", "/api/v1/contacts"),
    ]


async def test_from_settings_applies_overrides_limits_and_the_token(tmp_path: Path) -> None:
    settings = load_settings(
        env={
            "KLINK_API_TOKEN": "kpt_from_env",
            "KLINK_BASE_URL": "https://tenant.example/",
            "KLINK_MAX_ATTEMPTS": "2",
            "KLINK_OP_LIST_CHANNELS_PATH": "/api/v1/inboxes",
        },
        config_file=None,
    )
    import httpx2

    script = Script((503, b""))
    async with KlinkClient.from_settings(settings, transport=httpx2.MockTransport(script)) as client:
        with pytest.raises(Exception, match="503"):
            await client.list_channels()
    assert [str(r.url) for r in script.requests] == ["https://tenant.example/api/v1/inboxes"] * 2
    assert script.requests[0].headers["authorization"] == "Bearer kpt_from_env"
    assert client.catalog["list_channels"].path == "/api/v1/inboxes"


def test_a_bad_override_in_settings_fails_when_the_client_is_built() -> None:
    settings = load_settings(
        env={"KLINK_API_TOKEN": "kpt_x", "KLINK_OP_GET_TICKET_PATH": "/x"}, config_file=None
    )
    with pytest.raises(ConfigError, match="get_ticket"):
        KlinkClient.from_settings(settings)


def test_sandbox_mode_never_sends_the_sandbox_token_to_the_real_gateway() -> None:
    with pytest.raises(ConfigError, match="real K-LINK gateway"):
        KlinkClient.from_settings(load_settings(env={}, config_file=None))


# ---------------------------------------------------------------------------------------- boundary

API_DIR = Path(__file__).resolve().parents[2] / "klink_mcp" / "api"


def test_the_sdk_package_never_imports_mcp() -> None:
    offenders = []
    for source in sorted(API_DIR.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{source.name}: {n}" for n in names if n == "mcp" or n.startswith("mcp.")]
    assert list(API_DIR.glob("*.py")), "the scan found no files"
    assert offenders == []


def test_importing_the_sdk_does_not_load_mcp_even_indirectly() -> None:
    code = "import sys, klink_mcp.api.client, klink_mcp.api.models; sys.exit('mcp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
