"""Strict arguments (issue #11, items 1 and 4), through the real MCP path in both protocol eras.

Every tool the sandbox server lists gets its minimal valid arguments plus (a) an unknown argument,
(b) an argument of another tool, (c) for the compiled create/update tools each custom field at the top
level: every call is refused as a validation error naming the argument, and the sandbox tenant sees
zero requests. The messages say what was wrong, the expected format with an example, and the nearest
valid names; one error lists every problem of a call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from mcp import Client
from pydantic import BaseModel, ValidationError

from klink_mcp.sandbox import SandboxTenant
from klink_mcp.tools.arg_errors import rewrite_argument_error
from klink_mcp.tools.schema_slim import close_objects, slim_input_schema
from tests.helpers.server import FIXTURES, MODES, make_server
from tests.robustness._schema_strategies import resolve, schema_errors
from tests.robustness._support import error_code, error_meta, result_text

pytestmark = pytest.mark.anyio

# Arguments of another tool, tried in this order: the first one a tool does not take is sent to it.
FOREIGN_CANDIDATES = ("status", "ticket_id", "contact_id", "keyword", "message", "social_platform_id")


class Session:
    def __init__(self, client: Client, tenant: SandboxTenant, schemas: dict[str, dict[str, Any]]) -> None:
        self.client = client
        self.tenant = tenant
        self.schemas = schemas

    async def refused(self, tool: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Call `tool`; assert it is refused as a validation error before anything goes upstream."""
        self.tenant.reset_requests()
        result = await self.client.call_tool(tool, args)
        text = result_text(result)
        assert result.is_error, f"{tool} accepted {args!r}: {text[:300]}"
        assert error_code(result) == "validation", text
        assert self.tenant.requests == [], f"{tool} sent {self.tenant.requests!r} for {args!r}"
        return text, error_meta(result)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def session(mode: str) -> AsyncIterator[Session]:
    tenant = SandboxTenant.seeded()
    async with Client(make_server(tenant), mode=mode) as client:  # type: ignore[arg-type]
        schemas = {t.name: dict(t.input_schema) for t in (await client.list_tools()).tools}
        yield Session(client, tenant, schemas)


def value_for(node: dict[str, Any], root: dict[str, Any]) -> Any:
    """A value the (resolved) schema node accepts: the nothing-special minimum."""
    node = dict(resolve(node, root))
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return node["enum"][0]
    kind = node.get("type")
    if kind == "string":
        fmt = node.get("format")
        if fmt == "date":
            return "2026-10-31"
        if fmt == "date-time":
            return "2026-10-31T09:30:00"
        if fmt == "email":
            return "someone@example.com"
        if fmt == "uri":
            return "https://example.com/x"
        if "pattern" in node:
            return "+6591234567"
        return "x" * max(1, int(node.get("minLength", 1)))
    if kind == "integer":
        return int(node.get("minimum", 1))
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [value_for(node.get("items", {}), root)] * max(1, int(node.get("minItems", 1)))
    if kind == "object" or "properties" in node:
        return minimal_arguments(node, root)
    return "x"


def minimal_arguments(schema: dict[str, Any], root: dict[str, Any] | None = None) -> dict[str, Any]:
    root = root or schema
    props = schema.get("properties", {})
    args = {name: value_for(props[name], root) for name in schema.get("required", ())}
    if "start" in args and "end" in args:
        args["end"] = "2026-11-01T00:00:00"
    return args


def custom_fields_of(schema: dict[str, Any]) -> dict[str, Any]:
    node = schema.get("properties", {}).get("custom_fields")
    return dict(resolve(node, schema).get("properties", {})) if node else {}


async def test_every_published_input_schema_is_closed(session: Session) -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                assert node.get("additionalProperties") is False, where
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    assert len(session.schemas) >= 20
    for name, schema in session.schemas.items():
        walk(schema, name)


async def test_minimal_arguments_are_valid_for_every_tool(session: Session) -> None:
    for name, schema in session.schemas.items():
        assert schema_errors(schema, minimal_arguments(schema)) == [], name


