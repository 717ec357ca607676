"""Property: every argument combination able to lose data or reach a customer is guarded (issue 10).

Hypothesis draws arguments from each write tool's PUBLISHED input schema (`tools/list`, strategies of
tests/robustness/_schema_strategies.py, with real ids and tag names mixed in). Each drawn call runs
twice over the same state:

- on an ORACLE server with the guard off, over a copy of the target: the target's record before and
  after says whether the call lost data (a field cleared, a name, e-mail or phone replaced, a tag
  removed, a record deleted, a ticket moved to a closing status) or reached a customer (a send);
- on the GUARDED server (a client without elicitation; token mode, where the guard's answer is a
  plain `confirmation_required`), counted at its upstream.

Asserted: a call that lost data or reached a customer on the oracle was held by the guard and the
guarded upstream saw no write; a call the guard did not hold lost nothing and ran. The policy reads
arguments, not fresh data, so it may hold a call that would have changed nothing on this target
(setting a name to the name it has, clearing an empty field): the opposite direction is not asserted.

Synchronous tests calling into a blocking portal, as in tests/robustness/test_fuzz.py (hypothesis
ends an example by raising from `data.draw`, which must not happen inside the event loop).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from klink_mcp.guard.policy import DEFAULT_APPROVAL_STATUSES
from klink_mcp.sandbox import SandboxTenant
from tests.helpers.server import make_server
from tests.robustness._schema_strategies import valid_arguments

TOOLS = (
    "update_contact",
    "update_contact_tags",
    "update_ticket",
    "update_ticket_status",
    "delete_contact",
    "send_message",
    "create_ticket",
)
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
CONTACT_FIELDS = ("name", "address", "notes", "channel")
TICKET_FIELDS = ("title", "description", "priority", "assigneeId")


class Pair:
    """The guarded server and its oracle (guard off), each over its own tenant, in one portal."""

    def __init__(
        self, portal: BlockingPortal, guarded: Client, oracle: Client, tenants: tuple[Any, Any]
    ) -> None:
        self.portal, self.guarded, self.oracle = portal, guarded, oracle
        self.tenant, self.oracle_tenant = tenants
        self.schemas: dict[str, dict[str, Any]] = {}
        self.held = 0
        self.lost = 0


async def _call(client: Client, tool: str, args: dict[str, Any]) -> Any:
    with anyio.fail_after(20):
        return await client.call_tool(tool, args)


async def _schemas(client: Client) -> dict[str, dict[str, Any]]:
    return {t.name: dict(t.input_schema) for t in (await client.list_tools()).tools}


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    tenant = SandboxTenant.seeded()
    oracle_tenant = SandboxTenant.seeded()
    with start_blocking_portal("asyncio") as portal:
        guarded = Client(make_server(tenant, confirm="token"))
        oracle = Client(make_server(oracle_tenant, confirm="off"))
        with portal.wrap_async_context_manager(guarded) as g, portal.wrap_async_context_manager(oracle) as o:
            p = Pair(portal, g, o, (tenant, oracle_tenant))
            p.schemas = portal.call(_schemas, g)
            yield p


def hints(tenant: SandboxTenant) -> dict[str, list[Any]]:
    contacts = [c for c in tenant.contacts.values() if not c.get("deletedAt") and c.get("tags")][:3]
    tickets = list(tenant.tickets.values())[:4]
    names = sorted(t["name"] for t in tenant.tags.values())
    held = [t["name"] for t in contacts[0]["tags"]]
    return {
        "contact_id": [c["id"] for c in contacts],
        "ticket_id": [t["id"] for t in tickets],
        "tags": [[], held, [n.upper() for n in held[:1]], names[:2], ["vip"]],
        "status": [*DEFAULT_APPROVAL_STATUSES, "open", "pending"],
        "emails": [[], ["someone@example.com"]],
        "phones": [[], ["+6591234567"]],
        "notes": ["", "called back"],
        "message": ["Hello, your parcel is on its way."],
        "assignee_id": [a["id"] for a in list(tenant.agents.values())[:2]],
    }


def _lower_tags(record: dict[str, Any]) -> set[str]:
    return {str(t["name"]).lower() for t in record.get("tags") or []}


def _values(items: Any, key: str) -> set[str]:
    return {str(i.get(key)) for i in items or [] if i.get(key)}


def _cleared(before: Any, after: Any) -> bool:
    return bool(before) and not after


def lost_data(before: dict[str, Any] | None, after: dict[str, Any] | None, kind: str) -> list[str]:
    """What the oracle's call lost on the target record (empty: nothing)."""
    if before is None or after is None:
        return []
    lost: list[str] = []
    if not before.get("deletedAt") and after.get("deletedAt"):
        lost.append("deleted")
    if _lower_tags(before) - _lower_tags(after):
        lost.append("tag removed")
    for key, value in (before.get("customFields") or {}).items():
        if _cleared(value, (after.get("customFields") or {}).get(key)):
            lost.append(f"cleared {key}")
    if kind == "contact":
        lost += [f"cleared {k}" for k in CONTACT_FIELDS if _cleared(before.get(k), after.get(k))]
        if before.get("name") and after.get("name") and before["name"] != after["name"]:
            lost.append("name replaced")
        if _values(before.get("contactEmails"), "email") - _values(after.get("contactEmails"), "email"):
            lost.append("e-mail replaced")
        if _values(before.get("contactPhones"), "phone") - _values(after.get("contactPhones"), "phone"):
            lost.append("phone replaced")
    else:
        lost += [f"cleared {k}" for k in TICKET_FIELDS if _cleared(before.get(k), after.get(k))]
        closing = str(after.get("status")).lower() in DEFAULT_APPROVAL_STATUSES
        if closing and before.get("status") != after.get("status"):
            lost.append("closed or solved")
    return lost


