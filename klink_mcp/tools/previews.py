"""Server-built previews of write actions, shown to the human before anything runs.

Each loader fetches the target fresh from K-LINK (so the preview and its `target_version` describe
what is there now) and builds a `klink_mcp.guard.preview.Preview`. Customer-derived values are
sanitized and capped by the Preview model itself, always with a visible marker; nothing here cuts a
value. A preview states every fact its approval binds (the whole preview is digested): what each
field holds before and after, every tag removed (names compared as the tenant compares them,
case-insensitively) and what data the call loses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from klink_mcp.api.models import Contact
from klink_mcp.guard.policy import closing_statuses, update_effects
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
    return await _contact_target_from(contact_id, await state.client.get_contact(contact_id))


async def _contact_target_from(
    contact_id: str, contact: Contact
) -> tuple[PreviewTarget, str | None, ContactDetail]:
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


def _key(name: str) -> str:
    # The tenant compares tag names case-insensitively (str.lower, see klink_mcp/sandbox/tenant.py
    # tags_named); the preview must do the same or "VIP" vs "vip" previews a different effect.
    return name.strip().lower()


def tag_effect(current: list[str], action: str, tags: list[str]) -> tuple[list[str], list[str]]:
    """(removed, after) of a tag change on a record holding `current`, compared as the tenant does.

    `action`: MERGE adds, REMOVE takes off, REPLACE sets exactly `tags`. Names keep the record's
    spelling when a tag already exists.
    """
    wanted = {_key(t) for t in tags}
    held = {_key(t): t for t in current}
    if action == "REPLACE":
        removed = [t for t in current if _key(t) not in wanted]
        after = [held.get(_key(t), t) for t in tags]
    elif action == "REMOVE":
        removed = [t for t in current if _key(t) in wanted]
        after = [t for t in current if _key(t) not in wanted]
    else:
        removed = []
        after = [*current, *(t for t in tags if _key(t) not in held)]
    return sorted(removed, key=_key), sorted(dict.fromkeys(after), key=_key)


def _names(names: list[str]) -> str:
    # Every name, never cut here: the Preview model caps a detail with a visible marker.
    return ", ".join(json.dumps(n, ensure_ascii=False) for n in names) or "(none)"


def _raw_tags(contact: Contact) -> list[str]:
    # The names as K-LINK holds them (the view's are cleaned for display): the effect is computed on
    # what the tenant compares; the Preview model sanitizes what is shown.
    return [t.name for t in contact.tags if t.name]


async def contact_tags(state: ServerState, contact_id: str, action: str, tags: list[str]) -> Preview:
    contact = await state.client.get_contact(contact_id)
    target, version, _ = await _contact_target_from(contact_id, contact)
    removed, after = tag_effect(_raw_tags(contact), action, tags)
    return Preview(
        action=f"{action.title()} contact tags",
        summary=f"{action} tags on {_who(target, contact_id)}: removes {len(removed)} tag(s).",
        target=target,
        details={
            "tags_removed": _names(removed),
            "tags_after": _names(after),
        },
        irreversible=action != "MERGE",
        target_version=version,
    )


def _shown(value: Any) -> str:
    """A value in full, as JSON (so "" and [] are visible as what they are)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _contact_value(contact: Contact, key: str, custom: Mapping[str, Any] | None = None) -> Any:
    """The contact's current value under a K-LINK body key (`emails`, `tags`, `customFields`...)."""
    if key == "emails":
        return [e.email for e in contact.contact_emails if e.email]
    if key == "phones":
        return [p.phone for p in contact.contact_phones if p.phone]
    if key == "tags":
        return [t.name for t in contact.tags if t.name]
    if key == "customFields":
        return {k: contact.custom_fields.get(k) for k in (custom or {})}
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
    return getattr(contact, snake, None)


def contact_change(before: Contact, after: Contact, body: Mapping[str, Any]) -> dict[str, Any]:
    """The before -> after of every body key the update changed (the audit log's before-image)."""
    change: dict[str, Any] = {}
    for key in body:
        custom = body.get("customFields") if key == "customFields" else None
        old = _contact_value(before, key, custom)
        new = _contact_value(after, key, custom)
        if old != new:
            change[key] = {"before": old, "after": new}
    return change


