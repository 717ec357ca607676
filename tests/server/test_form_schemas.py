"""Schemas compiled from the tenant's form fields: typing, validation before upstream, live changes."""

from __future__ import annotations

import copy
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.subscriptions import ToolsListChanged
from mcp.types import ToolListChangedNotification

from klink_mcp.forms import KNOWN_TYPES, compile_form_schema
from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import FIXTURES, make_server

pytestmark = pytest.mark.anyio


def _schema(tools: list[Any], name: str) -> dict[str, Any]:
    return next(t for t in tools if t.name == name).input_schema


def _custom_props(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema["properties"]["custom_fields"]
    ref = ref.get("$ref") or next(a["$ref"] for a in ref["anyOf"] if "$ref" in a)
    return schema["$defs"][ref.split("/")[-1]]["properties"]


async def test_create_contact_schema_is_typed_from_the_form(client: Client, tenant: SandboxTenant) -> None:
    tools = (await client.list_tools()).tools
    schema = _schema(tools, "create_contact")
    assert "name" in schema["required"]
    custom = _custom_props(schema)
    fields = {f["system_name"]: f for f in tenant.contact_fields if not f.get("is_archived")}
    archived = [f["system_name"] for f in tenant.contact_fields if f.get("is_archived")]
    assert archived and not set(archived) & set(custom)
    by_type: dict[str, list[str]] = {}
    for name, f in fields.items():
        if not f.get("is_default"):
            by_type.setdefault(f["type"], []).append(name)
    flat = {k: (v.get("anyOf") or [v])[0] for k, v in custom.items()}
    for name in by_type.get("date", []):
        assert flat[name]["format"] == "date"
    for name in by_type.get("select", []):
        options = [o["value"] for o in fields[name]["options"]]
        if len(options) <= 40:
            assert flat[name]["enum"] == options
    for name in by_type.get("checkbox", []):
        assert flat[name]["type"] == "boolean"
    for name in by_type.get("number", []):
        assert flat[name]["type"] == "number"
    for name in by_type.get("multiselect", []):
        assert flat[name]["type"] == "array" and flat[name]["uniqueItems"] is True
    unknown = [n for t, names in by_type.items() if t not in KNOWN_TYPES for n in names]
    assert unknown, "the sandbox tenant has a field of an unknown type"
    for name in unknown:
        assert flat[name]["type"] == "string"
        assert fields[name]["type"] in custom[name]["description"]


async def test_update_schema_makes_every_field_optional(client: Client) -> None:
    schema = _schema((await client.list_tools()).tools, "update_contact")
    assert schema["required"] == ["contact_id"]


async def test_invalid_custom_value_names_field_and_options_and_sends_nothing(
    client: Client, tenant: SandboxTenant
) -> None:
    select = next(
        f
        for f in tenant.contact_fields
        if f["type"] == "select"
        and not f.get("is_default")
        and not f.get("is_archived")
        and len(f["options"]) <= 40
    )
    contact = next(iter(tenant.contacts.values()))
    tenant.reset_requests()
    result = await client.call_tool(
        "update_contact",
        {"contact_id": contact["id"], "custom_fields": {select["system_name"]: "not-an-option"}},
    )
    assert result.is_error
    text = result.content[0].text
    assert select["system_name"] in text
    assert str(select["options"][0]["value"]) in text
    assert tenant.requests == []


async def test_unknown_custom_key_is_refused_before_upstream(client: Client, tenant: SandboxTenant) -> None:
    contact = next(iter(tenant.contacts.values()))
    tenant.reset_requests()
    result = await client.call_tool(
        "update_contact", {"contact_id": contact["id"], "custom_fields": {"cf_does_not_exist": "x"}}
    )
    assert result.is_error and "cf_does_not_exist" in result.content[0].text
    assert tenant.requests == []


def test_long_option_lists_are_capped_and_checked_with_suggestions() -> None:
    options = [{"value": f"product-{i:03d}", "label": f"Product {i}"} for i in range(300)]
    schema = compile_form_schema(
        "ticket",
        [{"system_name": "cf_product", "display_name": "Product", "type": "select", "options": options}],
    )
    model = schema.custom_model(for_update=False)
    assert model is not None
    prop = model.model_json_schema()["properties"]["cf_product"]
    assert "enum" not in str(prop)
    assert len(str(prop)) < 600
    schema.check_capped_options({"cf_product": "product-007"})
    with pytest.raises(ValueError, match="product-01"):
        schema.check_capped_options({"cf_product": "product-0100"})


def test_odd_definitions_never_crash_the_compiler() -> None:
    schema = compile_form_schema(
        "contact",
        [
            {"system_name": "", "type": "text"},
            {"nonsense": True},
            "not a dict",
            {"system_name": "cf_x", "type": "select", "options": []},
            {"system_name": "cf_r", "type": "hologram"},
            {"system_name": "name", "type": "text", "is_default": True, "is_required": True},
        ],
    )
    assert [f.system_name for f in schema.builtin] == ["name"]
    assert {f.system_name for f in schema.custom} == {"cf_x", "cf_r"}
    assert schema.skipped


def _changed_fields(tenant: SandboxTenant) -> list[dict[str, Any]]:
    fields = copy.deepcopy(tenant.contact_fields)
    fields.append(
        {
            "id": "new-field-1",
            "system_name": "cf_test_added_tier",
            "display_name": "Loyalty tier",
            "type": "select",
            "is_default": False,
            "is_archived": False,
            "is_required": False,
            "is_unique": False,
            "options": [{"value": "gold", "label": "Gold", "is_default": False}],
        }
    )
    return fields


async def test_form_change_notifies_a_legacy_client_and_updates_the_schema(tenant: SandboxTenant) -> None:
    got = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            got.set()

    async with Client(make_server(tenant), mode="legacy", message_handler=on_message) as client:
        tools = (await client.list_tools()).tools
        assert "cf_test_added_tier" not in str(_schema(tools, "create_contact"))
        tenant.set_form_fields("contact", _changed_fields(tenant))
        result = await client.call_tool("refresh_form_schemas", {})
        assert result.structured_content["changed"] == ["contact"]
        with anyio.fail_after(5):
            await got.wait()
        tools = (await client.list_tools()).tools
        assert "cf_test_added_tier" in str(_schema(tools, "create_contact"))


async def test_form_change_notifies_a_2026_listener_and_updates_the_schema(tenant: SandboxTenant) -> None:
    async with Client(make_server(tenant)) as client:
        async with client.listen(tools_list_changed=True) as sub:
            tenant.set_form_fields("contact", _changed_fields(tenant))
            await client.call_tool("refresh_form_schemas", {})
            with anyio.fail_after(5):
                event = await sub.__anext__()
            assert isinstance(event, ToolsListChanged)
        tools = (await client.list_tools()).tools
        assert "cf_test_added_tier" in str(_schema(tools, "create_contact"))


async def test_ttl_expiry_refreshes_on_the_next_tools_list(tenant: SandboxTenant) -> None:
    server = make_server(tenant, schema_ttl_s=0)
    async with Client(server) as client:
        tenant.set_form_fields("contact", _changed_fields(tenant))
        tools = (await client.list_tools()).tools
        assert "cf_test_added_tier" in str(_schema(tools, "create_contact"))


async def test_server_starts_and_says_why_when_fields_cannot_be_fetched(tenant: SandboxTenant) -> None:
    tenant.set_form_fields("contact", [])  # keep the tenant valid, then break the endpoint
    from klink_mcp.sandbox import FaultConfig

    tenant.faults = FaultConfig(error_rate=1.0, only_methods=frozenset({"GET"}))
    server = make_server(tenant, max_attempts=1)
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"create_contact", "list_contacts", "create_ticket"} <= set(tools)
        assert server.klink_state.startup_problems  # type: ignore[attr-defined]
        assert "could not be loaded" in (tools["create_contact"].description or "")
        assert "name" in tools["create_contact"].input_schema["required"]