def _target(tenant: SandboxTenant, args: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    if "ticket_id" in args:
        return "ticket", tenant.tickets.get(args["ticket_id"])
    return "contact", tenant.contacts.get(args.get("contact_id", ""))


def check(pair: Pair, tool: str, args: dict[str, Any]) -> None:
    kind, target = _target(pair.tenant, args)
    table = pair.oracle_tenant.tickets if kind == "ticket" else pair.oracle_tenant.contacts
    if target is not None:  # the oracle starts from the guarded tenant's state of the target
        table[target["id"]] = copy.deepcopy(target)
    before = copy.deepcopy(target)
    pair.oracle_tenant.reset_requests()
    pair.portal.call(_call, pair.oracle, tool, args)
    after = table.get(target["id"]) if target is not None else None
    lost = lost_data(before, after, kind)
    sent = [
        r
        for r in pair.oracle_tenant.requests
        if r.method == "POST" and r.path.endswith("/messages/send") and r.status < 300
    ]
    if sent:
        lost.append("reached the customer")

    pair.tenant.reset_requests()
    result = pair.portal.call(_call, pair.guarded, tool, args)
    held = not result.is_error and (result.structured_content or {}).get("status") == "confirmation_required"
    writes = [(r.method, r.path) for r in pair.tenant.requests if r.method != "GET"]
    pair.held += held
    pair.lost += bool(lost)
    if lost:
        assert held, f"{tool}({args!r}) {lost} without approval"
    if held:
        assert writes == [], f"{tool}: held, yet the upstream saw {writes}"
    elif not result.is_error:
        assert not lost
        assert writes, f"{tool}({args!r}) reported done without a write"


@pytest.mark.parametrize("tool", TOOLS)
@PROPERTY
@given(data=st.data())
def test_every_call_able_to_lose_data_or_reach_a_customer_is_held(
    pair: Pair, tool: str, data: st.DataObject
) -> None:
    real = hints(pair.tenant)
    args = data.draw(valid_arguments(pair.schemas[tool], hints=real), label="arguments")
    args.pop("confirmation_token", None)
    # Targets that exist (unknown ids are refused before any write: tests/robustness covers them).
    for key in ("contact_id", "ticket_id"):
        if key in args:
            args[key] = data.draw(st.sampled_from(real[key]), label=key)
    check(pair, tool, args)


def test_the_property_saw_both_sides(pair: Pair) -> None:
    # Runs after the property (same module session): it held calls, and some of them lost data.
    assert pair.held > 0 and pair.lost > 0, (pair.held, pair.lost)
