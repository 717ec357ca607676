"""Tag tools: the tenant's tag vocabulary (names and ids)."""

from __future__ import annotations

from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.tools.results import ListResult
from klink_mcp.tools.spec import ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import TagView, tag_view


async def list_tags(state: ServerState) -> ListResult[TagView]:
    tags = await state.client.list_tags()
    return ListResult[TagView].whole([tag_view(t) for t in tags])


LIST_TAGS = ToolSpec(
    name="list_tags",
    title="List tags",
    description="Every tag of the tenant with its id and name. Contact tags are set by NAME "
    "(update_contact_tags); tickets take tag ids (create_ticket/update_ticket).",
    toolset="tags",
    effects=ToolPolicy(Risk.READ, idempotent=True),
    output=ListResult[TagView],
    handler=list_tags,
)

SPECS: tuple[ToolSpec, ...] = (LIST_TAGS,)
