"""Messaging: send a text message to a contact on their channel (guarded: a real customer reads it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import InputRequiredResult
from pydantic import Field

from klink_mcp.api.errors import ErrorCode
from klink_mcp.content import sanitize_text
from klink_mcp.guard.policy import Risk, ToolPolicy
from klink_mcp.tools import previews
from klink_mcp.tools.errors import ToolFailure
from klink_mcp.tools.guarded import guarded_outcome, run_guarded
from klink_mcp.tools.params import ConfirmationToken, ContactId
from klink_mcp.tools.results import WriteOutcome
from klink_mcp.tools.spec import FINDS_CONTACTS, ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import SentMessageView

MESSAGE_MAX = 4000


class SendMessageOutcome(WriteOutcome):
    sent: SentMessageView | None = None


async def send_message(
    state: ServerState,
    ctx: Context[Any, Any],
    contact_id: ContactId,
    message: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MESSAGE_MAX,
            description="The exact text the customer will receive. Draft it with the user first.",
        ),
    ],
    message_type: Annotated[Literal["text"], Field(description="Only 'text' is supported.")] = "text",
    confirmation_token: ConfirmationToken = None,
) -> SendMessageOutcome | InputRequiredResult:
    # What is sent is exactly what the preview showed: invisible/bidi characters never reach a customer.
    text = sanitize_text(message).strip()
    if not text:
        raise ToolFailure(
            ErrorCode.VALIDATION,
            "message: the text is empty once invisible characters are removed.",
            fields=["message"],
        )
    args = {"contact_id": contact_id, "message": text, "message_type": message_type}

    async def execute() -> SentMessageView:
        sent = await state.client.send_message(contact_id=contact_id, message=text, message_type=message_type)
        return SentMessageView(id=sent.id, contact_id=contact_id, created_at=sent.created_at)

    ran = await run_guarded(
        state,
        ctx,
        tool="send_message",
        args=args,
        confirmation_token=confirmation_token,
        load_preview=lambda: previews.send_message(state, contact_id, text, message_type),
        execute=execute,
        target_ids={"contact_id": contact_id},
    )
    return guarded_outcome(SendMessageOutcome, "sent", ran)


SEND_MESSAGE = ToolSpec(
    name="send_message",
    title="Send a message to a customer (needs the user's confirmation)",
    description="Send a text message to a contact on their channel. A real customer receives it at once "
    "and it cannot be unsent, so the server shows the user the exact text and recipient first.",
    toolset="messages",
    effects=ToolPolicy(Risk.DESTRUCTIVE, idempotent=False, irreversible=True),  # reaches a real customer
    output=SendMessageOutcome,
    handler=send_message,
    # the only id it takes is the recipient's contact id
    hints=FINDS_CONTACTS,
)

SPECS: tuple[ToolSpec, ...] = (SEND_MESSAGE,)
