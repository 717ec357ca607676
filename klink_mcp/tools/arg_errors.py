"""Argument-validation failures from the SDK, rewritten for a model: short, field by field, with a code.

MCPServer validates arguments with pydantic before a tool runs and answers with pydantic's full
report (input echoes, type tags, help URLs). `rewrite_argument_error` turns that report into one line
per field plus `_meta["klink_mcp/error"] = {"code": "validation", "fields": [...]}`, the same shape as
the package's own validation errors. Anything it does not recognise is returned unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from klink_mcp.content import sanitize_text

ERROR_META_KEY = "klink_mcp/error"
_HEADER = re.compile(r"^Error executing tool (?P<tool>[\w-]+): \d+ validation errors? for \w+\n")
_DETAIL = re.compile(r"^\s{2}(?P<msg>.+?)(?: \[type=(?P<type>\w+).*\])?$")
MAX_FIELDS = 10


def _parse(report: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    loc: str | None = None
    for line in report.splitlines():
        if not line.strip() or line.startswith("    For further information"):
            continue
        if not line.startswith(" "):
            loc = line.strip()
            continue
        match = _DETAIL.match(line)
        if loc is not None and match:
            problems.append((loc, match.group("msg").strip()))
            loc = None
    return problems


def rewrite_argument_error(result: dict[str, Any]) -> dict[str, Any]:
    """Return `result` with a compact message and a validation code when it is an SDK argument error."""
    if not result.get("isError"):
        return result
    content = result.get("content") or []
    if len(content) != 1 or content[0].get("type") != "text":
        return result
    text = str(content[0].get("text", ""))
    header = _HEADER.match(text)
    meta = dict(result.get("_meta") or {})
    if header is None or ERROR_META_KEY in meta:
        return result
    problems = _parse(text[header.end() :])
    if not problems:
        return result
    lines = [f"{loc}: {msg}" for loc, msg in problems[:MAX_FIELDS]]
    if len(problems) > MAX_FIELDS:
        lines.append(f"... and {len(problems) - MAX_FIELDS} more")
    message = sanitize_text(
        f"Invalid arguments for {header.group('tool')}: " + "; ".join(lines) + ". Fix them and call again.",
        max_len=2000,
    )
    fields = list(dict.fromkeys(loc for loc, _ in problems))
    meta[ERROR_META_KEY] = {"code": "validation", "fields": fields}
    return {**result, "content": [{"type": "text", "text": message}], "_meta": meta}
