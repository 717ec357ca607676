"""`klink-mcp doctor`: check configuration, the token and reachability, and probe every read endpoint.

It reports, per catalogued GET operation, whether the tenant answered and how, so a user whose
tenant differs from the [inferred] parts of the contract knows which paths to override.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from klink_mcp.api import errors as api_errors
from klink_mcp.api.client import KlinkClient
from klink_mcp.config import Settings


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")


async def run_doctor(settings: Settings) -> int:
    """Print a report; exit code 0 when every probe answered, 1 otherwise."""
    from klink_mcp.server import SANDBOX_BASE_URL, make_sandbox_transport

    _write(f"base URL       : {settings.base_url if not settings.uses_sandbox else 'embedded sandbox'}")
    _write(f"API token      : {'set' if settings.api_token else 'NOT set (sandbox mode)'}")
    _write(f"read-only      : {settings.read_only}")
    _write(f"confirmations  : {settings.confirm}")
    transport = None
    effective = settings
    if settings.uses_sandbox:
        transport, url = make_sandbox_transport(settings)
        effective = settings.model_copy(update={"base_url": url or SANDBOX_BASE_URL})
    client = KlinkClient.from_settings(effective, transport=transport)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    probes: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("list_contacts", lambda: client.list_contacts(page_size=1)),
        ("get_contact_form_fields", lambda: client.get_contact_form_fields(page_size=1)),
        ("list_contact_groups", client.list_contact_groups),
        ("list_tags", client.list_tags),
        ("list_channels", client.list_channels),
        ("list_tickets", lambda: client.list_tickets(page_size=1)),
        ("get_ticket_form_fields", lambda: client.get_ticket_form_fields(page_size=1)),
        ("list_categories", client.list_categories),
        (
            "list_cx_logs",
            lambda: client.list_cx_logs(start=now - dt.timedelta(days=1), end=now, timezone="UTC"),
        ),
    ]
    failures = 0
    async with client:
        first_contact: str | None = None
        for name, probe in probes:
            op = client.catalog[name]
            label = f"{op.method} {op.path} [{op.status}]"
            try:
                result = await probe()
                _write(f"ok    {name:28} {label}")
                if name == "list_contacts" and getattr(result, "items", None):
                    first_contact = str(result.items[0].id)
            except api_errors.Unauthorized:
                _write(f"FAIL  {name:28} {label}: 401 - the token is wrong or expired")
                failures += 1
            except api_errors.KlinkError as exc:
                _write(f"FAIL  {name:28} {label}: {type(exc).__name__}: {str(exc)[:120]}")
                failures += 1
        if first_contact:
            for name, probe in (
                ("get_contact", lambda: client.get_contact(first_contact)),
                ("list_contact_tickets", lambda: client.list_contact_tickets(first_contact, page_size=1)),
            ):
                op = client.catalog[name]
                try:
                    await probe()
                    _write(f"ok    {name:28} {op.method} {op.path} [{op.status}]")
                except api_errors.KlinkError as exc:
                    _write(f"FAIL  {name:28} {op.method} {op.path} [{op.status}]: {type(exc).__name__}")
                    failures += 1
    _write("all read endpoints answered" if not failures else f"{failures} probe(s) failed; see above")
    return 0 if not failures else 1