async def test_an_idle_legacy_client_is_told_when_another_client_refreshes(tenant: SandboxTenant) -> None:
    server = make_server(tenant)
    got = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            got.set()

    async with Client(server, mode="legacy", message_handler=on_message) as idle:
        await idle.list_tools()  # then it only listens
        async with Client(server, mode="legacy") as active:
            tenant.set_form_fields("contact", _changed_fields(tenant))
            await active.call_tool("refresh_form_schemas", {})
        with anyio.fail_after(5):
            await got.wait()
    assert server.klink_tracker.connection_count == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_the_server_declares_that_its_tool_list_changes(tenant: SandboxTenant, era: str) -> None:
    async with Client(make_server(tenant), mode=era) as client:  # type: ignore[arg-type]
        tools = client.server_capabilities.tools
        assert tools is not None and tools.list_changed is True


async def test_a_long_option_list_is_checked_on_the_server_with_suggestions() -> None:
    tenant = SandboxTenant.from_fixture(FIXTURES / "tenant_acme.json")
    contact = next(iter(tenant.contacts.values()))
    async with Client(make_server(tenant)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        branch = _custom_props(tools["update_contact"].input_schema)["cf_branch"]
        assert "enum" not in branch and "300 options" in branch["description"]
        tenant.reset_requests()
        bad = await client.call_tool(
            "update_contact", {"contact_id": contact["id"], "custom_fields": {"cf_branch": "BR-0077"}}
        )
        assert bad.is_error and "cf_branch" in bad.content[0].text and "BR-007" in bad.content[0].text
        assert bad.meta["klink_mcp/error"]["code"] == "validation"
        assert tenant.requests == []
        good = await client.call_tool(
            "update_contact", {"contact_id": contact["id"], "custom_fields": {"cf_branch": "BR-077"}}
        )
        assert good.structured_content["status"] == "done"
    assert tenant.contacts[contact["id"]]["customFields"]["cf_branch"] == "BR-077"


async def test_a_required_custom_ticket_field_is_required_on_create_only() -> None:
    tenant = SandboxTenant.from_fixture(FIXTURES / "tenant_acme.json")
    async with Client(make_server(tenant)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "custom_fields" in tools["create_ticket"].input_schema["required"]
        assert "custom_fields" not in tools["update_ticket"].input_schema.get("required", [])
        contact = next(iter(tenant.contacts.values()))
        tenant.reset_requests()
        missing = await client.call_tool("create_ticket", {"contact_id": contact["id"], "title": "x"})
        assert missing.is_error and "custom_fields" in missing.content[0].text
        assert tenant.requests == []
