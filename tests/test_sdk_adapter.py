"""Each private SDK part `klink_mcp.sdk_adapter` touches, pinned: these fail when the SDK changes it.

One test per adapter function, on a bare `MCPServer` driven by the real `Client` (both eras where
the touch is era-specific), so an SDK upgrade that moves or renames a private part breaks here.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import anyio
import pytest
from mcp import Client, MCPDeprecationWarning
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.message import SessionMessage
from mcp.types import EmptyResult, SubscribeRequestParams
from pydantic import BaseModel

from klink_mcp import sdk_adapter

pytestmark = pytest.mark.anyio


class Answer(BaseModel):
    value: int
    note: str | None = None


def make_server() -> MCPServer[Any]:
    mcp: MCPServer[Any] = MCPServer("adapter-test")

    async def answer(x: int) -> Answer:
        return Answer(value=x)

    mcp.add_tool(answer, name="answer", structured_output=True)
    return mcp


def test_registered_tool_finds_the_sdk_record_of_a_tool_and_the_names_keep_their_order() -> None:
    mcp = make_server()

    async def second() -> Answer:
        return Answer(value=2)

    mcp.add_tool(second, name="second", structured_output=True)
    tool = sdk_adapter.registered_tool(mcp, "answer")
    assert isinstance(tool, Tool) and tool.name == "answer"
    assert sdk_adapter.registered_tool(mcp, "nope") is None
    assert sdk_adapter.registered_tool_names(mcp) == ["answer", "second"]


async def test_the_schema_map_prompt_names_and_server_stamp_match_what_clients_see() -> None:
    mcp = make_server()

    @mcp.prompt(name="hello")
    def hello() -> str:
        return "hi"

    async with Client(mcp) as client:
        listed = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
        prompts = [prompt.name for prompt in (await client.list_prompts()).prompts]
        result = await client.call_tool("answer", {"x": 1})
    assert sdk_adapter.registered_tool_schemas(mcp) == listed
    assert sdk_adapter.registered_prompt_names(mcp) == prompts == ["hello"]
    stamp = sdk_adapter.server_info_stamp(mcp)
    assert stamp and (result.meta or {})["io.modelcontextprotocol/serverInfo"] == stamp


def test_the_sdk_caches_the_output_schema_so_publishing_must_drop_the_cached_value() -> None:
    # The reason publish_tool_schemas pops the cached value: if the SDK stops caching, revisit it.
    assert isinstance(inspect.getattr_static(Tool, "output_schema"), functools.cached_property)
    tool = sdk_adapter.registered_tool(make_server(), "answer")
    assert tool is not None and tool.fn_metadata.output_model is Answer


async def test_published_schemas_are_what_clients_list_even_after_a_first_listing() -> None:
    mcp = make_server()
    async with Client(mcp) as client:
        before = {t.name: t for t in (await client.list_tools()).tools}["answer"]
        assert before.output_schema is not None and "note" in before.output_schema["properties"]
        tool = sdk_adapter.registered_tool(mcp, "answer")
        assert tool is not None
        new_input = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
        new_output = {"type": "object", "properties": {"value": {"type": "integer"}}, "required": ["value"]}
        sdk_adapter.publish_tool_schemas(
            tool, input_schema=new_input, output_schema=new_output, skip_output_check=True
        )
        after = {t.name: t for t in (await client.list_tools()).tools}["answer"]
        assert after.input_schema == new_input
        assert after.output_schema == new_output
        assert tool.fn_metadata.output_model is None  # the SDK no longer re-checks results


@pytest.mark.parametrize("era", ["legacy", "auto"])
async def test_announcing_tool_list_changes_sets_the_capability_in_every_era(era: str) -> None:
    mcp = make_server()
    if era == "legacy":  # the 2026-07-28 era declares it by itself
        async with Client(mcp, mode=era) as client:  # type: ignore[arg-type]
            tools = client.server_capabilities.tools
            assert tools is not None and not tools.list_changed
    sdk_adapter.announce_tool_list_changes(mcp)
    async with Client(mcp, mode=era) as client:  # type: ignore[arg-type]
        tools = client.server_capabilities.tools
        assert tools is not None and tools.list_changed is True


async def test_a_handshake_era_request_reaches_its_connection_which_can_notify_and_knows_when_it_closes() -> (
    None
):
    mcp = make_server()
    seen: list[Any] = []

    async def who(ctx: Context[Any, Any]) -> str:
        seen.append(sdk_adapter.connection_of(ctx.session))
        return "ok"

    mcp.add_tool(who, name="who")
    async with Client(mcp, mode="legacy") as client:
        await client.call_tool("who", {})
        await client.call_tool("who", {})
    connection = seen[0]
    assert connection is not None and seen[1] is connection  # one object per connection, not per request
    assert callable(connection.send_tool_list_changed)
    assert callable(connection.send_resource_updated)
    assert hasattr(connection.exit_stack, "callback")
    assert isinstance(connection.protocol_version, str)
    assert sdk_adapter.connection_of(object()) is None


async def test_a_request_handler_added_through_the_adapter_serves_resources_subscribe() -> None:
    mcp = make_server()
    got: list[str] = []

    async def on_subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        got.append(params.uri)
        return EmptyResult()

    sdk_adapter.add_request_handler(mcp, "resources/subscribe", SubscribeRequestParams, on_subscribe)
    async with Client(mcp, mode="legacy") as client:
        with pytest.warns(MCPDeprecationWarning):  # the verb is gone at 2026-07-28, valid for legacy
            await client.subscribe_resource("klink://x")
    assert got == ["klink://x"]


def test_the_bus_mcpserver_was_built_with_is_found() -> None:
    bus = InMemorySubscriptionBus()
    mcp: MCPServer[Any] = MCPServer("bus", subscriptions=bus)
    assert sdk_adapter.subscription_bus_of(mcp) is bus
    assert sdk_adapter.subscription_bus_of(MCPServer("own")) is not None


async def test_the_server_runs_on_stream_pairs_made_by_the_adapter() -> None:
    import mcp_types as types

    mcp = make_server()
    read_send, read_receive = sdk_adapter.inbound_stream_pair()
    write_send, write_receive = sdk_adapter.outbound_stream_pair()
    request = types.JSONRPCRequest(
        jsonrpc="2.0",
        id=1,
        method="initialize",
        params={
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    )
    async with read_send, read_receive, write_send, write_receive, anyio.create_task_group() as tg:
        tg.start_soon(sdk_adapter.run_on_streams, mcp, read_receive, write_send)
        with anyio.fail_after(10):
            await read_send.send(SessionMessage(message=request))
            answer = await write_receive.receive()
        assert isinstance(answer, SessionMessage)
        assert getattr(answer.message, "id", None) == 1
        assert "result" in answer.message.model_dump()
        tg.cancel_scope.cancel()


def test_no_module_but_the_adapter_reaches_into_private_sdk_parts() -> None:
    import re
    from pathlib import Path

    import klink_mcp

    private = re.compile(
        r"\._tool_manager\b|\._lowlevel_server\b|[\"'.]_connection\b|mcp\.shared\._context_streams"
        r"|\bfn_metadata\b|[\"'.]_subscriptions\b"
    )
    package = Path(klink_mcp.__file__).parent
    offenders = [
        f"{path.relative_to(package)}:{n}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "sdk_adapter.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == []
    assert private.search((package / "sdk_adapter.py").read_text(encoding="utf-8"))  # the pattern does match
