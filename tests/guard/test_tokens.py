"""Confirmation tokens: bound to tool, arguments and target; single use; expiring; unforgeable."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from guard_harness import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from klink_mcp.guard.canonical import args_digest
from klink_mcp.guard.tokens import MAX_TTL_S, ConfirmationTokens, TokenRejected

SECRET = b"0123456789abcdef0123456789abcdef-tokens"
ARGS = {"contact_id": "c1", "message": "héllo 👋"}


def reason_of(
    tokens: ConfirmationTokens,
    token: str,
    tool: str = "send_message",
    args: Mapping[str, object] = ARGS,
    version: str | None = "v1",
) -> str:
    with pytest.raises(TokenRejected) as exc:
        tokens.verify_and_consume(token, tool, args, version)
    return exc.value.reason


def test_a_token_verifies_once_for_its_tool_arguments_and_target() -> None:
    tokens = ConfirmationTokens(SECRET, clock=FakeClock())
    token = tokens.mint("send_message", ARGS, "v1").token
    tokens.verify_and_consume(token, "send_message", ARGS, "v1")
    assert reason_of(tokens, token) == "replayed"


def test_the_confirmation_token_argument_and_none_values_do_not_change_the_binding() -> None:
    tokens = ConfirmationTokens(SECRET, clock=FakeClock())
    token = tokens.mint("send_message", {**ARGS, "channel": None}, "v1").token
    tokens.verify_and_consume(token, "send_message", {"message": ARGS["message"], "contact_id": "c1",
                                                       "confirmation_token": token}, "v1")  # fmt: skip
    assert args_digest({"b": 1, "a": None}) == args_digest({"b": 1})


@pytest.mark.parametrize(
    ("tool", "args", "version", "reason"),
    [
        ("delete_contact", ARGS, "v1", "wrong_tool"),
        ("send_message", {**ARGS, "contact_id": "c2"}, "v1", "wrong_arguments"),
        ("send_message", {**ARGS, "message": "hello"}, "v1", "wrong_arguments"),
        ("send_message", ARGS, "v2", "target_changed"),
    ],
)
def test_a_token_for_anything_else_is_refused_and_stays_unused(
    tool: str, args: dict[str, object], version: str, reason: str
) -> None:
    tokens = ConfirmationTokens(SECRET, clock=FakeClock())
    token = tokens.mint("send_message", ARGS, "v1").token
    assert reason_of(tokens, token, tool, args, version) == reason
    tokens.verify_and_consume(token, "send_message", ARGS, "v1")  # a refusal consumed nothing


def test_a_token_expires_after_its_ttl() -> None:
    clock = FakeClock()
    tokens = ConfirmationTokens(SECRET, ttl_s=30, clock=clock)
    minted = tokens.mint("send_message", ARGS, "v1")
    assert minted.expires_at == clock.now + 30
    clock.advance(30)
    assert reason_of(tokens, minted.token) == "expired"


def test_the_ttl_is_capped_at_five_minutes() -> None:
    assert ConfirmationTokens(SECRET, ttl_s=3600).ttl_s == MAX_TTL_S == 300


def test_consumed_nonces_are_forgotten_once_their_token_expired() -> None:
    clock = FakeClock()
    tokens = ConfirmationTokens(SECRET, ttl_s=10, clock=clock)
    for _ in range(5):
        tokens.verify_and_consume(tokens.mint("send_message", ARGS, "v1").token, "send_message", ARGS, "v1")
    assert len(tokens._consumed) == 5
    clock.advance(11)
    tokens.verify_and_consume(tokens.mint("send_message", ARGS, "v1").token, "send_message", ARGS, "v1")
    assert len(tokens._consumed) == 1


def test_another_secret_or_another_purpose_never_verifies() -> None:
    clock = FakeClock()
    ours = ConfirmationTokens(SECRET, clock=clock)
    theirs = ConfirmationTokens(b"x" * 32, clock=clock)
    state_tokens = ours.derive("elicitation-state")
    assert reason_of(ours, theirs.mint("send_message", ARGS, "v1").token) == "bad_signature"
    assert reason_of(ours, state_tokens.mint("send_message", ARGS, "v1").token) == "bad_signature"
    assert reason_of(state_tokens, ours.mint("send_message", ARGS, "v1").token) == "bad_signature"


def test_a_random_per_process_secret_is_used_when_none_is_given() -> None:
    a, b = ConfirmationTokens(), ConfirmationTokens()
    assert reason_of(a, b.mint("send_message", ARGS, "v1").token) == "bad_signature"


def test_a_short_secret_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ConfirmationTokens(b"short")


def test_the_token_and_its_repr_do_not_reveal_the_secret() -> None:
    tokens = ConfirmationTokens(SECRET)
    minted = tokens.mint("send_message", ARGS, "v1")
    assert SECRET.decode() not in minted.token
    assert minted.token not in repr(minted)
    assert "secret" not in repr(tokens).lower() or SECRET.decode() not in repr(tokens)


def test_check_refuses_junk_without_consuming_a_good_token() -> None:
    tokens = ConfirmationTokens(SECRET, clock=FakeClock())
    token = tokens.mint("send_message", ARGS, "v1").token
    tokens.check(token, "send_message", ARGS)
    tokens.check(token, "send_message", ARGS)
    tokens.verify_and_consume(token, "send_message", ARGS, "v1")
    with pytest.raises(TokenRejected, match="replayed"):
        tokens.check(token, "send_message", ARGS)


@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_is_never_accepted_as_a_token(text: str) -> None:
    tokens = ConfirmationTokens(SECRET)
    with pytest.raises(TokenRejected) as exc:
        tokens.verify_and_consume(text, "send_message", ARGS, "v1")
    assert exc.value.reason in {"malformed", "bad_signature"}


def test_changing_any_character_of_a_token_breaks_it() -> None:
    tokens = ConfirmationTokens(SECRET)
    token = tokens.mint("send_message", ARGS, "v1").token
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    accepted = []
    for i, original in enumerate(token):
        for replacement in alphabet.replace(original, ""):
            try:
                tokens.check(token[:i] + replacement + token[i + 1 :], "send_message", ARGS)
            except TokenRejected:
                continue
            accepted.append((i, replacement))
    assert accepted == []
