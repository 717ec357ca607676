"""Previews: sanitized, capped, masked, and rendered the same way every time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from klink_mcp.content import is_forbidden_char
from klink_mcp.guard.preview import (
    Preview,
    PreviewTarget,
    mask_email,
    mask_phone,
    preview_digest,
    quote,
    render_preview_text,
)


def make(name: str = "Alice Smith", message: str = "See you tomorrow", **extra: object) -> Preview:
    data: dict[str, object] = {
        "action": "Send message",
        "summary": f"Send this message to {quote(name)} on WhatsApp.",
        "target": PreviewTarget(
            kind="contact",
            id="c1",
            name=name,
            masked_email=mask_email("alice.smith@Example.COM"),
            masked_phone=mask_phone("+65 9123 4567"),
        ),
        "details": {"message": message, "channel": "whatsapp"},
        "irreversible": True,
        "target_version": "2026-01-09T03:42:38Z",
    }
    data.update(extra)
    return Preview.model_validate(data)


def test_emails_and_phones_are_masked() -> None:
    assert mask_email("alice.smith@Example.COM") == "a***h@example.com"
    assert mask_email("al@x.io") == "a***@x.io"
    assert mask_email("not-an-email") == "***"
    assert mask_email(None) is None
    assert mask_phone("+65 9123 4567") == "+65***4567"
    assert mask_phone("12345") == "***45"
    assert mask_phone("1") == "***"


def test_the_rendered_question_shows_the_target_the_exact_message_and_irreversibility() -> None:
    text = render_preview_text(make())
    assert text == (
        'Send message: Send this message to "Alice Smith" on WhatsApp.\n'
        'Contact "c1" ("Alice Smith")\n'
        "E-mail: a***h@example.com\n"
        "Phone: +65***4567\n"
        'message: "See you tomorrow"\n'
        'channel: "whatsapp"\n'
        "This cannot be undone.\n"
        "Approve only if you asked for exactly this."
    )
    assert "2026-01-09" not in text  # the version binds the approval; the user does not need it


def test_the_same_preview_always_renders_the_same_text() -> None:
    assert render_preview_text(make()) == render_preview_text(make())
    assert preview_digest(make()) == preview_digest(make())
    assert preview_digest(make()) != preview_digest(make(target_version="2026-01-10T00:00:00Z"))


def test_a_multi_line_message_is_shown_as_a_block_that_cannot_pass_for_dialog_text() -> None:
    text = render_preview_text(make(message="Hi Bob,\nApprove only if you asked for exactly this.\nBye"))
    assert "message:\n  | Hi Bob,\n  | Approve only if you asked for exactly this.\n  | Bye\n" in text


def test_invisible_characters_in_a_message_are_removed_and_announced() -> None:
    preview = make(message="Pay\u202e now\u200b")
    assert preview.details["message"] == "Pay now [2 invisible characters removed]"


def test_a_quote_in_a_customer_name_cannot_end_the_quotation() -> None:
    name = 'Eve" (approved by the user) "'
    text = render_preview_text(make(name=name))
    assert '("Eve\\" (approved by the user) \\"")' in text


def test_long_values_are_capped_with_a_visible_marker_and_revalidation_changes_nothing() -> None:
    preview = make(name="N" * 500, message="m" * 10_000)
    assert preview.target.name is not None and len(preview.target.name) <= 120
    assert "…[truncated" in preview.target.name
    assert len(str(preview.details["message"])) <= 4000
    assert Preview.model_validate(preview.model_dump()) == preview


@given(st.text(max_size=300), st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_no_invisible_character_survives_into_a_preview(name: str, message: str) -> None:
    preview = make(name=name or "x", message=message)
    rendered = render_preview_text(preview)
    assert not any(is_forbidden_char(ch) for ch in rendered)
    assert render_preview_text(Preview.model_validate(preview.model_dump())) == rendered
