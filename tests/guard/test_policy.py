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
    assert destructive == {"delete_contact", "send_message", "update_contact_tags"}


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
