"""Tag tools: the tenant's tag vocabulary (names and ids)."""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer

from klink_mcp.tools._common import ListResult, ServerState, register_tool
from klink_mcp.tools.views import TagView, tag_view


def register(mcp: MCPServer[Any], state: ServerState) -> None:
    async def list_tags() -> ListResult[TagView]:
        tags = await state.client.list_tags()
        return ListResult[TagView].whole([tag_view(t) for t in tags])

    register_tool(
        mcp,
        list_tags,
        name="list_tags",
        title="List tags",
        description="Every tag of the tenant with its id and name. Contact tags are set by NAME "
        "(update_contact_tags); tickets take tag ids (create_ticket/update_ticket).",
    )
