"""The four-eyes rule: approvals of chosen tools come from a different person holding klink:approve."""

from __future__ import annotations

import pytest

from klink_mcp.auth.four_eyes import may_approve
from klink_mcp.auth.oidc import Person
from klink_mcp.auth.principal import Principal
from tests.helpers.server import make_settings

OAUTH = {"oauth_issuer": "https://idp.example.com", "resource_url": "https://mcp.example.com/mcp"}
SETTINGS = make_settings(four_eyes_tools=("delete_contact",), **OAUTH)
ALICE = Person("alice", frozenset({"klink:approve"}), name="Alice", issuer="https://idp")
BOB_NO_APPROVE = Person("bob", frozenset({"klink:read", "klink:delete"}), name="Bob", issuer="https://idp")


@pytest.mark.parametrize(
    ("person", "requester", "tool", "allowed", "why"),
    [
        (None, "bob", "send_message", False, "Sign in"),
        (BOB_NO_APPROVE, "alice", "send_message", False, "klink:approve"),
        (ALICE, "alice", "send_message", True, "holds"),  # not a four-eyes tool: self-approval is fine
        (ALICE, "alice", "delete_contact", False, "your own request"),
        (ALICE, "bob", "delete_contact", True, "not the requester"),
        (ALICE, None, "delete_contact", False, "unknown"),
        (BOB_NO_APPROVE, "alice", "delete_contact", False, "klink:approve"),
    ],
)
def test_may_approve(
    person: Person | None, requester: str | None, tool: str, allowed: bool, why: str
) -> None:
    ok, reason = may_approve(person, requester, tool, SETTINGS)
    assert ok is allowed and why in reason


def test_the_requester_as_a_principal_is_compared_by_issuer_and_subject() -> None:
    same = Principal("alice", frozenset({"klink:delete"}), "oauth", issuer="https://idp", name="Someone Else")
    other_issuer = Principal("alice", frozenset({"klink:delete"}), "oauth", issuer="https://other-idp")
    assert may_approve(ALICE, same, "delete_contact", SETTINGS)[0] is False
    assert may_approve(ALICE, other_issuer, "delete_contact", SETTINGS)[0] is True


def test_four_eyes_tools_come_from_the_environment() -> None:
    from klink_mcp.config import load_settings

    settings = load_settings(
        env={
            "KLINK_FOUR_EYES_TOOLS": "delete_contact, send_message",
            "KLINK_OAUTH_ISSUER": OAUTH["oauth_issuer"],
            "KLINK_RESOURCE_URL": OAUTH["resource_url"],
        }
    )
    assert settings.four_eyes_tools == ("delete_contact", "send_message")


def test_four_eyes_without_oauth_is_refused_because_nobody_would_be_known() -> None:
    from klink_mcp.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="KLINK_FOUR_EYES_TOOLS needs KLINK_OAUTH_ISSUER"):
        load_settings(env={"KLINK_FOUR_EYES_TOOLS": "delete_contact"})
