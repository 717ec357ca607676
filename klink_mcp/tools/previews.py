"""Server-built previews of write actions, shown to the human before anything runs.

Each loader fetches the target fresh from K-LINK (so the preview and its `target_version` describe
what is there now) and builds a `klink_mcp.guard.preview.Preview`. Customer-derived values are
sanitized and capped by the Preview model itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from klink_mcp.guard.preview import Preview, PreviewTarget, mask_email, mask_phone, quote
from klink_mcp.tools.views import ContactDetail, contact_detail, plain_name

if TYPE_CHECKING:
    from klink_mcp.tools.state import ServerState

OPEN_STATUSES = {"open", "in progress", "pending"}


def _who(target: PreviewTarget, contact_id: str) -> str:
    return quote(target.name) if target.name else contact_id


async def _contact_target(
    state: ServerState, contact_id: str
) -> tuple[PreviewTarget, str | None, ContactDetail]:
    contact = await state.client.get_contact(contact_id)
    view = contact_detail(contact)
    target = PreviewTarget(
        kind="contact",
        id=contact_id,
        name=plain_name(contact),  # a person reads it on the page: clean, not fenced
        masked_email=mask_email(view.email) if view.email else None,
        masked_phone=mask_phone(view.phone) if view.phone else None,
    )
    return target, contact.updated_at, view


async def delete_contact(state: ServerState, contact_id: str) -> Preview:
    target, version, _ = await _contact_target(state, contact_id)
    page = await state.client.list_contact_tickets(contact_id, page=1, page_size=100)
    open_count = sum(1 for t in page.items if (t.status or "").lower() in OPEN_STATUSES)
    details: dict[str, str | int] = {"open_tickets": open_count}
    if page.has_more:
        details["note"] = "open-ticket count covers the 100 most recent tickets"
    return Preview(
        action="Delete contact",
        summary=f"Delete the contact {_who(target, contact_id)} and their profile. This cannot be undone.",
        target=target,
        details=details,
        irreversible=True,
        target_version=version,
    )


async def send_message(state: ServerState, contact_id: str, message: str, message_type: str) -> Preview:
    target, version, view = await _contact_target(state, contact_id)
    return Preview(
        action="Send message",
        summary=f"Send this message to {_who(target, contact_id)} on {view.channel or 'their channel'}. "
        "The customer receives it immediately; it cannot be unsent.",
        target=target,
        details={"message": message, "channel": view.channel or "unknown", "message_type": message_type},
        irreversible=True,
        target_version=version,
    )


async def contact_tags(state: ServerState, contact_id: str, action: str, tags: list[str]) -> Preview:
    target, version, view = await _contact_target(state, contact_id)
    current = set(view.tags)
    if action == "REPLACE":
        removed = sorted(current - set(tags))
        after = sorted(set(tags))
    elif action == "REMOVE":
        removed = sorted(current & set(tags))
        after = sorted(current - set(tags))
    else:
        removed = []
        after = sorted(current | set(tags))
    return Preview(
        action=f"{action.title()} contact tags",
        summary=f"{action} tags on {_who(target, contact_id)}: removes {len(removed)} tag(s).",
        target=target,
        details={
            "tags_removed": ", ".join(removed) or "(none)",
            "tags_after": ", ".join(after) or "(none)",
        },
        irreversible=action != "MERGE",
        target_version=version,
    )


async def for_contact(state: ServerState, contact_id: str, action: str, body: dict[str, Any]) -> Preview:
    target, version, _ = await _contact_target(state, contact_id)
    return Preview(
        action=action,
        summary=f"{action} {_who(target, contact_id)}: {', '.join(sorted(body)) or 'no fields'}.",
        target=target,
        details={k: str(v)[:200] for k, v in body.items()},
        irreversible=False,
        target_version=version,
    )


async def for_ticket(state: ServerState, ticket_id: str, action: str, body: dict[str, Any]) -> Preview:
    return Preview(
        action=action,
        summary=f"{action} {ticket_id}: {', '.join(sorted(body)) or 'no fields'}.",
        target=PreviewTarget(kind="ticket", id=ticket_id),
        details={k: str(v)[:200] for k, v in body.items()},
        irreversible=False,
        target_version=None,
    )


async def generic(
    action: str, summary: str, kind: str, target_id: str | None, body: dict[str, Any]
) -> Preview:
    return Preview(
        action=action,
        summary=summary,
        target=PreviewTarget(kind=kind, id=target_id or "(new)"),
        details={k: str(v)[:200] for k, v in body.items()},
        irreversible=False,
        target_version=None,
    )
