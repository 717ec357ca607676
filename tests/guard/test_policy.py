"""The risk table is the one source of truth: annotations and the guarded set are derived from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from klink_mcp.config import ConfigError, load_settings
from klink_mcp.guard.policy import (
    ALL_TOOLS,
    READ_TOOLS,
    WRITE_TOOLS,
    Risk,
    UnknownToolError,
    annotations_for,
    guarded_tools,
    needs_confirmation,
    risk_of,
)

# Every tool of the server has a committed schema snapshot (generated; see tests/test_invariants.py), so
# the snapshot folder is the list of tools to expect: adding a tool does not mean editing this file.
SNAPSHOTS = Path(__file__).resolve().parent.parent / "__toolsnaps__"
EXPECTED_TOOLS = {path.stem for path in SNAPSHOTS.glob("*.json")}


def test_every_tool_of_the_server_has_exactly_one_row() -> None:
    assert ALL_TOOLS == EXPECTED_TOOLS


def test_tools_whose_annotation_says_destructive_are_exactly_the_guarded_tools_by_default() -> None:
    destructive = {tool for tool in ALL_TOOLS if annotations_for(tool).destructive_hint}
    assert destructive == guarded_tools(load_settings(env={}))
    # Policy by effect: a tool is destructive when SOME argument can lose data or reach a customer.
    assert destructive == {
        "delete_contact",
        "send_message",
        "update_contact_tags",
        "update_contact",
        "update_ticket",
        "update_ticket_status",
    }


def test_every_annotation_states_all_four_hints() -> None:
    for tool in ALL_TOOLS:
        hints = annotations_for(tool)
        values = (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint, hints.open_world_hint)
        assert all(isinstance(v, bool) for v in values), tool
        assert hints.read_only_hint == (tool in READ_TOOLS)


def test_write_tools_are_everything_that_is_not_a_read() -> None:
    assert WRITE_TOOLS == ALL_TOOLS - READ_TOOLS
    assert {"create_contact", "update_ticket_status", "send_message", "create_channel"} <= WRITE_TOOLS
    assert "refresh_form_schemas" not in WRITE_TOOLS


def test_only_the_local_event_store_is_closed_world() -> None:
    assert {tool for tool in ALL_TOOLS if not annotations_for(tool).open_world_hint} == {"list_recent_events"}


def test_creating_and_sending_are_not_idempotent() -> None:
    not_idempotent = {tool for tool in ALL_TOOLS if not annotations_for(tool).idempotent_hint}
    assert not_idempotent == {"create_contact", "create_channel", "create_ticket", "send_message"}


@pytest.mark.parametrize(
    ("args", "risk"),
    [
        ({"action": "MERGE"}, Risk.WRITE),
        ({"action": "merge"}, Risk.WRITE),
        ({"action_type": "MERGE"}, Risk.WRITE),
        ({"action": "REPLACE"}, Risk.DESTRUCTIVE),
        ({"action": "REMOVE"}, Risk.DESTRUCTIVE),
        ({"action": "SOMETHING_NEW"}, Risk.DESTRUCTIVE),
        ({}, Risk.DESTRUCTIVE),
    ],
)
def test_tag_update_risk_depends_on_the_action_and_fails_closed(args: dict[str, str], risk: Risk) -> None:
    assert risk_of("update_contact_tags", {"contact_id": "c1", **args}) is risk


def test_confirmation_follows_the_per_call_risk() -> None:
    settings = load_settings(env={})
    assert needs_confirmation("delete_contact", {"contact_id": "c1"}, settings)
    assert needs_confirmation("update_contact_tags", {"action": "REMOVE"}, settings)
    assert not needs_confirmation("update_contact_tags", {"action": "MERGE"}, settings)
    assert not needs_confirmation("create_ticket", {"title": "x"}, settings)


def test_confirm_tools_adds_write_tools_for_every_call() -> None:
    settings = load_settings(env={"KLINK_CONFIRM_TOOLS": "create_ticket, update_contact_tags"})
    assert guarded_tools(settings) == {
        "delete_contact",
        "send_message",
        "update_contact_tags",
        "update_contact",
        "update_ticket",
        "update_ticket_status",
        "create_ticket",
    }
    assert needs_confirmation("create_ticket", {"title": "x"}, settings)
    assert needs_confirmation("update_contact_tags", {"action": "MERGE"}, settings)


def test_confirm_tools_with_an_unknown_name_is_a_configuration_error() -> None:
    settings = load_settings(env={"KLINK_CONFIRM_TOOLS": "delete_contacts"})
    with pytest.raises(ConfigError, match="unknown tools: delete_contacts"):
        guarded_tools(settings)


def test_confirm_tools_with_a_read_tool_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="read-only tools"):
        guarded_tools(load_settings(env={}, confirm_tools=("list_contacts",)))


def test_an_unknown_tool_has_no_policy() -> None:
    with pytest.raises(UnknownToolError):
        risk_of("drop_database", {})
    with pytest.raises(UnknownToolError):
        annotations_for("drop_database")


def test_the_guard_package_never_imports_the_tool_layer_or_the_api_client() -> None:
    import ast
    from pathlib import Path

    import klink_mcp.guard

    offenders = []
    for path in Path(klink_mcp.guard.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name.startswith(("klink_mcp.tools", "klink_mcp.api"))
            ]
    assert offenders == []


@pytest.mark.parametrize(
    ("tool", "args", "asks"),
    [
        # update_contact: tags replace every tag; clearing; identity and reach replaced
        ("update_contact", {"contact_id": "c1", "tags": ["vip"]}, True),
        ("update_contact", {"contact_id": "c1", "tags": []}, True),
        ("update_contact", {"contact_id": "c1", "emails": []}, True),
        ("update_contact", {"contact_id": "c1", "phones": ["+6612345678"]}, True),
        ("update_contact", {"contact_id": "c1", "name": "Someone Else"}, True),
        ("update_contact", {"contact_id": "c1", "notes": ""}, True),
        ("update_contact", {"contact_id": "c1", "notes": "   "}, True),
        ("update_contact", {"contact_id": "c1", "customFields": {"cf_tier": ""}}, True),
        ("update_contact", {"contact_id": "c1", "customFields": {"cf_list": []}}, True),
        # other overwrites run (recorded with their before-image)
        ("update_contact", {"contact_id": "c1", "notes": "called back"}, False),
        ("update_contact", {"contact_id": "c1", "customFields": {"cf_tier": "gold"}}, False),
        # update_ticket: tags replace, tags removed, clearing
        ("update_ticket", {"ticket_id": "t1", "tags": ["billing"]}, True),
        ("update_ticket", {"ticket_id": "t1", "tags_remove": ["billing"]}, True),
        ("update_ticket", {"ticket_id": "t1", "description": ""}, True),
        ("update_ticket", {"ticket_id": "t1", "tags_add": ["billing"]}, False),
        ("update_ticket", {"ticket_id": "t1", "priority": "high"}, False),
        # status: solving or closing notifies the customer (compared case-insensitively)
        ("update_ticket_status", {"ticket_id": "t1", "status": "resolved"}, True),
        ("update_ticket_status", {"ticket_id": "t1", "status": "Closed"}, True),
        ("update_ticket_status", {"ticket_id": "t1"}, True),
        ("update_ticket_status", {"ticket_id": "t1", "status": "pending"}, False),
    ],
)
def test_policy_is_by_effect_not_by_tool_name(tool: str, args: dict[str, object], asks: bool) -> None:
    assert needs_confirmation(tool, args, load_settings(env={})) is asks


def test_closing_statuses_and_overwrites_are_settings() -> None:
    custom = load_settings(env={"KLINK_APPROVAL_STATUSES": "Spam, resolved"})
    assert needs_confirmation("update_ticket_status", {"ticket_id": "t", "status": "spam"}, custom)
    assert not needs_confirmation("update_ticket_status", {"ticket_id": "t", "status": "closed"}, custom)
    strict = load_settings(env={"KLINK_CONFIRM_OVERWRITES": "1"})
    assert needs_confirmation("update_contact", {"contact_id": "c1", "notes": "x"}, strict)
    assert needs_confirmation("update_ticket", {"ticket_id": "t1", "priority": "high"}, strict)
    assert needs_confirmation("update_ticket_status", {"ticket_id": "t", "status": "pending"}, strict)
    # adding tags overwrites nothing, even then
    assert not needs_confirmation("update_ticket", {"ticket_id": "t1", "tags_add": ["x"]}, strict)


def test_oauth_scopes_read_the_same_table_without_settings() -> None:
    # No settings: the defaults (resolved, closed close a ticket; overwrites are writes).
    assert risk_of("update_contact", {"contact_id": "c1", "notes": "x"}) is Risk.WRITE
    assert risk_of("update_contact", {"contact_id": "c1", "emails": []}) is Risk.DESTRUCTIVE
    assert risk_of("update_ticket_status", {"ticket_id": "t", "status": "resolved"}) is Risk.DESTRUCTIVE
