"""Test harness: a tiny MCP server whose guarded tools call `Guard.authorize` exactly as the real tools do.

The "upstream" is an in-memory tenant; `tenant.executions` counts the actions that really ran, which
is what every test asserts on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, InputRequiredResult, TextContent
from pydantic import BaseModel

from klink_mcp.config import Settings, load_settings
from klink_mcp.guard.approvals import ApprovalRecord
from klink_mcp.guard.confirm import Approval, Guard, GuardRefusal, Pending
from klink_mcp.guard.policy import annotations_for
from klink_mcp.guard.preview import Preview, PreviewTarget, mask_email, mask_phone, preview_digest

DELETE_C1 = {"contact_id": "c1"}
GUARD_SECRET = "test-guard-secret-0123456789abcdef-XYZ"


class FakeClock:
    """A clock the test moves by hand (no sleeping)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeTenant:
    contacts: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "c1": {
                "name": "Alice Smith",
                "email": "alice.smith@example.com",
                "phone": "+65 9123 4567",
                "v": "1",
            },
            "c2": {"name": "Bob Tan", "email": "bob@example.com", "phone": "+65 8000 1111", "v": "1"},
        }
    )
    executions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    preview_loads: int = 0

    def touch(self, contact_id: str) -> None:
        """Someone updated the contact upstream: its version changes."""
        contact = self.contacts[contact_id]
        contact["v"] = str(int(contact["v"]) + 1)


class Outcome(BaseModel):
    """The result shape the tool layer is expected to return (WriteOutcome plus the approval fields)."""

    status: Literal["done", "approval_required", "confirmation_required", "cancelled"]
    channel: str | None = None
    preview: Preview | None = None
    confirmation_token: str | None = None
    approval_url: str | None = None
    approval_id: str | None = None
    sent_text: str | None = None
    expires_in_s: int | None = None
    reason: str | None = None
    next_step: str | None = None


def _outcome(decision: Approval | Pending) -> Outcome:
    if isinstance(decision, Pending):
        return Outcome(
            status=decision.status,
            preview=decision.preview,
            confirmation_token=decision.confirmation_token,
            approval_url=decision.approval_url,
            approval_id=decision.approval_id,
            expires_in_s=decision.expires_in_s,
            reason=decision.reason,
            next_step=decision.next_step,
        )
    return Outcome(status="done", channel=decision.channel, sent_text=decision.approved_text)


def build_contact_preview(
    tenant: FakeTenant, contact_id: str, action: str, details: dict[str, str | int]
) -> Preview:
    contact = tenant.contacts.get(contact_id)
    if contact is None:
        raise ToolError(f"No contact {contact_id!r}.")
    return Preview(
        action=action,
        summary=f"{action} for {contact['name']}.",
        target=PreviewTarget(
            kind="contact",
            id=contact_id,
            name=contact["name"],
            masked_email=mask_email(contact["email"]),
            masked_phone=mask_phone(contact["phone"]),
        ),
        details=details,
        irreversible=True,
        target_version=contact["v"],
    )


def delete_binding(tenant: FakeTenant, contact_id: str = "c1") -> str:
    """What a confirmation of delete_contact(contact_id) binds to: every fact of its preview."""
    preview = build_contact_preview(tenant, contact_id, "Delete contact", {"open_tickets": 2})
    return "preview:" + preview_digest(preview)


