"""What tools return: the list envelope, the write outcome and the compact JSON result.

Every list returns `{items, page, page_size, total, has_more}` (`ListResult`) so truncation is never
silent; every write returns a `WriteOutcome` whose `status` says whether it ran. Nothing here talks
to K-LINK.
"""

from __future__ import annotations

import json
from typing import Any, Generic, Literal, TypeVar

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, Field

from klink_mcp.api.models import FormField, Page
from klink_mcp.guard.preview import Preview
from klink_mcp.tools.views import CompactModel, FormFieldView, form_field_view

T = TypeVar("T")


class ListResult(CompactModel, Generic[T]):
    """One page of a list. `has_more` says when more pages exist, so truncation is never silent."""

    items: list[T]
    page: int = Field(description="1-based page number of this result.")
    page_size: int = Field(description="Requested page size.")
    total: int | None = Field(default=None, description="Total matching items upstream, when known.")
    has_more: bool = Field(description="True when later pages exist: call again with page+1.")

    @classmethod
    def whole(cls, items: list[T]) -> ListResult[T]:
        """A list K-LINK returns in one piece (no paging upstream)."""
        return cls(items=items, page=1, page_size=max(len(items), 1), total=len(items), has_more=False)

    @classmethod
    def from_page(cls, page: Page[Any], items: list[T], page_size: int) -> ListResult[T]:
        """Views of one upstream `Page`, keeping its paging facts."""
        return cls(items=items, page=page.page, page_size=page_size, total=page.total, has_more=page.has_more)


class WriteOutcome(CompactModel):
    """What every write tool returns: `status` says whether the action ran.

    - `done`: it ran once. For a text sent to a customer, `sent_text` is exactly what was sent (the
      person may have edited it on the approval page: `text_edited`; `removed_invisible` counts the
      invisible characters taken out), so the assistant never assumes its own draft went out.
    - `approval_required`: nothing changed; a person must approve on the approval page. Show the user
      `approval_url` and ask them to open it, check the action and press Approve or Decline; wait until
      they say they decided, then call the same tool again with exactly the same arguments: it runs
      once if they approved. `approval_id` names the approval; it approves nothing, and no argument the
      assistant passes can approve it. Never open or fetch the link yourself.
    - `confirmation_required` (only with `KLINK_CONFIRM=token`, headless automation): nothing changed;
      show `preview` to the user and, if they approve, call again with the same arguments plus
      `confirmation_token`.
    - `cancelled`: the person declined, did not answer, or the approval expired; nothing changed.
    """

    status: Literal["done", "approval_required", "confirmation_required", "cancelled"]
    preview: Preview | None = None
    approval_url: str | None = None
    approval_id: str | None = None
    confirmation_token: str | None = None
    expires_in_s: int | None = None
    reason: str | None = None
    next_step: str | None = None
    sent_text: str | None = None
    text_edited: bool | None = None
    removed_invisible: int | None = None


def compact_result(model: BaseModel) -> CallToolResult:
    """The result with its text as compact JSON: what the model reads, without indentation bytes.

    The SDK would indent the text (2 spaces a level); on a page of tickets that is ~20% of what a model
    reads. Nulls are left out everywhere (the published output schemas have no null branches), and
    `structuredContent` carries the same data for the client application. pydantic writes the JSON
    (in Rust); the dict is read back from it, which is cheaper than dumping to Python objects.
    """
    text = model.model_dump_json(by_alias=True, exclude_none=True)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=json.loads(text))


def form_field_list(fields: list[FormField], *, custom_only: bool) -> ListResult[FormFieldView]:
    """A form's field definitions as views (archived ones left out)."""
    views = [form_field_view(f) for f in fields if not f.is_archived]
    if custom_only:
        views = [v for v in views if v.custom]
    return ListResult[FormFieldView].whole(views)
