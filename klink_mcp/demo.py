"""`klink-mcp demo`: a scripted assistant session through a real MCP client, as a readable transcript.

It drives the server exactly as an assistant would (find a customer, triage open tickets, draft a
reply, try a guarded delete and see it stop for confirmation) over the in-memory MCP transport,
against the embedded sandbox unless a token is configured AND `--sandbox` is not given. It never
confirms the destructive step on its own.
"""

from __future__ import annotations

import json
import sys
import textwrap
from typing import Any

from mcp import Client

from klink_mcp.config import Settings


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def _show(result: Any, limit: int = 900) -> None:
    data = result.structured_content
    text = json.dumps(data, ensure_ascii=False, indent=1) if data is not None else _text(result)
    if len(text) > limit:
        text = text[:limit] + f"\n  ... ({len(text) - limit} more characters)"
    _out(textwrap.indent(text, "  | "))


async def run_demo(settings: Settings) -> int:
    from klink_mcp.server import build_server

    if not settings.uses_sandbox:
        settings = settings.model_copy(update={"sandbox": True})
    if settings.confirm == "on":
        # The script plays the user too, so it shows the headless two-step token flow (KLINK_CONFIRM=token).
        settings = settings.model_copy(update={"confirm": "token"})
    server = build_server(settings)
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
        _out(f"# klink-mcp demo: {len(tools)} tools over MCP ({client.protocol_version}), sandbox tenant\n")

        _out("## 1. The user asks: 'find the customer Tan'")
        _out("> assistant calls list_contacts(keyword='tan', page_size=3)")
        found = await client.call_tool("list_contacts", {"keyword": "tan", "page_size": 3})
        _show(found)
        items = (found.structured_content or {}).get("items") or []
        if not items:
            found = await client.call_tool("list_contacts", {"page_size": 3})
            items = (found.structured_content or {}).get("items") or []
        contact_id = items[0]["id"]

        _out("\n## 2. 'What is open right now?' - triage")
        _out("> assistant calls list_tickets(status='open', page_size=5)")
        open_tickets = await client.call_tool("list_tickets", {"status": "open", "page_size": 5})
        _show(open_tickets)
        tickets = (open_tickets.structured_content or {}).get("items") or []

        if tickets:
            number = tickets[0]["ticket_number"]
            _out(
                f"\n## 3. 'Draft a reply to #{number}' - the assistant reads the ticket (customer text fenced)"
            )
            _out(f"> assistant calls get_ticket_by_number(ticket_number={number})")
            _show(await client.call_tool("get_ticket_by_number", {"ticket_number": number}))
            _out("  (the assistant writes a draft for the user; sending is a separate, confirmed step)")

        _out("\n## 4. A model tries a destructive action without the user: delete_contact")
        _out(f"> assistant calls delete_contact(contact_id='{contact_id}')")
        attempt = await client.call_tool("delete_contact", {"contact_id": contact_id})
        _show(attempt, limit=1400)
        status = (attempt.structured_content or {}).get("status")
        _out(f"\n  -> status {status!r}: nothing was deleted. The preview goes to the user; only their")
        _out("     approval may lead to a second call with the confirmation_token.")

        check = await client.call_tool("get_contact", {"contact_id": contact_id})
        _out(f"\n> get_contact afterwards: {'still there' if not check.is_error else 'gone'}")

        token = (attempt.structured_content or {}).get("confirmation_token")
        if token:
            _out("\n## 5. The user reads the preview and answers 'yes, delete it'")
            _out("> assistant calls delete_contact again with the same arguments + confirmation_token")
            confirmed = await client.call_tool(
                "delete_contact", {"contact_id": contact_id, "confirmation_token": token}
            )
            _show(confirmed)
            replay = await client.call_tool(
                "delete_contact", {"contact_id": contact_id, "confirmation_token": token}
            )
            _out("> the same token used again (a replay) is refused:")
            _out(textwrap.indent(_text(replay), "  | "))
    _out("\nDone. Configure KLINK_API_TOKEN to use your own tenant; see README.md.")
    return 0
