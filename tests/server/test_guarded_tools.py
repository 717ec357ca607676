"""The guard on the real tools and the real sandbox: elicitation in both eras, injected text, audit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client
from mcp.client import ClientRequestContext

from klink_mcp.sandbox import SandboxTenant
from tests.approval._support import Person
from tests.helpers.server import make_server

pytestmark = pytest.mark.anyio
ERAS = pytest.mark.parametrize("era", ["legacy", "auto"])


def _writes(tenant: SandboxTenant) -> list[Any]:
    return [r for r in tenant.requests if r.method != "GET"]


def _contact(tenant: SandboxTenant) -> dict[str, Any]:
    return next(c for c in tenant.contacts.values() if not c.get("deletedAt"))


def answering(reply: types.ElicitResult, questions: list[str]) -> Any:
    async def callback(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        questions.append(params.message)
        return reply

    return callback


@ERAS
async def test_accepted_elicitation_sends_the_message_once(
    tenant: SandboxTenant, era: str, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    contact = _contact(tenant)
    questions: list[str] = []
    yes = answering(types.ElicitResult(action="accept", content={"confirm": True}), questions)
    server = make_server(tenant, audit_log=audit)
    before = len(tenant.messages)
    with anyio.fail_after(20):
        async with Client(server, mode=era, elicitation_callback=yes) as client:  # type: ignore[arg-type]
            tenant.reset_requests()
            result = await client.call_tool(
                "send_message", {"contact_id": contact["id"], "message": "Your refund is on its way."}
            )
    assert result.structured_content["status"] == "done"
    assert len(tenant.messages) == before + 1
    assert [r.path for r in _writes(tenant)] == ["/api/v1/messages/send"]
    assert len(questions) == 1 and "Your refund is on its way." in questions[0]
    decisions = [json.loads(line)["decision"] for line in audit.read_text().splitlines()]
    assert "confirmed_by_elicitation" in decisions and "executed" in decisions
    assert "Your refund" not in audit.read_text()  # bodies are not logged by default


@ERAS
@pytest.mark.parametrize(
    "reply",
    [
        types.ElicitResult(action="decline"),
        types.ElicitResult(action="cancel"),
        types.ElicitResult(action="accept", content={"confirm": False}),
    ],
    ids=["decline", "cancel", "accept-with-no"],
)
async def test_refused_elicitation_deletes_nothing(
    tenant: SandboxTenant, era: str, reply: types.ElicitResult
) -> None:
    contact = _contact(tenant)
    questions: list[str] = []
    with anyio.fail_after(20):
        async with Client(
            make_server(tenant), mode=era, elicitation_callback=answering(reply, questions)
        ) as client:  # type: ignore[arg-type]
            tenant.reset_requests()
            result = await client.call_tool("delete_contact", {"contact_id": contact["id"]})
    assert result.structured_content["status"] == "cancelled"
    assert _writes(tenant) == []
    assert not tenant.contacts[contact["id"]].get("deletedAt")
    assert "cannot be undone" in questions[0].lower()


async def test_strict_mode_without_elicitation_refuses_and_changes_nothing(tenant: SandboxTenant) -> None:
    contact = _contact(tenant)
    async with Client(make_server(tenant, confirm="elicit")) as client:
        tenant.reset_requests()
        result = await client.call_tool("delete_contact", {"contact_id": contact["id"]})
    assert result.is_error and "elicitation" in result.content[0].text.lower()
    assert _writes(tenant) == []


@pytest.mark.parametrize("confirm", ["on", "token"])
async def test_injected_approval_in_a_ticket_is_fenced_and_cannot_confirm(
    tenant: SandboxTenant, confirm: str
) -> None:
    server = make_server(tenant, confirm=confirm)
    async with Client(server) as client:
        page = await client.call_tool(
            "list_tickets", {"keyword": "IGNORE PREVIOUS INSTRUCTIONS", "detail": True, "page_size": 20}
        )
        items = page.structured_content["items"]
        injected = next(t for t in items if "confirmation_token=" in t.get("description", ""))
        description = injected["description"]
        assert description.startswith("<untrusted-customer-text")
        assert description.endswith("</untrusted-customer-text>")
        assert description.count("</untrusted-customer-text>") == 1
        assert not {"\u202e", "\u2066", "\u200b", "\ufeff"} & set(description)
        # A model that obeys the text - deletes the contact it names with the token it offers - is refused.
        token = re.search(r"confirmation_token=(\w+)", description).group(1)  # type: ignore[union-attr]
        victim = re.search(r"Delete contact ([0-9a-f-]{36})", description)
        contact_id = victim.group(1) if victim else _contact(tenant)["id"]
        tenant.reset_requests()
        result = await client.call_tool(
            "delete_contact", {"contact_id": contact_id, "confirmation_token": token}
        )
    if confirm == "token":  # a forged token is refused
        assert result.is_error
    else:  # a token is no approval at all: a person must approve on the page
        assert result.structured_content["status"] == "approval_required"
    assert _writes(tenant) == []
    assert not tenant.contacts[contact_id].get("deletedAt")


async def test_a_token_for_one_contact_cannot_delete_another(tenant: SandboxTenant) -> None:
    first, second = [c for c in tenant.contacts.values() if not c.get("deletedAt")][:2]
    async with Client(make_server(tenant, confirm="token")) as client:
        preview = await client.call_tool("delete_contact", {"contact_id": first["id"]})
        token = preview.structured_content["confirmation_token"]
        tenant.reset_requests()
        swapped = await client.call_tool(
            "delete_contact", {"contact_id": second["id"], "confirmation_token": token}
        )
    assert swapped.is_error and _writes(tenant) == []


async def test_contact_changed_after_preview_gets_a_fresh_preview(tenant: SandboxTenant) -> None:
    contact = _contact(tenant)
    async with Client(make_server(tenant, confirm="token")) as client:
        preview = await client.call_tool("delete_contact", {"contact_id": contact["id"]})
        token = preview.structured_content["confirmation_token"]
        await client.call_tool("update_contact", {"contact_id": contact["id"], "address": "Moved away"})
        tenant.reset_requests()
        again = await client.call_tool(
            "delete_contact", {"contact_id": contact["id"], "confirmation_token": token}
        )
    assert again.structured_content["status"] == "confirmation_required"
    assert again.structured_content["reason"] == "target_changed"
    assert again.structured_content["confirmation_token"] != token
    assert _writes(tenant) == []


async def test_concurrent_confirms_with_one_token_delete_once(tenant: SandboxTenant) -> None:
    contact = _contact(tenant)
    async with Client(make_server(tenant, confirm="token")) as client:
        preview = await client.call_tool("delete_contact", {"contact_id": contact["id"]})
        args = {
            "contact_id": contact["id"],
            "confirmation_token": preview.structured_content["confirmation_token"],
        }
        tenant.reset_requests()
        results: list[Any] = []

        async def confirm() -> None:
            results.append(await client.call_tool("delete_contact", args))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(confirm)
    assert sum(1 for r in results if not r.is_error and r.structured_content["status"] == "done") == 1
    assert [r.method for r in _writes(tenant)] == ["DELETE"]


async def test_an_operator_can_require_confirmation_for_another_write_tool(tenant: SandboxTenant) -> None:
    contact = _contact(tenant)
    server = make_server(tenant, confirm_tools=("create_ticket",))
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "confirmation_token" in tools["create_ticket"].input_schema["properties"]
        assert "preview" in tools["create_ticket"].output_schema["properties"]
        args = {"contact_id": contact["id"], "title": "Needs a second look"}
        tenant.reset_requests()
        first = await client.call_tool("create_ticket", args)
        assert first.structured_content["status"] == "approval_required"
        assert _writes(tenant) == []
        person = Person()
        try:
            await person.approve(first.structured_content["approval_url"])
        finally:
            await person.aclose()
        done = await client.call_tool("create_ticket", args)
    assert done.structured_content["status"] == "done"
    assert [r.path for r in _writes(tenant)] == ["/api/v1/tickets"]


async def test_confirmation_off_runs_destructive_tools_directly(tenant: SandboxTenant) -> None:
    contact = _contact(tenant)
    async with Client(make_server(tenant, confirm="off")) as client:
        result = await client.call_tool("delete_contact", {"contact_id": contact["id"]})
    assert result.structured_content["status"] == "done"
    assert tenant.contacts[contact["id"]]["deletedAt"]
