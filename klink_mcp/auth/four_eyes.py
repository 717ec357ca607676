"""The four-eyes rule for approvals, as a pure function (no I/O, no clock, no MCP).

An approval needs someone signed in holding `klink:approve`. For the tools named in
`KLINK_FOUR_EYES_TOOLS`, that someone must also be a different person from the one who asked for
the call: same issuer and same subject means the same person, whatever the display name says.
"""

from __future__ import annotations

from klink_mcp.auth.oidc import Person
from klink_mcp.auth.principal import SCOPE_APPROVE, Principal
from klink_mcp.config import Settings

__all__ = ["may_approve"]


def may_approve(
    person: Person | None, approval_requester: Principal | str | None, tool: str, settings: Settings
) -> tuple[bool, str]:
    """Whether `person` may approve `tool` requested by `approval_requester`, and why (or why not).

    `approval_requester` is the requesting principal, or its subject, or None when unknown (stdio,
    static token). Under four-eyes an unknown requester cannot be told apart from the approver, so
    the approval is refused.
    """
    if person is None:
        return False, "Sign in to approve."
    if SCOPE_APPROVE not in person.scopes:
        return False, f"{person.display} does not hold the {SCOPE_APPROVE} scope."
    if tool not in settings.four_eyes_tools:
        return True, f"{person.display} holds {SCOPE_APPROVE}."
    if approval_requester is None:
        return False, f"{tool} needs a second person, and who asked for it is unknown."
    if isinstance(approval_requester, Principal):
        same_issuer = approval_requester.issuer in (None, person.issuer)
        same = same_issuer and approval_requester.subject == person.subject
    else:
        same = approval_requester == person.subject
    if same:
        return False, f"{tool} needs a second person: you cannot approve your own request."
    return True, f"{person.display} holds {SCOPE_APPROVE} and is not the requester."
