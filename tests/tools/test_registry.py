"""Serving specs (klink_mcp/tools/registry.py): one path for every tool, slim schemas, derived facts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer

from klink_mcp.guard.confirm import Guard
from klink_mcp.schemas import FormRegistry
from klink_mcp.tools import channels, tags, tickets
from klink_mcp.tools.registry import register_spec
from klink_mcp.tools.state import ServerState
from tests.helpers.server import make_settings

pytestmark = pytest.mark.anyio


def make_state(**overrides: Any) -> ServerState:
    settings = make_settings(**overrides)
    return ServerState(settings=settings, guard=Guard(settings), forms=FormRegistry(ttl_s=60))


async def listed(mcp: MCPServer[Any]) -> dict[str, Any]:
    async with Client(mcp) as client:
        return {tool.name: tool for tool in (await client.list_tools()).tools}


async def test_a_spec_is_served_with_its_title_annotations_and_schemas_without_titles() -> None:
    mcp: MCPServer[Any] = MCPServer("registry-test")
    register_spec(mcp, make_state(), tags.LIST_TAGS)
    register_spec(mcp, make_state(), tags.LIST_TAGS)  # re-registering replaces, never duplicates
    tools = await listed(mcp)
    assert list(tools) == ["list_tags"]
    tool = tools["list_tags"]
    assert tool.title == tags.LIST_TAGS.title
    assert tool.description == tags.LIST_TAGS.description
    assert tool.annotations == tags.LIST_TAGS.annotations
    assert '"title"' not in json.dumps(tool.input_schema)
    assert tool.output_schema is not None and '"description"' not in json.dumps(tool.output_schema)


async def test_a_write_the_guard_never_asks_about_publishes_no_confirmation_fields() -> None:
    plain: MCPServer[Any] = MCPServer("plain")
    register_spec(plain, make_state(), channels.CREATE_CHANNEL)
    guarded: MCPServer[Any] = MCPServer("guarded")
    register_spec(guarded, make_state(confirm_tools=("create_channel",)), channels.CREATE_CHANNEL)
    plain_out = (await listed(plain))["create_channel"].output_schema
    guarded_out = (await listed(guarded))["create_channel"].output_schema
    assert "preview" not in plain_out["properties"]
    assert "preview" in guarded_out["properties"]


async def test_a_destructive_spec_carries_the_guards_paragraph_in_its_description() -> None:
    from klink_mcp.tools import contacts

    mcp: MCPServer[Any] = MCPServer("destructive")
    state = make_state()
    register_spec(mcp, state, contacts.DELETE_CONTACT)
    description = (await listed(mcp))["delete_contact"].description
    assert description == f"{contacts.DELETE_CONTACT.description} {state.guard.describe('delete_contact')}"


def test_a_spec_compiled_from_a_form_needs_the_form_schema() -> None:
    with pytest.raises(ValueError, match="compiled from the ticket form"):
        register_spec(MCPServer("no-form"), make_state(), tickets.CREATE_TICKET)
