"""The one fenced module that reaches into private parts of the `mcp` SDK (2.3).

Everything else in klink-mcp uses the SDK's public surface. Each function here touches one private
part, says why the public API cannot do it, and is pinned by a test in `tests/test_sdk_adapter.py`
that fails when the SDK changes that part (so an SDK upgrade breaks loudly here, not silently in a
tool). When the SDK grows a public way, replace the function body and keep its name.

This module must not know about K-LINK, the guard or the tools; it only adapts the SDK.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.server.lowlevel.server import NotificationOptions

# Private module: the SDK's own stdio/HTTP transports build their stream pairs with it, and
# `Server.run()` expects exactly these stream types (they carry the request context across tasks).
from mcp.shared._context_streams import ContextReceiveStream, ContextSendStream, create_context_streams
from mcp.shared.message import SessionMessage

if TYPE_CHECKING:
    from mcp.server import MCPServer
    from mcp.server.mcpserver.tools.base import Tool

__all__ = [
    "ContextReceiveStream",
    "ContextSendStream",
    "add_request_handler",
    "announce_tool_list_changes",
    "connection_of",
    "inbound_stream_pair",
    "outbound_stream_pair",
    "publish_tool_schemas",
    "registered_prompt_names",
    "registered_tool",
    "registered_tool_names",
    "registered_tool_schemas",
    "run_on_streams",
    "server_info_stamp",
    "subscription_bus_of",
]


def inbound_stream_pair() -> tuple[
    ContextSendStream[SessionMessage | Exception], ContextReceiveStream[SessionMessage | Exception]
]:
    """An unbuffered stream pair for messages read from a transport (what `Server.run()` reads).

    Why private: the SDK's transports build their pairs with `mcp.shared._context_streams`, whose
    streams carry the request context across tasks; `Server.run()` expects exactly these.
    """
    return create_context_streams[SessionMessage | Exception](0)


def outbound_stream_pair() -> tuple[ContextSendStream[SessionMessage], ContextReceiveStream[SessionMessage]]:
    """An unbuffered stream pair for messages the server writes to a transport (see `inbound_stream_pair`)."""
    return create_context_streams[SessionMessage](0)


def registered_tool(mcp: MCPServer[Any], name: str) -> Tool | None:
    """The SDK's registration record of tool `name`, or None.

    Why private: MCPServer has `add_tool`/`remove_tool` but no public getter, and the published
    schemas live on the record (see `publish_tool_schemas`).
    """
    return mcp._tool_manager.get_tool(name)


def registered_tool_names(mcp: MCPServer[Any]) -> list[str]:
    """Names of the registered tools, in registration order (public `list_tools()` is async)."""
    return [tool.name for tool in mcp._tool_manager.list_tools()]


def registered_tool_schemas(mcp: MCPServer[Any]) -> dict[str, dict[str, Any]]:
    """Each registered tool's published input schema, by name (what `tools/list` serves).

    Why private: the strict-arguments middleware checks a call against the published schema before
    the SDK validates it, on every call; public `list_tools()` is async and rebuilds every tool.
    """
    return {tool.name: tool.parameters for tool in mcp._tool_manager.list_tools()}


def registered_prompt_names(mcp: MCPServer[Any]) -> list[str]:
    """Names of the registered prompts (public `list_prompts()` is async and builds every prompt)."""
    return [prompt.name for prompt in mcp._prompt_manager.list_prompts()]


def server_info_stamp(mcp: MCPServer[Any]) -> dict[str, Any]:
    """The `serverInfo` stamp the SDK puts in every 2026-era result's `_meta`.

    Why private: a middleware that answers a call itself (a refused argument) must stamp its result
    as the SDK's runner would; the stamp lives on the low-level server.
    """
    stamp: dict[str, Any] = mcp._lowlevel_server.server_info_stamp
    return stamp


def publish_tool_schemas(
    tool: Tool, *, input_schema: dict[str, Any], output_schema: dict[str, Any] | None, skip_output_check: bool
) -> None:
    """Publish compiled (slimmed) input/output schemas for a registered tool.

    Why private: `add_tool` derives the schemas from the function signature and offers no way to
    publish others. `Tool.output_schema` is a `functools.cached_property` over
    `fn_metadata.output_schema` in mcp 2.3: an edit after the first listing would silently do
    nothing, so the cached value is dropped here as well. `skip_output_check` drops the SDK's
    second validation of every result (`fn_metadata.output_model`) for tools whose results are
    serialized from the very model the schema came from.
    """
    tool.parameters = input_schema
    tool.fn_metadata.output_schema = output_schema
    tool.__dict__.pop("output_schema", None)  # the cached_property's stored value
    if skip_output_check:
        tool.fn_metadata.output_model = None


def announce_tool_list_changes(mcp: MCPServer[Any]) -> None:
    """Declare `tools.listChanged` to handshake-era clients: our tool list changes with the tenant's forms.

    Why private: MCPServer builds its initialization options without notification options in
    several places (stdio, Streamable HTTP, the in-process runner) and takes none from the caller,
    so the default is set once on the low-level server's `create_initialization_options`.
    """
    lowlevel = mcp._lowlevel_server
    original = lowlevel.create_initialization_options

    def with_tool_list_changes(
        notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        return original(notification_options or NotificationOptions(tools_changed=True), *args, **kwargs)

    lowlevel.create_initialization_options = with_tool_list_changes  # type: ignore[method-assign]


def connection_of(session: Any) -> Any | None:
    """The per-connection object behind a request's session proxy (None when there is none).

    Why private: mcp 2.x builds a fresh session proxy per request, so only the connection can key
    per-connection state (subscriptions, list-changed notices); mcp 2.3 says "a public way to reach it
    is planned" but has none yet.
    """
    return getattr(session, "_connection", None)


def add_request_handler(
    mcp: MCPServer[Any], method: str, params_type: type[Any], handler: Callable[[Any, Any], Awaitable[Any]]
) -> None:
    """Serve a request method MCPServer has no decorator for (e.g. `resources/subscribe`).

    Why private: the handler registry is on the low-level server, which MCPServer keeps private.
    """
    mcp._lowlevel_server.add_request_handler(method, params_type, handler)


def subscription_bus_of(mcp: MCPServer[Any]) -> Any | None:
    """The SubscriptionBus MCPServer built for itself when none was passed (None if not found).

    Why private: MCPServer keeps its bus private; the SDK docs say to construct the bus yourself to
    publish from outside a request, which `build_server` does. This is the fallback for other servers.
    """
    return getattr(mcp, "_subscriptions", None)


async def run_on_streams(mcp: MCPServer[Any], read_stream: Any, write_stream: Any) -> None:
    """Run `mcp` on one (read, write) stream pair, as `MCPServer.run_stdio_async()` does on the SDK's own.

    Why private: MCPServer runs only on transports it creates itself; serving our own stdio streams
    needs the low-level server's `run` with its initialization options.
    """
    lowlevel = mcp._lowlevel_server
    await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
