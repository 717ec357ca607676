"""Invariants over the whole inventory, schema snapshots, server.json and the README's tool table."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client

from klink_mcp import __version__
from klink_mcp.docs import TABLE_BEGIN, TABLE_END, tool_table
from klink_mcp.guard.policy import guarded_tools
from klink_mcp.sandbox import SandboxTenant
from klink_mcp.tools.resources import load_prompts
from tests.helpers.server import FIXTURES, make_server, make_settings

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SNAPS = Path(__file__).resolve().parent / "__toolsnaps__"
# Vendored (see schemas/registry/README.md): no test reads outside the repository.
REGISTRY_SCHEMA = ROOT / "schemas" / "registry" / "server.schema.json"
COMPILED_TOOLS = (
    "create_contact",
    "update_contact",
    "create_ticket",
    "update_ticket",
    "update_ticket_status",
)


async def _tools(tenant: SandboxTenant) -> list[Any]:
    async with Client(make_server(tenant)) as client:
        return list((await client.list_tools()).tools)


def _snapshot(tool: Any) -> dict[str, Any]:
    data = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("_meta", None)
    return data


def _check_snapshot(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("KLINK_UPDATE_SNAPSHOTS") == "1" or (not path.exists() and not os.environ.get("CI")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"missing snapshot {path.name}: run with KLINK_UPDATE_SNAPSHOTS=1 and commit it"
    assert path.read_text(encoding="utf-8") == text, (
        f"{path.name} changed: review the schema change, then KLINK_UPDATE_SNAPSHOTS=1 to accept it"
    )


async def test_tool_schemas_match_snapshots_for_the_default_tenant() -> None:
    tools = await _tools(SandboxTenant.seeded())
    for tool in tools:
        _check_snapshot(SNAPS / f"{tool.name}.json", _snapshot(tool))
    stale = {p.stem for p in SNAPS.glob("*.json")} - {t.name for t in tools}
    assert not stale, f"snapshots of tools that no longer exist: {sorted(stale)}"


async def test_compiled_schemas_match_snapshots_for_a_second_tenant() -> None:
    tenant = SandboxTenant.from_fixture(FIXTURES / "tenant_acme.json")
    tools = {t.name: t for t in await _tools(tenant)}
    default = {t.name: t for t in await _tools(SandboxTenant.seeded())}
    for name in COMPILED_TOOLS:
        _check_snapshot(SNAPS / "acme" / f"{name}.json", _snapshot(tools[name]))
    assert tools["create_ticket"].input_schema != default["create_ticket"].input_schema


async def test_every_tool_is_described_annotated_and_typed() -> None:
    for tool in await _tools(SandboxTenant.seeded()):
        assert tool.description and len(tool.description) > 40, tool.name
        ann = tool.annotations
        assert ann is not None, tool.name
        for hint in ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint"):
            assert getattr(ann, hint) is not None, (tool.name, hint)
        assert tool.output_schema and tool.output_schema.get("type") == "object", tool.name
        schema = tool.input_schema
        assert not {"anyOf", "oneOf", "allOf"} & set(schema), tool.name
        for pname, prop in schema.get("properties", {}).items():
            assert prop.get("description") or "$ref" in json.dumps(prop), (tool.name, pname)
        assert re.fullmatch(r"[a-z]+(_[a-z]+)+", tool.name), tool.name


async def test_destructive_tools_are_exactly_the_guarded_tools() -> None:
    tools = await _tools(SandboxTenant.seeded())
    destructive = {t.name for t in tools if t.annotations and t.annotations.destructive_hint}
    assert destructive == set(guarded_tools(make_settings()))
    assert {"delete_contact", "send_message", "update_contact_tags"} <= destructive


async def test_every_prompt_renders_with_its_arguments() -> None:
    prompts = load_prompts()
    assert {p.name for p in prompts} >= {
        "triage_open_tickets",
        "summarize_customer_history",
        "draft_ticket_reply",
        "find_customer",
        "weekly_cx_report",
    }
    async with Client(make_server(SandboxTenant.seeded())) as client:
        listed = {p.name: p for p in (await client.list_prompts()).prompts}
        for spec in prompts:
            args = {name: spec.examples.get(name, "42") for name, _, _ in spec.arguments}
            result = await client.get_prompt(spec.name, args)
            text = result.messages[0].content.text  # type: ignore[union-attr]
            assert "{" + (spec.arguments[0][0] if spec.arguments else "x") + "}" not in text
            assert len(text) > 100
            assert listed[spec.name].description


def test_server_json_is_valid_and_matches_the_package_version() -> None:
    data = json.loads((ROOT / "server.json").read_text())
    jsonschema.validate(data, json.loads(REGISTRY_SCHEMA.read_text()))
    assert data["version"] == __version__
    assert all(p["version"] == __version__ for p in data["packages"])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__
    readme = (ROOT / "README.md").read_text()
    assert f"mcp-name: {data['name']}" in readme
    token = next(e for e in data["packages"][0]["environmentVariables"] if e["name"] == "KLINK_API_TOKEN")
    assert token["isSecret"] is True


async def test_readme_tool_table_is_generated_from_the_live_tool_list() -> None:
    readme = (ROOT / "README.md").read_text()
    current = readme.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    expected = (await tool_table(make_settings(), markdown=True)).strip()
    assert current == expected, "README tool table is stale: regenerate it with `klink-mcp tools --markdown`"
