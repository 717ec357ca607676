"""What the user is asked to approve: a `Preview` of one guarded action, built by the server.

The tool layer builds a `Preview` from K-LINK data (the contact's name and masked contact details,
the number of open tickets, the exact message text and channel of a send) before any confirmation.
Every string in it is sanitized (`klink_mcp.content.sanitize_text`) and length-capped by the model
itself, so a preview can never carry invisible or bidi characters into an approval dialog; a detail
value that had invisible characters says so ("[3 invisible characters removed]", counted by
`klink_mcp.content.clean_outgoing_text`, the function that cleans text before it is sent) because the
text the user sees must not differ silently from the text that is sent. A value longer than its cap
ends with an explicit "…[truncated N chars]" marker, never a silent cut; the approval page shows the
arguments in full. `render_preview_text` quotes every
customer-derived value (JSON string quoting, so a quote inside a name cannot end it) and is
deterministic for the same preview: the SDK pins elicitation answers to the exact question text.

`target_version` (e.g. the target's `updatedAt`) is what confirmation binds to; it is kept in the
model (harmless to show) but left out of the rendered text.

This module must not import the tool layer or the K-LINK client and must not do I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from klink_mcp.content import clean_outgoing_text, sanitize_text
from klink_mcp.guard.canonical import canonical_json

__all__ = [
    "Preview",
    "PreviewTarget",
    "mask_email",
    "mask_phone",
    "preview_digest",
    "quote",
    "render_preview_text",
]

_TRUNCATION_ROOM = 32  # "…[truncated N chars]" never exceeds this
_MAX_DETAILS = 30
_NOTE = re.compile(r" \[\d+ invisible characters? removed\]$")


def _cap(value: str, limit: int) -> str:
    """Sanitize and cap so that the result, marker included, is at most `limit` characters.

    Idempotent: a capped value passes through unchanged (models may be re-validated).
    """
    text = sanitize_text(value)
    if len(text) <= limit:
        return text
    return sanitize_text(text, max_len=max(limit - _TRUNCATION_ROOM, 0))


def _one_line(value: str, limit: int) -> str:
    return _cap(re.sub(r"\s*\n\s*|\t", " ", sanitize_text(value)).strip(), limit)


def _detail_text(value: str, limit: int = 4000) -> str:
    if _NOTE.search(value) and len(value) <= limit:  # already annotated (models may be re-validated)
        return _cap(value, limit)
    note = clean_outgoing_text(value).note
    suffix = f" [{note}]" if note else ""
    return _cap(value, limit - len(suffix)) + suffix


def _capper(limit: int) -> AfterValidator:
    return AfterValidator(lambda v: _one_line(v, limit))


Line40 = Annotated[str, _capper(40)]
Line80 = Annotated[str, _capper(80)]
Line120 = Annotated[str, _capper(120)]
Line200 = Annotated[str, _capper(200)]


def mask_email(email: str | None) -> str | None:
    """``alice.smith@example.com`` -> ``a***h@example.com``; something without an ``@`` -> ``***``."""
    if email is None:
        return None
    clean = _one_line(email, 254)
    local, at, domain = clean.rpartition("@")
    if not at or not local or not domain:
        return "***"
    shown = local[0] + "***" + (local[-1] if len(local) > 3 else "")
    return f"{shown}@{domain.lower()}"


def mask_phone(phone: str | None) -> str | None:
    """``+65 9123 4567`` -> ``+65***4567``: the country-ish prefix and the last four digits."""
    if phone is None:
        return None
    clean = _one_line(phone, 64)
    digits = "".join(ch for ch in clean if ch.isdigit())
    plus = "+" if clean.lstrip().startswith("+") else ""
    if len(digits) >= 8:
        return f"{plus}{digits[:2]}***{digits[-4:]}"
    if len(digits) >= 3:
        return f"{plus}***{digits[-2:]}"
    return "***"


def quote(value: str, max_len: int = 120) -> str:
    """A customer-derived string made safe to embed in a sentence: sanitized, one line, capped, in quotes.

    JSON string quoting is used, so an inner quote or backslash is escaped and cannot end the quote.
    """
    return json.dumps(_one_line(value, max_len), ensure_ascii=False)


class PreviewTarget(BaseModel):
    """The record the action touches, as the user should recognise it."""

    model_config = ConfigDict(extra="forbid")

    kind: Line40 = Field(description='What the target is, e.g. "contact" or "ticket".')
    id: Line200 = Field(description="The K-LINK id of the target.")
    name: Line120 | None = Field(default=None, description="Display name (customer-written, sanitized).")
    masked_email: Line200 | None = Field(default=None, description="Primary e-mail, masked.")
    masked_phone: Line80 | None = Field(default=None, description="Primary phone, masked.")


class Preview(BaseModel):
    """One guarded action as the user will be asked to approve it."""

    model_config = ConfigDict(extra="forbid")

    action: Line80 = Field(description='What will happen, e.g. "Delete contact".')
    summary: Annotated[str, _capper(400)] = Field(description="One sentence describing the action.")
    target: PreviewTarget
    details: dict[str, str | int] = Field(
        default_factory=dict,
        description="Facts the user needs: the exact message text and channel of a send, "
        "the number of open tickets of a contact to delete, the tags to remove.",
    )
    irreversible: bool = Field(description="True when the action cannot be undone.")
    target_version: Line200 | None = Field(
        default=None, description="The target's version (e.g. updatedAt) that a confirmation binds to."
    )

    @field_validator("details")
    @classmethod
    def _clean_details(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        if len(value) > _MAX_DETAILS:
            raise ValueError(f"a preview has at most {_MAX_DETAILS} details")
        return {
            _one_line(key, 60): (_detail_text(item) if isinstance(item, str) else item)
            for key, item in value.items()
        }


def preview_digest(preview: Preview) -> str:
    """Hex SHA-256 of everything in the preview (the user saw exactly this)."""
    return hashlib.sha256(canonical_json(preview.model_dump(mode="json")).encode("utf-8")).hexdigest()


def _render_detail(key: str, value: str | int) -> str:
    if not isinstance(value, str):
        return f"{key}: {json.dumps(value)}"
    if "\n" not in value:
        return f"{key}: {json.dumps(value, ensure_ascii=False)}"
    # A multi-line text (a message body) reads best as a block; the "| " prefix on every line keeps
    # it visibly inside the value, so a line of it cannot pass for part of the dialog.
    return "\n".join([f"{key}:", *(f"  | {line}" for line in value.split("\n"))])


def render_preview_text(preview: Preview) -> str:
    """The question shown to the user (elicitation message). Same preview -> same text, always."""
    target = preview.target
    kind = target.kind[:1].upper() + target.kind[1:]
    lines = [f"{preview.action}: {preview.summary}"]
    who = f"{kind} {json.dumps(target.id, ensure_ascii=False)}"
    if target.name is not None:
        who += f" ({json.dumps(target.name, ensure_ascii=False)})"
    lines.append(who)
    if target.masked_email is not None:
        lines.append(f"E-mail: {target.masked_email}")
    if target.masked_phone is not None:
        lines.append(f"Phone: {target.masked_phone}")
    lines.extend(_render_detail(key, value) for key, value in preview.details.items())
    lines.append("This cannot be undone." if preview.irreversible else "This changes data in K-LINK.")
    lines.append("Approve only if you asked for exactly this.")
    return "\n".join(lines)
