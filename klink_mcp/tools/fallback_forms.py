"""Minimal built-in form fields, used only when the tenant's form fields cannot be fetched at start.

They keep create/update usable (name/title and the common built-ins) while the server says why the
typed tenant fields are missing; `refresh_form_schemas` replaces them once K-LINK answers.
"""

from __future__ import annotations

from typing import Any

from klink_mcp.forms import FormKind


def _f(
    name: str, display: str, ftype: str = "text", required: bool = False, options: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "system_name": name,
        "display_name": display,
        "type": ftype,
        "is_default": True,
        "is_required": required,
        "options": [{"value": o, "label": o} for o in options],
    }


FALLBACK_FIELDS: dict[FormKind, list[dict[str, Any]]] = {
    "contact": [
        _f("name", "Name", required=True),
        _f("address", "Address"),
        _f("channel", "Channel"),
        _f("notes", "Notes", "textarea"),
        _f("email", "Email", "email"),
        _f("phone", "Phone", "phone"),
    ],
    "ticket": [
        _f("title", "Title", required=True),
        _f("description", "Description", "textarea"),
        _f("status", "Status", "select", options=("open", "in progress", "pending", "resolved", "closed")),
        _f("priority", "Priority", "select", options=("low", "medium", "high", "urgent")),
        _f("channel", "Channel"),
        _f("type", "Type"),
    ],
}
