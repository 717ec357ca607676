"""Tool errors (klink_mcp/tools/errors.py): one code vocabulary, hints from the spec, nothing dropped."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from klink_mcp.api import errors as api_errors
from klink_mcp.api.errors import ErrorCode
from klink_mcp.guard.confirm import GuardRefusal
from klink_mcp.sandbox import SandboxTenant
from klink_mcp.tools.errors import ERROR_META_KEY, ToolFailure, translate_error
from klink_mcp.tools.spec import CONTACT_NOT_FOUND, FINDS_CONTACTS
from tests.helpers.server import a_contact, error_code, make_server

pytestmark = pytest.mark.anyio

UNKNOWN = "00000000-0000-0000-0000-000000000000"


def text_of(result: Any) -> str:
    return str(result.content[0].text)


async def test_create_ticket_for_an_unknown_contact_hints_at_finding_contacts_not_tickets(
    client: Client,
) -> None:
    result = await client.call_tool("create_ticket", {"contact_id": UNKNOWN, "title": "x"})
    assert error_code(result) == "not_found"
    assert "list_contacts" in text_of(result)
    assert "list_tickets" not in text_of(result)


async def test_send_message_to_an_unknown_contact_hints_at_finding_contacts(client: Client) -> None:
    result = await client.call_tool("send_message", {"contact_id": UNKNOWN, "message": "hi"})
    assert error_code(result) == "not_found"
    assert CONTACT_NOT_FOUND in text_of(result)


async def test_update_ticket_for_an_unknown_ticket_hints_at_finding_tickets(client: Client) -> None:
    result = await client.call_tool("update_ticket", {"ticket_id": UNKNOWN, "title": "x"})
    assert error_code(result) == "not_found"
    assert "list_tickets" in text_of(result)


async def test_a_refused_confirmation_keeps_its_reason(tenant: SandboxTenant, mode: str) -> None:
    # The token flow (KLINK_CONFIRM=token): by default a confirmation_token is ignored, not refused.
    async with Client(make_server(tenant, confirm="token"), mode=mode) as client:  # type: ignore[arg-type]
        result = await client.call_tool(
            "delete_contact", {"contact_id": a_contact(tenant)["id"], "confirmation_token": "not-a-token"}
        )
    assert error_code(result) == "confirmation_rejected"
    assert (result.meta or {})[ERROR_META_KEY]["reason"] == "malformed"


def test_every_client_error_class_has_its_own_code_from_the_one_enum() -> None:
    classes = [getattr(api_errors, name) for name in api_errors.__all__]
    assert all(isinstance(cls.code, ErrorCode) for cls in classes)
    assert api_errors.BadRequest.code == "upstream_validation"
    assert api_errors.KlinkConnectionError.code == "unreachable"
    assert api_errors.KlinkInputError.code == "validation"
    assert api_errors.ServerError.code == "upstream_error"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (api_errors.NotFound(404, "no such contact"), "not_found"),
        (api_errors.BadRequest(400, "bad"), "upstream_validation"),
        (api_errors.KlinkConnectionError("down"), "unreachable"),
        (api_errors.KlinkTimeout("slow"), "timeout"),
        (api_errors.AmbiguousWriteError("maybe"), "ambiguous_write"),
        (api_errors.ServerError(502, "bad gateway"), "upstream_error"),
        (api_errors.KlinkAPIError(200, "unreadable"), "upstream_unexpected"),
        (api_errors.KlinkInputError("contact_id", "empty"), "validation"),
        (api_errors.RateLimited(429, "slow down", retry_after=3.0), "rate_limited"),
        (GuardRefusal("read_only", "The server is read-only."), "read_only"),
        (ToolFailure(ErrorCode.VALIDATION, "nothing to update"), "validation"),
    ],
)
def test_the_code_of_a_tool_error_is_the_code_of_the_failure(exc: Exception, code: str) -> None:
    result = translate_error(exc, {})
    assert result.is_error
    assert (result.meta or {})[ERROR_META_KEY]["code"] == code


def test_the_hint_is_the_specs_for_that_code_only() -> None:
    not_found = translate_error(api_errors.NotFound(404, "gone"), FINDS_CONTACTS)
    assert text_of(not_found).endswith(CONTACT_NOT_FOUND)
    conflict = translate_error(api_errors.Conflict(409, "clash"), FINDS_CONTACTS)
    assert CONTACT_NOT_FOUND not in text_of(conflict)
    default = translate_error(api_errors.NotFound(404, "gone"), {})
    assert text_of(default).endswith("Check the id.")


def test_a_rate_limit_carries_its_wait_and_an_input_error_its_field() -> None:
    limited = translate_error(api_errors.RateLimited(429, "x", retry_after=2.5), {})
    assert (limited.meta or {})[ERROR_META_KEY]["retry_after_s"] == 2.5
    bad = translate_error(api_errors.KlinkInputError("contact_id", "empty"), {})
    assert (bad.meta or {})[ERROR_META_KEY]["fields"] == ["contact_id"]


def test_an_unanticipated_exception_is_not_translated() -> None:
    with pytest.raises(KeyError):
        translate_error(KeyError("bug"), {})


def test_every_code_the_guard_refuses_with_is_in_the_one_enum() -> None:
    # The guard is reworked elsewhere: a new refusal code must be added to ErrorCode, or tool errors
    # would fail to translate it. Read the codes from the guard's source.
    import ast
    import inspect

    from klink_mcp.guard import confirm

    codes = {
        node.args[0].value
        for node in ast.walk(ast.parse(inspect.getsource(confirm)))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "GuardRefusal"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    assert codes, "no GuardRefusal(...) call found: the check would prove nothing"
    assert codes <= {code.value for code in ErrorCode}


def test_a_call_not_retried_because_klink_looks_down_tells_the_model_to_wait() -> None:
    exc = api_errors.ServerError(503, "unavailable")
    exc.upstream_looks_down = True
    text = translate_error(exc, {}).content[0].text  # type: ignore[union-attr]
    assert "looks down" in text and "Wait a minute" in text
    plain = translate_error(api_errors.ServerError(503, "unavailable"), {}).content[0].text  # type: ignore[union-attr]
    assert "looks down" not in plain
