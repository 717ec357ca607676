"""Prompts that work (issue #11, item 6), through `get_prompt` against the real server in both eras.

Every prompt is rendered with and without each combination of its optional arguments, and every tool
name, argument name and value it mentions in backticks is checked against the live `tools/list`
schemas: a call written `tool(arg=value)` must name a tool, arguments that tool takes, and literal
values its schema accepts; a bare `name` must be a tool or a field of some tool's input or output.
Optional arguments not given leave no trace. A missing, unknown or malformed argument is a protocol
error (invalid params) naming it, never an internal error, and nothing is logged as an error.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from klink_mcp.prompt_templates import PromptFileError, PromptSpec, load_prompts, parse_prompt
from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import MODES, make_server
from tests.robustness._schema_strategies import schema_errors

pytestmark = pytest.mark.anyio

SPAN = re.compile(r"`([^`]+)`")
CALL = re.compile(r"^(?P<tool>[a-z_]+)\((?P<args>.*)\)$", re.DOTALL)
ARG = re.compile(r'\s*(?P<name>[a-z_]+)=(?P<value>"(?:[^"\\]|\\.)*"|[^,]+?)\s*(?:,|$)')
NAME = re.compile(r"^[a-z_]+$")
LEFTOVER = re.compile(r"\{[#^/]?[a-z_]+(?: ?[+-] ?\w+ (?:days|hours))?(?:\|json)?\}")
PROMPTS = load_prompts()


class Live:
    def __init__(self, client: Client, inputs: dict[str, dict[str, Any]], names: set[str]) -> None:
        self.client = client
        self.inputs = inputs
        self.names = names


def _property_names(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            out.update(props)
        for value in node.values():
            _property_names(value, out)
    elif isinstance(node, list):
        for value in node:
            _property_names(value, out)


@pytest.fixture(params=MODES)
async def live(request: pytest.FixtureRequest) -> AsyncIterator[Live]:
    async with Client(make_server(SandboxTenant.seeded()), mode=request.param) as client:
        tools = (await client.list_tools()).tools
        names = {t.name for t in tools}
        for tool in tools:
            _property_names(tool.input_schema, names)
            _property_names(tool.output_schema or {}, names)
        yield Live(client, {t.name: dict(t.input_schema) for t in tools}, names)


def example(spec: PromptSpec, name: str) -> str:
    value = spec.examples.get(name)
    assert value, f"{spec.name}: argument {name!r} needs an example in its front matter"
    return value


def variants(spec: PromptSpec) -> list[dict[str, str]]:
    """Required arguments always; every combination of the optional ones."""
    required = {n: example(spec, n) for n, _, r in spec.arguments if r}
    optional = [n for n, _, r in spec.arguments if not r]
    out = []
    for size in range(len(optional) + 1):
        for chosen in itertools.combinations(optional, size):
            out.append({**required, **{n: example(spec, n) for n in chosen}})
    return out


def check_mentions(text: str, live: Live, where: str) -> int:
    """Every backticked mention exists in the live schemas; returns how many were checked."""
    checked = 0
    for span in SPAN.findall(text):
        call = CALL.match(span)
        if call:
            tool = call.group("tool")
            assert tool in live.inputs, f"{where}: {span!r} names no tool"
            schema = live.inputs[tool]
            literal: dict[str, Any] = {}
            rest = call.group("args")
            for arg in ARG.finditer(rest):
                name, value = arg.group("name"), arg.group("value").strip()
                assert name in schema["properties"], f"{where}: {tool} takes no argument {name!r}"
                if value != "...":
                    literal[name] = json.loads(value)
            consumed = ARG.sub("", rest).strip()
            assert not consumed, f"{where}: cannot read the arguments of {span!r} ({consumed!r})"
            errors = [e for e in schema_errors(schema, literal) if e.validator != "required"]
            assert not errors, f"{where}: {span!r}: {errors[0].message}"
        else:
            assert NAME.match(span), f"{where}: {span!r} is neither tool(arg=...) nor a name"
            assert span in live.names, f"{where}: `{span}` is no tool nor a field of any tool"
        checked += 1
    return checked


@pytest.mark.parametrize("spec", PROMPTS, ids=[p.name for p in PROMPTS])
async def test_every_prompt_mentions_only_what_the_tools_have(live: Live, spec: PromptSpec) -> None:
    listed = {p.name: p for p in (await live.client.list_prompts()).prompts}
    assert [a.name for a in listed[spec.name].arguments or []] == list(spec.argument_names)
    for args in variants(spec):
        result = await live.client.get_prompt(spec.name, args)
        text = result.messages[0].content.text  # type: ignore[union-attr]
        where = f"{spec.name}({', '.join(args)})"
        assert "(not given)" not in text and "None" not in text, where
        assert not LEFTOVER.search(text), f"{where}: template syntax left: {LEFTOVER.search(text)}"
        assert check_mentions(text, live, where) >= 3, where
        for name, _, required in spec.arguments:
            if not required and name not in spec.defaults:
                shown = example(spec, name)
                assert (shown in text) == (name in args), f"{where}: {name}={shown!r} trace is wrong"


async def test_a_missing_required_argument_is_a_protocol_error_naming_it(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    checked = 0
    for spec in PROMPTS:
        for name, _, required in spec.arguments:
            if not required:
                continue
            args = {n: example(spec, n) for n, _, r in spec.arguments if r and n != name}
            with pytest.raises(MCPError) as caught:
                await live.client.get_prompt(spec.name, args)
            assert caught.value.error.code == INVALID_PARAMS
            assert f"missing required argument '{name}'" in caught.value.error.message
            assert "e.g." in caught.value.error.message
            checked += 1
    assert checked >= 3
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not noisy, [f"{r.name}: {r.getMessage()}" for r in noisy]


@pytest.mark.parametrize(
    ("prompt", "args", "named", "hint"),
    [
        ("catch_up_inbound", {"since": "yesterday"}, "since", "2026-10-30T08:00:00Z"),
        ("weekly_cx_report", {"week_start": "last monday"}, "week_start", "YYYY-MM-DD"),
        ("weekly_cx_report", {"timezone": "Mars/Olympus"}, "timezone", "Asia/Bangkok"),
        ("draft_ticket_reply", {"ticket_number": "#1042"}, "ticket_number", "whole number"),
        ("summarize_customer_history", {"customer": "x", "days": "365"}, "days", "from 1 to 92"),
        ("find_customer", {"identifier": "x", "who": "y"}, "who", "takes: identifier"),
    ],
)
async def test_a_malformed_or_unknown_argument_is_a_protocol_error_with_the_expected_format(
    live: Live, caplog: pytest.LogCaptureFixture, prompt: str, args: dict[str, str], named: str, hint: str
) -> None:
    with pytest.raises(MCPError) as caught:
        await live.client.get_prompt(prompt, args)
    assert caught.value.error.code == INVALID_PARAMS
    assert f"'{named}'" in caught.value.error.message and hint in caught.value.error.message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_weekly_report_computes_the_week_and_passes_the_timezone(live: Live) -> None:
    result = await live.client.get_prompt("weekly_cx_report", {"timezone": "Asia/Bangkok"})
    text = result.messages[0].content.text  # type: ignore[union-attr]
    call = re.search(
        r'`list_cx_logs\(start="(\d{4}-\d{2}-\d{2})T00:00:00", end="(\d{4}-\d{2}-\d{2})T00:00:00"', text
    )
    assert call, text
    start, end = date.fromisoformat(call.group(1)), date.fromisoformat(call.group(2))
    assert start.weekday() == 0 and end - start == timedelta(days=7)
    assert start < datetime.now(UTC).date() - timedelta(days=0)
    assert 'timezone="Asia/Bangkok"' in text
    assert "`sla_status`" in text and "slaStatus" not in text


def test_computed_defaults_follow_the_clock_and_the_zone() -> None:
    specs = {p.name: p for p in PROMPTS}
    # Sunday 2026-11-08 20:00 UTC is already Monday 2026-11-09 in Bangkok.
    now = datetime(2026, 11, 8, 20, 0, tzinfo=UTC)
    utc = specs["weekly_cx_report"].render({}, now=now)
    bangkok = specs["weekly_cx_report"].render({"timezone": "Asia/Bangkok"}, now=now)
    assert 'start="2026-10-26T00:00:00", end="2026-11-02T00:00:00"' in utc
    assert 'start="2026-11-02T00:00:00", end="2026-11-09T00:00:00"' in bangkok
    catch_up = specs["catch_up_inbound"].render({}, now=now)
    assert 'since="2026-11-07T20:00:00Z"' in catch_up
    given = specs["catch_up_inbound"].render({"since": "2026-11-01T09:00:00+07:00"}, now=now)
    assert 'since="2026-11-01T02:00:00Z"' in given
    history = specs["summarize_customer_history"].render({"customer": "a", "days": "7"}, now=now)
    assert 'start="2026-11-01T20:00:00Z", end="2026-11-08T20:00:00Z"' in history


def test_user_text_cannot_break_a_tool_call() -> None:
    spec = next(p for p in PROMPTS if p.name == "triage_open_tickets")
    text = spec.render({"priority": 'high", status="closed'})
    assert 'priority="high\\", status=\\"closed"' in text


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("Use {tone} here.", "may only appear inside"),
        ("Use {colour}.", "not a declared argument"),
        ("{#tone}in a {tone} tone{/tone} and {missing + 2 days}", "not a declared argument"),
    ],
)
def test_a_template_that_would_leave_a_trace_is_refused_when_loaded(body: str, problem: str) -> None:
    text = f'+++\nname = "p"\n[[arguments]]\nname = "tone"\nrequired = false\n+++\n{body}\n'
    with pytest.raises(PromptFileError, match=problem):
        parse_prompt(text, source="p.md")
    assert parse_prompt(text.replace(body, "{#tone}in a {tone} tone{/tone}"), source="p.md").name == "p"


async def test_an_unknown_prompt_is_a_protocol_error_with_the_nearest_names(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MCPError) as caught:
        await live.client.get_prompt("weekly_cx_reprot", {})
    assert caught.value.error.code == INVALID_PARAMS
    assert (
        "Unknown prompt \"weekly_cx_reprot\"; did you mean 'weekly_cx_report'?" in caught.value.error.message
    )
    assert "find_customer" in caught.value.error.message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