async def test_every_tool_refuses_an_unknown_argument(session: Session) -> None:
    for name, schema in session.schemas.items():
        args = {**minimal_arguments(schema), "bogus_argument": 1}
        text, meta = await session.refused(name, args)
        assert "unknown argument 'bogus_argument'" in text, text
        assert meta["fields"] == ["bogus_argument"], (name, meta)


async def test_every_tool_refuses_an_argument_of_another_tool_and_names_that_tool(session: Session) -> None:
    for name, schema in session.schemas.items():
        own = set(schema.get("properties", {}))
        foreign = next(c for c in FOREIGN_CANDIDATES if c not in own)
        owners = [t for t, s in session.schemas.items() if foreign in s.get("properties", {})]
        text, meta = await session.refused(name, {**minimal_arguments(schema), foreign: "x"})
        assert meta["fields"] == [foreign], (name, meta)
        assert f"'{foreign}'" in text
        assert any(owner in text for owner in owners), (name, foreign, text)


async def test_compiled_tools_refuse_each_custom_field_at_the_top_level(session: Session) -> None:
    compiled = {n: s for n, s in session.schemas.items() if custom_fields_of(s)}
    assert {"create_contact", "update_contact", "create_ticket", "update_ticket"} <= set(compiled)
    calls = 0
    for name, schema in compiled.items():
        for cf, node in custom_fields_of(schema).items():
            args = {**minimal_arguments(schema), cf: value_for(node, schema)}
            text, meta = await session.refused(name, args)
            assert meta["fields"] == [cf], (name, meta)
            assert f"'{cf}' is a custom field: put it inside custom_fields" in text, text
            calls += 1
    assert calls >= 40


async def test_the_silent_cases_of_the_issue_are_refused_with_advice(session: Session) -> None:
    contact = next(iter(session.tenant.contacts))
    ticket = next(iter(session.tenant.tickets))

    text, _ = await session.refused("list_tickets", {"assignee": "Grace Lim"})
    assert "unknown argument 'assignee'" in text and "list_tickets takes:" in text

    text, _ = await session.refused("update_ticket", {"ticket_id": ticket, "assignee": "a"})
    assert "did you mean 'assignee_id'?" in text

    text, _ = await session.refused("list_contacts", {"email": "a@example.com"})
    assert "keyword" in text

    text, _ = await session.refused("list_contact_tickets", {"contact_id": contact, "status": "open"})
    assert "'status' is an argument of list_tickets" in text  # list_tickets also takes contact_id

    text, _ = await session.refused("update_ticket", {"ticket_id": ticket, "status": "resolved"})
    assert "update_ticket_status" in text

    text, _ = await session.refused("create_contact", {"name": "Ann", "cf_city": "Bangkok"})
    assert "inside custom_fields" in text


async def test_custom_field_names_get_the_nearest_valid_one(session: Session) -> None:
    schema = session.schemas["create_ticket"]
    real = sorted(custom_fields_of(schema))[0]
    misspelt = real[:4] + real[5:]
    args = {**minimal_arguments(schema), "custom_fields": {misspelt: "x"}}
    text, meta = await session.refused("create_ticket", args)
    assert f"did you mean '{real}'" in text, text
    assert meta["fields"] == [f"custom_fields.{misspelt}"]

    name_inside = {**minimal_arguments(schema), "custom_fields": {"title": "x"}}
    text, _ = await session.refused("create_ticket", name_inside)
    assert "'title' is a top-level argument of create_ticket" in text


async def test_format_errors_say_the_expected_format_with_an_example(session: Session) -> None:
    schema = session.schemas["create_contact"]
    fields = custom_fields_of(schema)
    date_field = next(n for n, f in fields.items() if f.get("format") == "date")
    email_field = next(n for n, f in fields.items() if f.get("format") == "email")
    enum_field, enum_node = next((n, f) for n, f in fields.items() if f.get("enum"))
    wrong_enum = str(enum_node["enum"][0]).upper() + "x"
    args = {
        "name": "Ann",
        "custom_fields": {date_field: "31/10/2026", email_field: "not-an-email", enum_field: wrong_enum},
    }
    text, meta = await session.refused("create_contact", args)
    assert "expected a date as YYYY-MM-DD, e.g. 2026-10-31" in text
    assert "expected an email address, e.g. name@example.com" in text
    assert f'expected one of "{enum_node["enum"][0]}"' in text
    assert f"did you mean '{enum_node['enum'][0]}'" in text
    assert sorted(meta["fields"]) == sorted(
        f"custom_fields.{n}" for n in (date_field, email_field, enum_field)
    )