def _field_details(
    body: Mapping[str, Any], before: Callable[[str], Any] | None, masked: AbstractSet[str] = frozenset()
) -> dict[str, str | int]:
    """One detail per field written: "before -> after" (or the new value when the before is unknown)."""
    details: dict[str, str | int] = {}
    for key, value in body.items():
        if key == "tags":
            continue  # stated as tags_removed / tags_after
        if before is None:
            details[key] = _shown(value)
            continue
        old = before(key)
        if key in masked and isinstance(old, list):
            old = [(mask_email if key == "emails" else mask_phone)(v) for v in old]
        details[key] = f"{_shown(old)} -> {_shown(value)}"
    return details


def _fit(details: dict[str, str | int]) -> dict[str, str | int]:
    # A preview holds at most 30 details: fold the tail into one (stated in full, never dropped).
    if len(details) <= 28:
        return details
    items = list(details.items())
    head, tail = dict(items[:27]), items[27:]
    head["more_fields"] = "; ".join(f"{k}: {v}" for k, v in tail)
    return head


def _effects_line(args: Mapping[str, Any]) -> str:
    return "; ".join(update_effects(args)) or "none (no value is cleared, no tag removed)"


async def for_contact(state: ServerState, contact_id: str, action: str, body: dict[str, Any]) -> Preview:
    contact = await state.client.get_contact(contact_id)
    target, version, _ = await _contact_target_from(contact_id, contact)
    details: dict[str, str | int] = {"data_lost": _effects_line(body)}
    if "tags" in body:
        removed, after = tag_effect(_raw_tags(contact), "REPLACE", list(body["tags"]))
        details["tags_removed"] = _names(removed)
        details["tags_after"] = _names(after)
    custom = body.get("customFields")
    details |= _field_details(
        body, lambda key: _contact_value(contact, key, custom), masked={"emails", "phones"}
    )
    return Preview(
        action=action,
        summary=f"{action} {_who(target, contact_id)}: {', '.join(sorted(body)) or 'no fields'}.",
        target=target,
        details=_fit(details),
        irreversible=False,
        target_version=version,
    )


def ticket_tag_edit(current: list[str], add: list[str], remove: list[str]) -> tuple[list[str], list[str]]:
    """(removed, after) of taking `remove` off a ticket holding `current`, then adding `add`.

    Names are compared as the tenant compares them (case-insensitively), keeping the record's spelling.
    """
    removed, kept = tag_effect(current, "REMOVE", remove)
    _, after = tag_effect(kept, "MERGE", add)
    return removed, after


async def for_ticket(
    state: ServerState,
    ticket_id: str,
    action: str,
    body: dict[str, Any],
    current_tags: list[str] | None = None,
) -> Preview:
    """The preview of a ticket update. `current_tags`, when given, are the tags the ticket holds now
    (read fresh from the listing by the caller): the preview then states them, every tag `tags_remove`
    takes off and the tags after, so the approval binds the tag list it was given for.
    """
    details: dict[str, str | int] = {}
    if "status" in body:
        closing = str(body["status"]).strip().lower() in closing_statuses(state.settings)
        details["customer_notified"] = (
            "yes: this status solves or closes the ticket" if closing else "not by this status"
        )
    else:
        details["data_lost"] = _effects_line(body)
    if "tags" in body:
        # K-LINK cannot read one ticket by id, so the tags it holds now are not listed here.
        details["tags_after"] = _names(list(body["tags"]))
        details["tags_removed"] = "every current tag not in tags_after"
    if current_tags is not None and ("tags_add" in body or "tags_remove" in body):
        removed, after = ticket_tag_edit(
            current_tags, list(body.get("tags_add", [])), list(body.get("tags_remove", []))
        )
        details["tags_before"] = _names(sorted(current_tags, key=_key))
        details["tags_removed"] = _names(removed)
        details["tags_after"] = _names(after)
    elif "tags_remove" in body:
        details["tags_removed"] = _names(list(body["tags_remove"]))
    details |= _field_details({k: v for k, v in body.items() if not k.startswith("tags")}, None)
    return Preview(
        action=action,
        summary=f"{action} {ticket_id}: {', '.join(sorted(body)) or 'no fields'}.",
        target=PreviewTarget(kind="ticket", id=ticket_id),
        details=_fit(details),
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
        details=_fit(_field_details(body, None)),
        irreversible=False,
        target_version=None,
    )