def build_server(guard: Guard, tenant: FakeTenant) -> MCPServer:
    """Guarded tools wired exactly like klink_mcp.tools: authorize -> (maybe) run once -> record outcome."""
    mcp = MCPServer("guard-test")

    def contact_preview(contact_id: str, action: str, details: dict[str, str | int]) -> Preview:
        tenant.preview_loads += 1
        return build_contact_preview(tenant, contact_id, action, details)

    async def guarded(
        ctx: Context[Any, Any],
        tool: str,
        args: dict[str, Any],
        token: str | None,
        preview: Callable[[], Preview],
        run: Callable[[Approval], None],
        text_field: str | None = None,
    ) -> Outcome | InputRequiredResult:
        async def load_preview() -> Preview:
            return preview()

        try:
            decision = await guard.authorize(
                ctx,
                tool=tool,
                args=args,
                confirmation_token=token,
                load_preview=load_preview,
                text_field=text_field,
            )
        except GuardRefusal as exc:
            raise ToolError(
                json.dumps({"code": exc.code, "reason": exc.reason, "message": exc.message})
            ) from None
        if isinstance(decision, InputRequiredResult):
            return decision
        if isinstance(decision, Approval):
            run(decision)
            guard.record_outcome(tool, {"contact_id": args["contact_id"]}, args, decision.channel, 200, None)
        return _outcome(decision)

    @mcp.tool(name="delete_contact", annotations=annotations_for("delete_contact"))
    async def delete_contact(
        contact_id: str, ctx: Context[Any, Any], confirmation_token: str | None = None
    ) -> Outcome | InputRequiredResult:
        """Delete a contact (guarded)."""
        args = {"contact_id": contact_id, "confirmation_token": confirmation_token}
        return await guarded(
            ctx,
            "delete_contact",
            args,
            confirmation_token,
            lambda: contact_preview(contact_id, "Delete contact", {"open_tickets": 2}),
            lambda _: tenant.executions.append(("delete_contact", {"contact_id": contact_id})),
        )

    @mcp.tool(name="send_message", annotations=annotations_for("send_message"))
    async def send_message(
        contact_id: str, message: str, ctx: Context[Any, Any], confirmation_token: str | None = None
    ) -> Outcome | InputRequiredResult:
        """Send a message to a contact (guarded)."""
        args = {"contact_id": contact_id, "message": message, "confirmation_token": confirmation_token}
        return await guarded(
            ctx,
            "send_message",
            args,
            confirmation_token,
            lambda: contact_preview(contact_id, "Send message", {"message": message, "channel": "whatsapp"}),
            # What the tool layer must do: send the approved text (cleaned, maybe edited on the page).
            lambda approval: tenant.executions.append(
                ("send_message", {"contact_id": contact_id, "message": approval.approved_text or message})
            ),
            text_field="message",
        )

    @mcp.tool(name="update_contact_tags", annotations=annotations_for("update_contact_tags"))
    async def update_contact_tags(
        contact_id: str,
        action: Literal["MERGE", "REPLACE", "REMOVE"],
        tags: list[str],
        ctx: Context[Any, Any],
        confirmation_token: str | None = None,
    ) -> Outcome | InputRequiredResult:
        """Change a contact's tags (guarded when tags are taken away)."""
        args = {
            "contact_id": contact_id,
            "action": action,
            "tags": tags,
            "confirmation_token": confirmation_token,
        }
        return await guarded(
            ctx,
            "update_contact_tags",
            args,
            confirmation_token,
            lambda: contact_preview(contact_id, f"{action} tags", {"tags": ", ".join(tags)}),
            lambda _: tenant.executions.append(
                ("update_contact_tags", {"contact_id": contact_id, "action": action})
            ),
        )

    return mcp


@dataclass
class Harness:
    settings: Settings
    clock: FakeClock
    tenant: FakeTenant
    guard: Guard
    server: MCPServer
    audit_path: Path
    links: list[str] = field(default_factory=list)

    def audit_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_path.read_text(encoding="utf-8").splitlines()]

    def decisions(self) -> list[str]:
        return [line["decision"] for line in self.audit_lines()]


HarnessFactory = Callable[..., Harness]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[HarnessFactory]:
    made: list[Harness] = []

    def make(**overrides: Any) -> Harness:
        audit_path = tmp_path / f"logs{len(made)}" / "audit.jsonl"
        options: dict[str, Any] = {"audit_log": audit_path, "guard_secret": GUARD_SECRET}
        options.update(overrides)
        settings = load_settings(env={}, **options)
        clock = FakeClock()
        tenant = FakeTenant()
        links: list[str] = []

        async def person_sees(record: ApprovalRecord, url: str) -> None:
            links.append(url)  # the person's channel (a desktop browser); never the model's

        guard = Guard(settings, clock=clock, on_approval_link=person_sees)
        harness = Harness(settings, clock, tenant, guard, build_server(guard, tenant), audit_path, links)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.guard.aclose()


def outcome_of(result: CallToolResult) -> Outcome:
    """The tool's structured result (fails the test on a tool error)."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return Outcome.model_validate(result.structured_content)


def refusal_of(result: CallToolResult) -> dict[str, Any]:
    """The guard refusal carried by a tool error."""
    assert result.is_error, result.structured_content
    block = result.content[0]
    assert isinstance(block, TextContent)
    prefix = "Error executing tool "
    assert block.text.startswith(prefix), block.text
    refusal: dict[str, Any] = json.loads(block.text.split(": ", 1)[1])
    return refusal
