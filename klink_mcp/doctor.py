"""`klink-mcp doctor`: check the configuration, the credentials and reachability, and probe every read.

The report says what is configured (target, auth scheme, toolsets, confirmation mode and where
approvals go), then probes every read (GET) operation of the catalogue once, so a user whose tenant
differs from the [inferred] parts of the contract knows which paths to override.

It tells the truth, fast: one line per problem. One probe first decides whether K-LINK is reachable
at all (about 2 s at most) and whether it takes the credentials; if not, that is said once, with what
to do, and nothing else is probed. The social-platform lookup is probed with an id that cannot
exist: a 404 from the route itself ("no contact") means it answers; a 404 `Cannot GET ...` means
the path does not exist on this tenant.

This module must not import `mcp` (the report must not wait for the MCP stack to load), must not
write anything to K-LINK (reads only), and never prints a secret.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2

from klink_mcp.api import errors as api_errors
from klink_mcp.api.auth import describe_scheme
from klink_mcp.api.catalog import Catalog
from klink_mcp.api.client import KlinkClient
from klink_mcp.config import ConfigError, Settings
from klink_mcp.toolsets import TOOLSET_NAMES

# Where the approval page is served (klink_mcp.approval_page.APPROVAL_PATH; a test keeps them equal).
# Not imported from there: that module loads the MCP SDK's auth stack, ~1 s of start-up a doctor run
# (which must answer within about 3 s) does not need.
APPROVAL_PATH = "/approvals"

# The one reachability probe: at most this long, one attempt.
REACH_TIMEOUT_S = 2.0
# Every other probe: one attempt each, run together, each bounded.
PROBE_DEADLINE_S = 10.0
PROBE_CONCURRENCY = 4  # together for speed, but not a burst a rate limiter would notice
# An id no tenant has: the social-platform lookup must answer "no contact" for it.
IMPOSSIBLE_ID = "klink-doctor-no-such-id-0000"
IMPOSSIBLE_UUID = "00000000-0000-4000-8000-00000000d0c7"

SANDBOX_BASE_URL = "http://sandbox.klink.invalid"


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")


def approval_channel(settings: Settings) -> str:
    """Where a person approves guarded calls, for the summary: exactly what the settings make the guard do."""
    if settings.confirm == "off":
        return "none: guarded tools run without asking (KLINK_CONFIRM=off)"
    if settings.confirm == "elicit":
        return "the client's elicitation only (clients without it cannot run guarded tools; no approval page)"
    if settings.confirm == "token":
        return (
            "the client's elicitation form, else a two-step confirmation_token the model can pass itself "
            "(headless automation only; no approval page)"
        )
    port = str(settings.approval_port) if settings.approval_port else "<ephemeral port>"
    if settings.resource_url:
        parts = urlsplit(settings.resource_url)
        http = f"{parts.scheme}://{parts.netloc}{APPROVAL_PATH}/<id>"
    else:
        http = f"<this server>{APPROVAL_PATH}/<id>"
    page = f"stdio: http://127.0.0.1:{port}{APPROVAL_PATH}/<id>; serve --http: {http}"
    extras = [f"open {int(settings.approval_ttl_s)} s"]
    if settings.approval_open_browser:
        extras.append("opened in the desktop browser")
    if settings.oauth_client_id:
        extras.append("sign-in required")
    if settings.four_eyes_tools:
        extras.append(f"four eyes for {', '.join(settings.four_eyes_tools)}")
    return (
        "the client's elicitation form, else URL elicitation, else the approval page "
        f"({page}; {', '.join(extras)})"
    )


def _summary(settings: Settings) -> list[str]:
    target = "embedded sandbox tenant (demo data)" if settings.uses_sandbox else settings.base_url
    toolsets = ", ".join(settings.toolsets) if settings.toolsets else f"all ({', '.join(TOOLSET_NAMES)})"
    return [
        f"target         : {target}",
        f"auth           : {describe_scheme(settings)}",
        f"toolsets       : {toolsets}",
        f"read-only      : {'yes' if settings.read_only else 'no'}",
        f"confirmations  : KLINK_CONFIRM={settings.confirm}; approvals: {approval_channel(settings)}",
        f"audit log      : {settings.audit_log or 'in memory only'}",
    ]


def _auth_advice(settings: Settings) -> str:
    if settings.uses_sandbox:
        return "the sandbox token differs from KLINK_SANDBOX_TOKEN"
    if settings.basic_user is not None:
        return "check KLINK_BASIC_USER and KLINK_BASIC_PASSWORD"
    return (
        "check KLINK_API_TOKEN: copy it again from the K-LINK dashboard (Developer Tools app, or "
        "Settings -> Channels & Integration -> API Tokens) and check its expiry"
    )


def _is_missing_route(exc: api_errors.KlinkAPIError) -> bool:
    return isinstance(exc, api_errors.NotFound) and any(m.startswith("Cannot ") for m in exc.messages)


def _base_url_hint(settings: Settings) -> str:
    parts = urlsplit(settings.base_url)
    if parts.path.strip("/"):
        return (
            f"; KLINK_BASE_URL has a path ({parts.path}) but every K-LINK path already starts with /api/v1: "
            f"try KLINK_BASE_URL={parts.scheme}://{parts.netloc}"
        )
    return ""


def _client(settings: Settings, transport: httpx2.AsyncBaseTransport | None, *, reach: bool) -> KlinkClient:
    """A client that tries once: the doctor reports what it sees instead of retrying past it."""
    limit = REACH_TIMEOUT_S if reach else PROBE_DEADLINE_S
    bounded = settings.model_copy(
        update={
            "max_attempts": 1,
            "connect_timeout_s": min(settings.connect_timeout_s, limit),
            "read_timeout_s": min(settings.read_timeout_s, limit),
            "call_deadline_s": min(settings.call_deadline_s, limit),
        }
    )
    return KlinkClient.from_settings(bounded, transport=transport)


async def _local_problems(settings: Settings) -> list[str]:
    from klink_mcp.preflight import check_events_store, check_settings

    problems: list[str] = []
    try:
        check_settings(settings)
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        path = await check_events_store(settings)
        _write(f"events db      : {path}")
    except ConfigError as exc:
        problems.append(str(exc))
    return problems


async def run_doctor(settings: Settings, *, transport: httpx2.AsyncBaseTransport | None = None) -> int:
    """Print the report; exit code 0 when nothing failed, 1 otherwise.

    `transport` (tests) replaces the HTTP transport to K-LINK; in sandbox mode without one, an
    in-process sandbox tenant answers.
    """
    for line in _summary(settings):
        _write(line)
    problems = await _local_problems(settings)
    for problem in problems:
        _write(f"FAIL  {problem}")
    if any("KLINK_OP_" in p or "operations." in p for p in problems):
        return _finish(len(problems))  # the catalogue itself is unusable: nothing to probe with

    effective = settings
    if settings.uses_sandbox and transport is None:
        from klink_mcp.sandbox import SandboxTenant, SandboxTransport

        tenant = (
            SandboxTenant.from_fixture(settings.sandbox_fixture)
            if settings.sandbox_fixture and not problems
            else SandboxTenant.seeded()
        )
        transport = SandboxTransport(tenant, token=settings.sandbox_token)
        effective = settings.model_copy(update={"base_url": SANDBOX_BASE_URL})

    failures = len(problems)
    async with _client(effective, transport, reach=True) as reach:
        first = reach.catalog["list_contacts"]
        try:
            page = await reach.list_contacts(page_size=1)
        except api_errors.Unauthorized:
            _write(
                f"FAIL  K-LINK refused the credentials (HTTP 401, {describe_scheme(settings)}): {_auth_advice(settings)}"
            )
            return _finish(failures + 1)
        except api_errors.KlinkConnectionError as exc:
            host = urlsplit(effective.base_url).netloc
            _write(
                f"FAIL  cannot reach K-LINK at {host} ({exc.message}); check KLINK_BASE_URL, the network "
                f"and any proxy (probed once, {REACH_TIMEOUT_S:g} s)"
            )
            return _finish(failures + 1)
        except (api_errors.ServerError, api_errors.RateLimited) as exc:
            # K-LINK is there but failing or throttling: every other probe would say the same.
            _write(f"FAIL  K-LINK answered the first probe with {_short(exc)}; try again later")
            return _finish(failures + 1)
        except api_errors.KlinkAPIError as exc:
            hint = _base_url_hint(effective) if _is_missing_route(exc) else ""
            _write(f"FAIL  list_contacts {first.method} {first.path}: {_short(exc)}{hint}")
            if hint:
                return _finish(failures + 1)  # every other path would fail the same way
            failures += 1
            page = None
        except api_errors.KlinkError as exc:
            _write(f"FAIL  list_contacts {first.method} {first.path}: {_short(exc)}")
            failures += 1
            page = None
        else:
            _write(f"ok    {'list_contacts':36} {first.method} {first.path} [{first.status}]")
    contact_id = str(page.items[0].id) if page is not None and page.items else IMPOSSIBLE_UUID

    async with _client(effective, transport, reach=False) as client:
        failures += await _probe_the_rest(client, contact_id)
    return _finish(failures)


def _short(exc: api_errors.KlinkError) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def _finish(failures: int) -> int:
    _write(
        "all checks passed; all read endpoints answered" if not failures else f"{failures} problem(s) found"
    )
    return 0 if not failures else 1


async def _probe_the_rest(client: KlinkClient, contact_id: str) -> int:
    """Probe every read operation but list_contacts, together; print one line each; return the failures."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    probes: dict[str, Callable[[], Awaitable[Any]]] = {
        "find_contacts_by_social_platform_id": lambda: client.find_contacts_by_social_platform_id(
            IMPOSSIBLE_ID
        ),
        "get_contact_form_fields": lambda: client.get_contact_form_fields(page_size=1),
        "get_contact": lambda: client.get_contact(contact_id),
        "list_contact_groups": client.list_contact_groups,
        "list_tags": client.list_tags,
        "list_channels": client.list_channels,
        "list_tickets": lambda: client.list_tickets(page_size=1),
        "list_contact_tickets": lambda: client.list_contact_tickets(contact_id, page_size=1),
        "get_ticket_form_fields": lambda: client.get_ticket_form_fields(page_size=1),
        "list_categories": client.list_categories,
        "list_cx_logs": lambda: client.list_cx_logs(
            start=now - dt.timedelta(days=1), end=now, timezone="UTC"
        ),
    }
    # Answers with "not found" are fine where the id may not exist (no contacts, or the impossible id).
    not_found_ok = {"find_contacts_by_social_platform_id"} | (
        {"get_contact", "list_contact_tickets"} if contact_id == IMPOSSIBLE_UUID else set()
    )
    reads = [op.name for op in Catalog() if op.method == "GET" and op.name != "list_contacts"]
    lines: dict[str, str] = {}

    async def probe(name: str) -> None:
        op = client.catalog[name]
        label = f"{name:36} {op.method} {op.path} [{op.status}]"
        call = probes.get(name)
        if call is None:
            lines[name] = f"FAIL  {label}: the doctor has no probe for this operation"
            return
        try:
            await call()
        except api_errors.NotFound as exc:
            if name in not_found_ok and not _is_missing_route(exc):
                lines[name] = f"ok    {label} (answers: not found, as expected)"
            else:
                lines[name] = f"FAIL  {label}: {_missing_route_advice(name, exc)}"
        except api_errors.Forbidden as exc:
            lines[name] = (
                f"FAIL  {label}: HTTP 403 - the credentials lack the ability for this ({_short(exc)})"
            )
        except api_errors.KlinkError as exc:
            lines[name] = f"FAIL  {label}: {_short(exc)}"
        else:
            lines[name] = f"ok    {label}"

    polite = anyio.CapacityLimiter(PROBE_CONCURRENCY)

    async def limited(name: str) -> None:
        async with polite:
            await probe(name)

    async with anyio.create_task_group() as tg:
        for name in reads:
            tg.start_soon(limited, name)
    for name in reads:
        _write(lines[name])
    return sum(1 for line in lines.values() if line.startswith("FAIL"))


def _missing_route_advice(name: str, exc: api_errors.KlinkAPIError) -> str:
    if not _is_missing_route(exc):
        return _short(exc)
    return (
        f"the path does not exist on this tenant ({exc.messages[0][:80]}); override it: "
        f"[operations.{name}] path = ... in the TOML file, or KLINK_OP_{name.upper()}_PATH"
    )
