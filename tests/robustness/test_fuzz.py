"""Fuzz every tool through the real MCP path, in both protocol eras, with arguments derived from its schema.

For each tool the server lists, hypothesis draws arguments from the tool's published input schema (see
_schema_strategies.py) - valid ones, and mutated ones (wrong JSON types, huge and odd unicode strings with
bidi/zero-width/NUL characters, missing required keys, unknown keys, deep nesting, broken bounds,
patterns and enums). The schema itself is the oracle. Whatever the input:

* `call_tool` never fails at the protocol level (no MCPError) and the server never crashes (no bare
  "Error executing tool X", no ERROR log record);
* an input the schema rejects is a tool error (`is_error`) whose message names the offending field, and
  it sends ZERO requests upstream (`tenant.requests` stays empty);
* an input the schema accepts is either a success or a tool error carrying a machine-readable code in
  `_meta["klink_mcp/error"]` - never an argument-validation failure (the schema promised to accept it);
* an error text never carries a raw NUL or bidi control (echoed input is escaped).

One server session (and one sandbox tenant) per protocol era serves every hypothesis run of the module:
seeding a tenant and starting a server costs ~0.5 s, a call ~1-20 ms. Side effects of valid calls
(created contacts, updated tickets) accumulate in that tenant, which is harmless: deletes and sends stop
at a confirmation preview. The session lives in an anyio blocking portal (an event loop on a helper
thread) and the tests are synchronous: hypothesis signals the end of an example's data by raising a
BaseException from `data.draw`, which inside an anyio-plugin coroutine would tear down the shared event
loop; drawing in plain sync code and calling into the portal keeps the two apart.

Defects this fuzzing found (F1-F7) are fixed and their regression tests sit at the end of the module.
F1 was pydantic's lax mode converting a numeric string or a bool for an integer and "yes" for a boolean,
which the schema rejects: the server now checks every call against the published schema strictly before
the SDK converts anything (klink_mcp.tools.arg_errors.strict_arguments). A number for a date-time is
refused too (it meant 1970).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.shared.exceptions import MCPError

from klink_mcp.sandbox import SandboxTenant

from ._schema_strategies import fields_named, mutated_arguments, schema_errors, valid_arguments
from ._support import error_code, error_meta, is_crash, make_server, result_text

# Every tool the default server lists. A new tool fails test_every_listed_tool_is_fuzzed until it is added.
FUZZ_TOOLS = (
    "create_channel",
    "create_contact",
    "create_ticket",
    "delete_contact",
    "find_contacts_by_social_platform_id",
    "get_contact",
    "get_contact_form_fields",
    "get_ticket_by_number",
    "get_ticket_form_fields",
    "list_categories",
    "list_channels",
    "list_contact_groups",
    "list_contact_tickets",
    "list_contacts",
    "list_cx_logs",
    "list_recent_events",
    "list_tags",
    "list_tickets",
    "refresh_form_schemas",
    "send_message",
    "update_contact",
    "update_contact_tags",
    "update_ticket",
    "update_ticket_status",
)

# Budgets per tool and era. Invalid calls cost ~1 ms (nothing goes upstream); valid ones up to ~20 ms.
# ROBUSTNESS_FUZZ_SCALE=N multiplies them for a deeper (slower) run, e.g. before a release.
FUZZ_SCALE = max(1, int(os.environ.get("ROBUSTNESS_FUZZ_SCALE", "1")))
VALID_EXAMPLES = 8 * FUZZ_SCALE
MUTATED_EXAMPLES = 20 * FUZZ_SCALE
CALL_TIMEOUT_S = 20
# Characters an error message must never carry raw (echoed inputs are escaped by pydantic's repr).
RAW_FORBIDDEN = ("\x00", "\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069")
UPSTREAM_TEXT_CODES = {"upstream_validation", "upstream_error", "conflict", "not_found"}

FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        # One server session per module is the point: see the module docstring.
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


class FuzzSession:
    """One server session over one tenant, shared by a whole hypothesis run (not a dataclass: hypothesis
    pretty-prints dataclasses field by field, and the schemas are large)."""

    def __init__(
        self,
        portal: BlockingPortal,
        client: Client,
        tenant: SandboxTenant,
        schemas: dict[str, dict[str, Any]],
        hints: dict[str, list[Any]],
    ) -> None:
        self.portal = portal
        self.client = client
        self.tenant = tenant
        self.schemas = schemas
        self.hints = hints
        self.seen: dict[str, dict[str, int]] = {}

    def __repr__(self) -> str:  # hypothesis prints the test's arguments; keep it short
        return f"FuzzSession({len(self.schemas)} tools)"

    def count(self, tool: str, kind: str) -> None:
        per_tool = self.seen.setdefault(tool, {"valid": 0, "invalid": 0})
        per_tool[kind] += 1


def real_values(tenant: SandboxTenant) -> dict[str, list[Any]]:
    """Values of records that exist, mixed into generated arguments so valid calls also succeed."""
    contacts = [c for c in tenant.contacts.values() if not c.get("deletedAt")][:3]
    tickets = list(tenant.tickets.values())[:3]
    platform_ids = [p["socialPlatformId"] for c in contacts for p in c.get("platformContacts") or []][:3]
    return {
        "contact_id": [c["id"] for c in contacts],
        "ticket_id": [t["id"] for t in tickets],
        "ticket_number": [t["ticketNumber"] for t in tickets],
        "social_platform_id": platform_ids,
        "assignee_id": [a["id"] for a in list(tenant.agents.values())[:2]],
        "timezone": ["Asia/Singapore", "UTC", "Asia/Bangkok"],
        "start": ["2026-09-01T00:00:00"],
        "end": ["2026-11-01T00:00:00"],
    }


async def _list_schemas(client: Client) -> dict[str, dict[str, Any]]:
    return {tool.name: dict(tool.input_schema) for tool in (await client.list_tools()).tools}


@pytest.fixture(scope="module", params=["legacy", "auto"], ids=["handshake-era", "2026-era"])
def fuzz_session(request: pytest.FixtureRequest) -> Iterator[FuzzSession]:
    tenant = SandboxTenant.seeded()
    with start_blocking_portal("asyncio") as portal:
        client = Client(make_server(tenant), mode=request.param)  # type: ignore[arg-type]
        with portal.wrap_async_context_manager(client) as session:
            schemas = portal.call(_list_schemas, session)
            yield FuzzSession(portal, session, tenant, schemas, real_values(tenant))


async def _call(client: Client, tool: str, args: dict[str, Any]) -> Any:
    with anyio.fail_after(CALL_TIMEOUT_S):
        return await client.call_tool(tool, args)


def known_bug(tool: str, args: dict[str, Any]) -> str | None:
    """The finding an input would trip again (pin each with a strict xfail), else None.

    F2 (mixed naive/offset CX-log ranges) and F5 (URLs that break urlsplit) are fixed, so their inputs
    are fuzzed again like any other.
    """
    return None


def _breaks_urlsplit(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        urlsplit(value)
    except ValueError:
        return True
    return False


def _has_offset(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def call_and_check(session: FuzzSession, tool: str, args: dict[str, Any]) -> None:
    """One call, and every invariant of the module docstring."""
    schema = session.schemas[tool]
    errors = schema_errors(schema, args)
    assume(errors or known_bug(tool, args) is None)  # no known bugs remain; kept for the next finding
    session.tenant.reset_requests()
    try:
        result = session.portal.call(_call, session.client, tool, args)
    except MCPError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"{tool}: protocol-level error {exc!r} for arguments {args!r}")
    text = result_text(result)
    assert not is_crash(tool, result), f"{tool} crashed on {args!r}"
    if result.is_error and error_code(result) not in UPSTREAM_TEXT_CODES:  # those relay K-LINK's text: F7
        raw = sorted(repr(ch) for ch in RAW_FORBIDDEN if ch in text)
        assert not raw, f"{tool}: the error text carries raw {raw} (they must be escaped or stripped)"
    if errors:
        session.count(tool, "invalid")
        named = fields_named(schema, args, errors)
        assert result.is_error, (
            f"{tool} accepted arguments its schema rejects: {args!r} ({errors[0].message})"
        )
        assert session.tenant.requests == [], f"{tool} sent {session.tenant.requests!r} for invalid {args!r}"
        assert any(name in text for name in named), f"{tool}: error {text[:300]!r} names none of {named}"
        assert len(text) < 20_000, f"{tool}: the error echoes a huge input ({len(text)} chars)"
    else:
        session.count(tool, "valid")
        if result.is_error:
            assert error_code(result) is not None, (
                f"{tool} refused arguments its schema accepts, without a code: {args!r} -> {text[:400]!r}"
            )


def no_crash_logged(caplog: pytest.LogCaptureFixture) -> None:
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [f"{r.name}: {r.getMessage()}" for r in crashes[:3]]


def test_every_listed_tool_is_fuzzed(fuzz_session: FuzzSession) -> None:
    assert sorted(fuzz_session.schemas) == sorted(FUZZ_TOOLS)


@pytest.mark.parametrize("tool", FUZZ_TOOLS)
@settings(FUZZ_SETTINGS, max_examples=VALID_EXAMPLES)
@given(data=st.data())
def test_schema_valid_arguments_succeed_or_fail_with_a_code(
    fuzz_session: FuzzSession, tool: str, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    schema = fuzz_session.schemas[tool]
    args = data.draw(valid_arguments(schema, hints=fuzz_session.hints), label="arguments")
    call_and_check(fuzz_session, tool, args)
    no_crash_logged(caplog)


@pytest.mark.parametrize("tool", FUZZ_TOOLS)
@settings(FUZZ_SETTINGS, max_examples=MUTATED_EXAMPLES)
@given(data=st.data())
def test_mutated_arguments_are_refused_before_any_request(
    fuzz_session: FuzzSession, tool: str, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    schema = fuzz_session.schemas[tool]
    args = data.draw(mutated_arguments(schema, hints=fuzz_session.hints), label="arguments")
    call_and_check(fuzz_session, tool, args)
    no_crash_logged(caplog)


def test_the_fuzz_reached_both_sides_of_every_schema(fuzz_session: FuzzSession) -> None:
    if len(fuzz_session.seen) < len(FUZZ_TOOLS):
        pytest.skip("runs after the fuzz tests of this era (not selected in this run)")
    never_valid = sorted(tool for tool, n in fuzz_session.seen.items() if n["valid"] == 0)
    never_invalid = sorted(
        tool
        for tool, n in fuzz_session.seen.items()
        if n["invalid"] == 0 and fuzz_session.schemas[tool]["properties"]
    )
    assert never_valid == []
    assert never_invalid == []


# Inputs the schema rejects that pydantic's lax mode would convert (finding F1, fixed): a silent
# conversion is a guess about what the caller meant, so they are refused with the expected type named.
LAX_INPUTS = [
    pytest.param("list_contacts", {"page": True}, id="bool-as-integer"),
    pytest.param("list_contacts", {"page": "2"}, id="numeric-string-as-integer"),
    pytest.param("get_contact_form_fields", {"custom_only": "yes"}, id="word-as-boolean"),
]


def test_a_number_is_not_accepted_as_a_date_time(fuzz_session: FuzzSession) -> None:
    fuzz_session.tenant.reset_requests()
    result = fuzz_session.portal.call(_call, fuzz_session.client, "list_cx_logs", {"start": 0, "end": 86_400})
    assert result.is_error and error_code(result) == "validation"
    assert fuzz_session.tenant.requests == []


@pytest.mark.parametrize(("tool", "args"), LAX_INPUTS)
def test_inputs_the_schema_rejects_never_reach_upstream_even_when_convertible(
    fuzz_session: FuzzSession, tool: str, args: dict[str, Any]
) -> None:
    assert schema_errors(fuzz_session.schemas[tool], args), "the schema should reject this input"
    fuzz_session.tenant.reset_requests()
    result = fuzz_session.portal.call(_call, fuzz_session.client, tool, args)
    assert result.is_error and error_code(result) == "validation"
    (name,) = args
    assert f"{name}: got " in result_text(result), result_text(result)
    assert "not a string" in result_text(result)
    assert fuzz_session.tenant.requests == []


def test_a_cx_log_range_mixing_naive_and_offset_times_is_answered_not_crashed(
    fuzz_session: FuzzSession,
) -> None:
    args = {"start": "2026-09-01T00:00:00", "end": "2026-09-02T00:00:00+07:00"}
    assert schema_errors(fuzz_session.schemas["list_cx_logs"], args) == []
    result = fuzz_session.portal.call(_call, fuzz_session.client, "list_cx_logs", args)
    assert not is_crash("list_cx_logs", result), result_text(result)


@pytest.mark.anyio
async def test_a_malformed_custom_url_is_a_validation_error_not_a_server_error() -> None:
    tenant = SandboxTenant.seeded()
    contact = next(c for c in tenant.contacts.values() if not c.get("deletedAt"))
    # One attempt: a 5xx on PATCH would otherwise be retried with real backoff sleeps.
    async with Client(make_server(tenant, max_attempts=1)) as client:
        result = await client.call_tool(
            "update_contact", {"contact_id": contact["id"], "custom_fields": {"cf_website": "http://["}}
        )
    assert error_code(result) == "upstream_validation", result_text(result)


def test_an_argument_validation_failure_carries_the_validation_code_and_fields(
    fuzz_session: FuzzSession,
) -> None:
    result = fuzz_session.portal.call(_call, fuzz_session.client, "get_contact", {})
    assert result.is_error and "contact_id" in result_text(result)
    assert error_code(result) == "validation"
    assert error_meta(result).get("fields") == ["contact_id"]


async def _create_ticket_with_a_stale_tag() -> Any:
    # Tickets take tag NAMES the server maps to ids; a tag deleted between that listing and the write
    # (here: a listed tag the tenant does not hold, its id full of bidi controls) makes K-LINK refuse
    # with a text echoing the id.
    from klink_mcp.api.models import Tag

    tenant = SandboxTenant.seeded()
    server = make_server(tenant)
    state = server.klink_state  # type: ignore[attr-defined]
    contact_id = next(c["id"] for c in tenant.contacts.values() if not c.get("deletedAt"))
    async with Client(server) as client:
        real = state.client.list_tags  # the K-LINK client opens with the server's lifespan

        async def with_a_stale_tag() -> list[Tag]:
            return [*await real(), Tag(id="\u202dno-such-tag\u202e", name="gone")]

        state.client.list_tags = with_a_stale_tag
        args = {"contact_id": contact_id, "title": "x", "tags": ["gone"]}
        return await _call(client, "create_ticket", args)


def test_upstream_error_text_reaches_the_model_without_bidi_controls() -> None:
    with start_blocking_portal("asyncio") as portal:
        result = portal.call(_create_ticket_with_a_stale_tag)
    assert error_code(result) == "upstream_validation"
    assert not [ch for ch in RAW_FORBIDDEN if ch in result_text(result)]
