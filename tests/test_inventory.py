"""The tool inventory is the one place per tool: everything keyed by a tool's name is derived from it."""

from __future__ import annotations

import pytest
from mcp import Client

from klink_mcp import inventory
from klink_mcp.config import ConfigError
from klink_mcp.guard import policy
from klink_mcp.sandbox import SandboxTenant
from klink_mcp.server import TOOLSETS, toolset_of
from klink_mcp.tools import contacts
from klink_mcp.toolsets import TOOLSET_NAMES
from tests.helpers.server import make_server, make_settings

pytestmark = pytest.mark.anyio


def test_the_inventory_uses_exactly_the_declared_toolset_names() -> None:
    assert {spec.toolset for spec in inventory.SPECS} == set(TOOLSET_NAMES)
    assert tuple(inventory.TOOLSETS) == TOOLSET_NAMES
    assert all(inventory.TOOLSETS[name] for name in TOOLSET_NAMES)  # no empty toolset


def test_a_toolset_typo_is_refused_instead_of_serving_no_tools() -> None:
    # The settings refuse it when they load...
    with pytest.raises(ConfigError, match=r"unknown toolset 'ticket', did you mean 'tickets'"):
        make_server(SandboxTenant.seeded(), toolsets=("ticket",))
    # ...and the inventory refuses it too, should settings ever be built without validation.
    unchecked = make_settings().model_copy(update={"toolsets": ("contacts", "ticket")})
    with pytest.raises(ConfigError, match="unknown toolsets: ticket"):
        inventory.served_specs(unchecked)


async def test_a_toolset_allow_list_serves_exactly_the_tools_of_those_toolsets() -> None:
    server = make_server(SandboxTenant.seeded(), toolsets=("tickets", "events"))
    async with Client(server) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert names == set(TOOLSETS["tickets"]) | {"list_recent_events"}


def test_the_toolset_map_and_the_risk_table_are_derived_from_the_specs() -> None:
    assert sorted(name for names in TOOLSETS.values() for name in names) == sorted(
        s.name for s in inventory.SPECS
    )
    assert set(policy.ALL_TOOLS) == {spec.name for spec in inventory.SPECS}
    for spec in inventory.SPECS:
        assert policy.policy_for(spec.name) is spec.effects
        assert policy.annotations_for(spec.name) == spec.annotations
        assert toolset_of(spec.name) == spec.toolset
    assert toolset_of("no_such_tool") == "other"


def test_every_handler_is_a_module_level_function_named_like_its_tool() -> None:
    for spec in inventory.SPECS:
        module = __import__(spec.handler.__module__, fromlist=["_"])
        assert getattr(module, spec.name) is spec.handler, spec.name
    assert contacts.delete_contact is contacts.DELETE_CONTACT.handler


def test_every_tool_compiled_from_a_form_says_which_form_and_how_to_build_its_parameters() -> None:
    compiled = {spec.name: spec.form for spec in inventory.SPECS if spec.form is not None}
    assert compiled == {
        "create_contact": "contact",
        "update_contact": "contact",
        "create_ticket": "ticket",
        "update_ticket": "ticket",
        "update_ticket_status": "ticket",
    }
    assert all(spec.form_parameters is not None for spec in inventory.SPECS if spec.form is not None)


async def test_the_listed_annotations_and_output_schemas_come_from_the_specs() -> None:
    async with Client(make_server(SandboxTenant.seeded())) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {spec.name for spec in inventory.SPECS}
    for spec in inventory.SPECS:
        assert tools[spec.name].annotations == spec.annotations, spec.name
        assert tools[spec.name].title == spec.title
        assert (tools[spec.name].description or "").startswith(spec.description)
        output = tools[spec.name].output_schema
        assert output is not None and set(output["properties"]) <= set(spec.output.model_fields), spec.name
