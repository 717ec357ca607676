"""Resources, completions, prompts and the CLI commands (tools, doctor, demo)."""

from __future__ import annotations

import json

import pytest
from mcp import Client
from mcp.types import PromptReference, ResourceTemplateReference

from klink_mcp.cli import main
from klink_mcp.sandbox import SandboxTenant

pytestmark = pytest.mark.anyio


async def test_contact_and_ticket_resources_read_as_json(client: Client, tenant: SandboxTenant) -> None:
    contact = next(iter(tenant.contacts.values()))
    body = await client.read_resource(f"klink://contacts/{contact['id']}")
    data = json.loads(body.contents[0].text)  # type: ignore[union-attr]
    assert data["id"] == contact["id"]
    ticket = next(iter(tenant.tickets.values()))
    body = await client.read_resource(f"klink://tickets/{ticket['ticketNumber']}")
    assert json.loads(body.contents[0].text)["id"] == ticket["id"]  # type: ignore[union-attr]


async def test_unknown_contact_resource_is_a_protocol_error(client: Client) -> None:
    with pytest.raises(Exception, match="No contact"):
        await client.read_resource("klink://contacts/00000000-0000-0000-0000-000000000000")


async def test_static_resources_are_listed_and_readable(client: Client) -> None:
    uris = {str(r.uri) for r in (await client.list_resources()).resources}
    assert {
        "klink://forms/contact",
        "klink://forms/ticket",
        "klink://categories",
        "klink://audit/recent",
    } <= uris
    forms = json.loads((await client.read_resource("klink://forms/ticket")).contents[0].text)  # type: ignore[union-attr]
    assert any(f["system_name"] == "title" for f in forms)
    tree = json.loads((await client.read_resource("klink://categories")).contents[0].text)  # type: ignore[union-attr]
    assert tree and "children" in tree[0]


async def test_audit_resource_shows_guard_decisions(client: Client, tenant: SandboxTenant) -> None:
    contact = next(iter(tenant.contacts.values()))
    await client.call_tool("delete_contact", {"contact_id": contact["id"]})
    audit = json.loads((await client.read_resource("klink://audit/recent")).contents[0].text)  # type: ignore[union-attr]
    assert audit[0]["tool"] == "delete_contact" and audit[0]["decision"] == "confirmation_required"


async def test_completions_offer_statuses_tags_and_filter_by_prefix(
    client: Client, tenant: SandboxTenant
) -> None:
    ref = PromptReference(type="ref/prompt", name="triage_open_tickets")
    result = await client.complete(ref, {"name": "priority", "value": "h"})
    assert result.completion.values and all(v.startswith("h") for v in result.completion.values)
    tmpl = ResourceTemplateReference(type="ref/resource", uri="klink://contacts/{contact_id}")
    tags = await client.complete(tmpl, {"name": "tag", "value": ""})
    assert set(tags.completion.values) == {t["name"] for t in tenant.tags.values()}
    status = await client.complete(ref, {"name": "status", "value": "re"})
    assert status.completion.values == ["resolved"]
    none = await client.complete(ref, {"name": "unrelated", "value": ""})
    assert none.completion.values == []


def test_tools_command_prints_the_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLINK_EVENTS_DB", ":memory:")
    monkeypatch.delenv("KLINK_API_TOKEN", raising=False)
    assert main(["tools", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| `send_message` | destructive (confirmed) |" in out


def test_doctor_probes_every_read_endpoint_of_the_sandbox(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KLINK_API_TOKEN", raising=False)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for op in ("list_contacts", "list_tickets", "list_cx_logs", "get_contact", "list_contact_tickets"):
        assert f"ok    {op}" in out
    assert "all read endpoints answered" in out


def test_doctor_reports_a_rejected_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KLINK_API_TOKEN", raising=False)
    monkeypatch.setenv("KLINK_SANDBOX_TOKEN", "some-other-token")
    monkeypatch.setenv("KLINK_SANDBOX", "1")
    monkeypatch.setenv("KLINK_MAX_ATTEMPTS", "1")
    # The in-process sandbox expects the configured token, so make the client send a wrong one.
    from klink_mcp import doctor

    real = doctor.KlinkClient.from_settings

    def wrong_token(settings, *, transport=None):  # type: ignore[no-untyped-def]
        return real(settings.model_copy(update={"sandbox_token": "nope"}), transport=transport)

    monkeypatch.setattr(doctor.KlinkClient, "from_settings", wrong_token)
    assert main(["doctor"]) == 1
    assert "401" in capsys.readouterr().out


def test_demo_runs_a_guarded_session(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLINK_EVENTS_DB", ":memory:")
    monkeypatch.delenv("KLINK_API_TOKEN", raising=False)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "confirmation_required" in out and "untrusted-customer-text" in out
    assert "already used" in out


@pytest.mark.parametrize(
    "argv",
    [["--read-only", "tools", "--markdown"], ["tools", "--read-only", "--markdown"]],
    ids=["before-the-command", "after-the-command"],
)
def test_server_options_work_before_and_after_the_command(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLINK_EVENTS_DB", ":memory:")
    monkeypatch.delenv("KLINK_API_TOKEN", raising=False)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| `list_tickets` | read |" in out
    assert "write" not in out and "destructive" not in out