async def test_one_error_lists_every_problem_of_the_call(session: Session) -> None:
    args = {"start": "31/10/2026", "end": "2026-11-01T00:00:00", "page": "2", "timezon": "UTC"}
    text, meta = await session.refused("list_cx_logs", args)
    assert set(meta["fields"]) == {"start", "page", "timezon"}
    assert "e.g. 2026-10-31T09:30:00+07:00" in text
    assert "page: got the string '2', expected an integer" in text
    assert "did you mean 'timezone'?" in text
    assert text.count("Invalid arguments") == 1


async def test_a_missing_required_argument_is_named_with_what_it_takes(session: Session) -> None:
    text, meta = await session.refused("update_ticket_status", {"ticket_id": "t"})
    assert meta["fields"] == ["status"]
    assert 'status: missing; it is required: one of "open"' in text


async def test_explicit_null_for_an_optional_argument_means_not_given(session: Session) -> None:
    result = await session.client.call_tool("list_contacts", {"keyword": None, "page": None})
    assert not result.is_error, result_text(result)


async def test_refused_names_are_escaped_and_short(session: Session) -> None:
    key = "bad\u202ename\x00" + "y" * 200
    text, meta = await session.refused("list_tags", {key: 1})
    assert "\u202e" not in text and "\x00" not in text
    assert "bad\\u202ename\\x00" in text
    assert len(meta["fields"][0]) < 80


def test_close_objects_closes_object_nodes_and_leaves_maps_open() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "free": {"type": "object", "additionalProperties": True},
            "items": {"type": "array", "items": {"type": "object", "properties": {}}},
        },
        "$defs": {"D": {"type": "object", "properties": {"x": {"type": "integer"}}}},
    }
    closed = close_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["additionalProperties"] is False
    assert closed["properties"]["free"]["additionalProperties"] is True
    assert closed["properties"]["items"]["items"]["additionalProperties"] is False
    assert closed["$defs"]["D"]["additionalProperties"] is False
    assert close_objects(closed) == closed
    assert "additionalProperties" not in schema  # a copy, the input is unchanged
    slimmed = slim_input_schema({"type": "object", "title": "T", "properties": {}})
    assert slimmed == {"type": "object", "properties": {}, "additionalProperties": False}


def test_a_pydantic_report_is_rewritten_with_the_expected_format() -> None:
    class Dated(BaseModel):
        day: date

    try:
        Dated.model_validate({"day": "31/10/2026"})
    except ValidationError as exc:
        report = f"Error executing tool list_x: {exc}"
    sdk_result = {"content": [{"type": "text", "text": report}], "isError": True}
    rewritten = rewrite_argument_error(sdk_result)
    text = rewritten["content"][0]["text"]
    assert text.startswith("Invalid arguments for list_x: day: ")
    assert "expected a date as YYYY-MM-DD, e.g. 2026-10-31" in text
    assert rewritten["_meta"]["klink_mcp/error"] == {"code": "validation", "fields": ["day"]}
    assert rewrite_argument_error({"content": [], "isError": False}) == {"content": [], "isError": False}


async def test_a_second_tenant_gets_the_same_refusals_for_its_own_custom_fields(mode: str) -> None:
    tenant = SandboxTenant.from_fixture(FIXTURES / "tenant_acme.json")
    async with Client(make_server(tenant), mode=mode) as client:  # type: ignore[arg-type]
        schemas = {t.name: dict(t.input_schema) for t in (await client.list_tools()).tools}
        session = Session(client, tenant, schemas)
        calls = 0
        for name, schema in schemas.items():
            for cf, node in custom_fields_of(schema).items():
                args = {**minimal_arguments(schema), cf: value_for(node, schema)}
                assert schema_errors(schema, {k: v for k, v in args.items() if k != cf}) == [], name
                text, meta = await session.refused(name, args)
                assert meta["fields"] == [cf] and "inside custom_fields" in text, text
                calls += 1
        assert calls >= 10
