"""Channel tools: the tenant's messaging channels (WhatsApp, Messenger, LINE, e-mail...)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import InputRequiredResult
from pydantic import Field

from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.tools import previews
from klink_mcp.tools.guarded import guarded_outcome, run_guarded
from klink_mcp.tools.results import ListResult, WriteOutcome
from klink_mcp.tools.spec import FINDS_CHANNELS, ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import ChannelView, channel_view

ChannelType = Literal["whatsapp", "messenger", "line", "email", "instagram", "telegram", "webchat", "custom"]


class ChannelOutcome(WriteOutcome):
    channel: ChannelView | None = None


async def list_channels(state: ServerState) -> ListResult[ChannelView]:
    channels = await state.client.list_channels()
    return ListResult[ChannelView].whole([channel_view(c) for c in channels])


async def create_channel(
    state: ServerState,
    ctx: Context[Any, Any],
    name: Annotated[str, Field(min_length=1, max_length=100, description="Display name of the channel.")],
    type: Annotated[ChannelType, Field(description="Channel type.")],
    confirmation_token: Annotated[
        str | None,
        Field(max_length=2048, description="Only when a previous call asked for confirmation."),
    ] = None,
) -> ChannelOutcome | InputRequiredResult:
    body = {"name": name.strip(), "type": type}

    async def execute() -> ChannelView:
        return channel_view(await state.client.create_channel(name=body["name"], type=type))

    ran = await run_guarded(
        state,
        ctx,
        tool="create_channel",
        args=body,
        confirmation_token=confirmation_token,
        load_preview=lambda: previews.generic(
            "Create channel", f"Create channel {name!r}", "channel", None, body
        ),
        execute=execute,
        target_ids={},
    )
    return guarded_outcome(ChannelOutcome, "channel", ran)


LIST_CHANNELS = ToolSpec(
    name="list_channels",
    title="List channels",
    description="The tenant's channels (id, name, type) through which contacts are reached.",
    toolset="channels",
    effects=ToolPolicy(Risk.READ, idempotent=True),
    output=ListResult[ChannelView],
    handler=list_channels,
    hints=FINDS_CHANNELS,
)
CREATE_CHANNEL = ToolSpec(
    name="create_channel",
    title="Create a channel",
    description="Create a channel record in K-LINK (an admin action; connecting it to a provider is done "
    "in the dashboard). Check list_channels first.",
    toolset="channels",
    effects=ToolPolicy(Risk.WRITE, idempotent=False),
    output=ChannelOutcome,
    handler=create_channel,
    hints=FINDS_CHANNELS,
)

SPECS: tuple[ToolSpec, ...] = (LIST_CHANNELS, CREATE_CHANNEL)
