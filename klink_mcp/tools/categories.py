"""Category tools: the tenant's (up to 3-level) ticket category tree."""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from pydantic import BaseModel

from klink_mcp.tools._common import ServerState, register_tool
from klink_mcp.tools.views import CategoryNode, category_node


class CategoryTree(BaseModel):
    """The category tree: top-level categories with their children."""

    items: list[CategoryNode]
    total: int


def register(mcp: MCPServer[Any], state: ServerState) -> None:
    async def list_categories() -> CategoryTree:
        roots = [category_node(c) for c in await state.client.list_categories()]
        return CategoryTree(items=roots, total=_count(roots))

    register_tool(
        mcp,
        list_categories,
        name="list_categories",
        title="List categories",
        description="The tenant's category tree (id, value, children), used to classify tickets.",
    )


def _count(nodes: list[CategoryNode]) -> int:
    return sum(1 + _count(n.children) for n in nodes)
