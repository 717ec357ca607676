"""Messaging: send a text message to a contact on their channel (guarded: a real customer reads it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import InputRequiredResult
from pydantic import Field

from klink_mcp.api.errors import ErrorCode
from klink_mcp.content import clean_outgoing_text
from klink_mcp.guard.confirm import Approval
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
    # The text is kept as given for the approval (the page shows its invisible characters made
    # visible); what is sent is the approved text, cleaned of them: never this argument as such.
    cleaned = clean_outgoing_text(message)
    if not cleaned.text.strip():
        raise ToolFailure(
            ErrorCode.VALIDATION,
            "message: the text is empty once invisible characters are removed.",
            fields=["message"],
        )
    args = {"contact_id": contact_id, "message": message, "message_type": message_type}

    async def execute(approval: Approval) -> SentMessageView:
        # The exact text the person approved (edited on the approval page, or the cleaned argument).
        text = approval.approved_text if approval.approved_text is not None else cleaned.text
        sent = await state.client.send_message(contact_id=contact_id, message=text, message_type=message_type)
        return SentMessageView(id=sent.id, contact_id=contact_id, created_at=sent.created_at)

    ran = await run_guarded(
        state,
        ctx,
        tool="send_message",
        args=args,
        confirmation_token=confirmation_token,
        load_preview=lambda: previews.send_message(state, contact_id, cleaned.text, message_type),
        execute_approved=execute,
        target_ids={"contact_id": contact_id},
        text_field="message",
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
