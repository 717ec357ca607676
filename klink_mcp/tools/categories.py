"""Category tools: the tenant's (up to 3-level) ticket category tree."""

from __future__ import annotations

from pydantic import BaseModel

from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.tools.spec import ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import CategoryNode, category_node


class CategoryTree(BaseModel):
    """The category tree: top-level categories with their children."""

    items: list[CategoryNode]
    total: int


async def list_categories(state: ServerState) -> CategoryTree:
    roots = [category_node(c) for c in await state.client.list_categories()]
    return CategoryTree(items=roots, total=_count(roots))


def _count(nodes: list[CategoryNode]) -> int:
    return sum(1 + _count(n.children) for n in nodes)


LIST_CATEGORIES = ToolSpec(
    name="list_categories",
    title="List categories",
    description="The tenant's category tree (id, value, children), used to classify tickets.",
    toolset="categories",
    effects=ToolPolicy(Risk.READ, idempotent=True),
    output=CategoryTree,
    handler=list_categories,
)

SPECS: tuple[ToolSpec, ...] = (LIST_CATEGORIES,)
