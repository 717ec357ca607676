"""Tool arguments checked strictly against the published schema, and errors a model can act on.

Two layers, one message style (`Invalid arguments for <tool>: <field>: <what was wrong>, expected <format>,
e.g. <example>; ... Fix them and call again.` plus `_meta["klink_mcp/error"] = {"code": "validation",
"fields": [...]}`):

* `strict_arguments(...)` is an MCPServer middleware. Before the SDK sees a `tools/call`, it validates the
  arguments against the tool's published input schema (closed with `schema_slim.close_objects`) with
  JSON Schema, strictly: an unknown argument is refused (naming the nearest valid one, or where it
  belongs: a `cf_*` key goes inside `custom_fields`, an argument of another tool names that tool), and
  so is a value the schema does not take, even one pydantic's lax mode would convert ("2" for an
  integer, "yes" for a boolean). Every problem of the call goes into ONE error, and nothing is sent
  upstream. An explicit null for an optional argument means "not given" (the published schemas carry
  no null branch): it is dropped before the SDK sees the call, so the tool's default applies. The
  schemas are published closed by the tool registry (`schema_slim.slim_input_schema`).
* `rewrite_argument_error` turns what the SDK's pydantic validation still reports (rules the JSON
  Schema cannot express) into the same compact shape. Anything it does not recognise is unchanged.

It must not look at tool results other than argument errors, call a tool, or echo a rejected value
unescaped (values and names are shown with control and invisible characters escaped, and cut short).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.types import SERVER_INFO_META_KEY
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from klink_mcp.content import sanitize_text
from klink_mcp.tools.schema_slim import close_objects

ERROR_META_KEY = "klink_mcp/error"
_HEADER = re.compile(r"^Error executing tool (?P<tool>[\w-]+): \d+ validation errors? for \w+\n")
_DETAIL = re.compile(r"^\s{2}(?P<msg>.+?)(?: \[type=(?P<type>\w+).*\])?$")
MAX_FIELDS = 20
MAX_SHOWN_NAME = 60
MAX_SHOWN_VALUE = 40
MAX_ENUM_SHOWN = 12
MAX_NAMES_LISTED = 15

FORMAT_HINTS: dict[str, str] = {
    "date": "a date as YYYY-MM-DD, e.g. 2026-10-31",
    "date-time": "a date-time as YYYY-MM-DDTHH:MM:SS with an optional UTC offset, e.g. 2026-10-31T09:30:00+07:00",
    "time": "a time as HH:MM:SS, e.g. 09:30:00",
    "email": "an email address, e.g. name@example.com",
    "uuid": "a uuid, e.g. 3f2b6c1e-8a4d-4c7e-9b1a-2d5e6f7a8b9c",
    "uri": "an absolute URL, e.g. https://example.com/profile",
}
# Patterns the tenant's forms use, with an example a model can copy.
PATTERN_EXAMPLES: dict[str, str] = {
    r"^\+?[0-9][0-9 ()\-]{5,19}$": "a phone number of digits with an optional leading +, e.g. +6591234567",
}
# Pydantic error types (what the SDK still reports after the strict check) -> the expected format.
_PYDANTIC_HINTS: dict[str, str] = {
    "date_parsing": FORMAT_HINTS["date"],
    "date_from_datetime_parsing": FORMAT_HINTS["date"],
    "date_from_datetime_inexact": FORMAT_HINTS["date"],
    "datetime_parsing": FORMAT_HINTS["date-time"],
    "datetime_from_date_parsing": FORMAT_HINTS["date-time"],
    "datetime_type": FORMAT_HINTS["date-time"],
    "uuid_parsing": FORMAT_HINTS["uuid"],
    "uuid_type": FORMAT_HINTS["uuid"],
    "url_parsing": FORMAT_HINTS["uri"],
    "int_parsing": "an integer, e.g. 2",
    "int_type": "an integer, e.g. 2",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "float_parsing": "a number, e.g. 12.5",
}
# Arguments models reach for that a tool spells differently; (tool or "*", argument) -> advice.
_CURATED: dict[tuple[str, str], str] = {
    ("update_ticket", "status"): "update_ticket does not change the status: call update_ticket_status "
    "with ticket_id and status",
}
_SEARCH_WORDS = frozenset({"email", "emails", "phone", "phones", "name", "query", "search", "q", "text"})

Schemas = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a call: the argument (dotted path) and a sentence about it."""

    field: str
    message: str


# ------------------------------------------------------------------------------------------- display


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def shown_name(name: str) -> str:
    """An argument name as an error shows it: printable ASCII, other characters escaped, cut short."""
    escaped = _escape(name)
    return escaped if len(escaped) <= MAX_SHOWN_NAME else escaped[:MAX_SHOWN_NAME] + "..."


def _shown_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= MAX_SHOWN_VALUE else text[:MAX_SHOWN_VALUE] + "..."
    if isinstance(value, str):
        escaped = _escape(value)
        if len(escaped) > MAX_SHOWN_VALUE:
            escaped = escaped[:MAX_SHOWN_VALUE] + "..."
        return f"the string '{escaped}'"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _json_literal(value: Any) -> str:
    if isinstance(value, str):
        return f'"{_escape(value)}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return _escape(str(value))


def describe_expected(node: Mapping[str, Any]) -> str:
    """What a schema node takes, in words, with an example where one helps."""
    if "const" in node:
        return f"exactly {_json_literal(node['const'])}"
    if "enum" in node:
        values = list(node["enum"])
        shown = ", ".join(_json_literal(v) for v in values[:MAX_ENUM_SHOWN])
        more = f", ... ({len(values)} values in all)" if len(values) > MAX_ENUM_SHOWN else ""
        return f"one of {shown}{more}"
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in FORMAT_HINTS:
        return FORMAT_HINTS[fmt]
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        return PATTERN_EXAMPLES.get(pattern, f"a string matching the regular expression {pattern}")
    kind = node.get("type")
    if kind == "integer" or kind == "number":
        word = "an integer" if kind == "integer" else "a number"
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None and high is not None:
            word += f" from {low} to {high}"
        elif low is not None:
            word += f" of at least {low}"
        elif high is not None:
            word += f" of at most {high}"
        example = low if low is not None else (1 if kind == "integer" else 12.5)
        return f"{word} (a JSON number, not a string), e.g. {example}"
    if kind == "boolean":
        return "true or false (a JSON boolean, not a string)"
    if kind == "string":
        low, high = node.get("minLength"), node.get("maxLength")
        if low and high:
            return f"a string of {low} to {high} characters"
        if high:
            return f"a string of at most {high} characters"
        if low:
            return f"a non-empty string of at least {low} characters"
        return "a string"
    if kind == "array":
        item = node.get("items") or {}
        return f"a JSON list (each item {describe_expected(item)})" if item else "a JSON list"
    if kind == "object":
        return "a JSON object"
    return "a value of the documented type"


# --------------------------------------------------------------------------------------- suggestions


def _close(name: str, candidates: Sequence[str], n: int = 2) -> list[str]:
    lowered = name.lower()
    contains = [c for c in candidates if lowered and (lowered in c.lower() or c.lower() in lowered)]
    close = difflib.get_close_matches(lowered, list(candidates), n=n, cutoff=0.6)
    return list(dict.fromkeys(close + contains))[:n]


def _quoted(names: Sequence[str]) -> str:
    return " or ".join(f"'{shown_name(n)}'" for n in names)


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while isinstance(node.get("$ref"), str) and str(node["$ref"]).startswith("#/") and seen < 10:
        target: Any = root
        for part in str(node["$ref"])[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        node = target if isinstance(target, Mapping) else {}
        seen += 1
    return node


def _custom_field_names(schema: Mapping[str, Any]) -> list[str]:
    node = (schema.get("properties") or {}).get("custom_fields")
    if not isinstance(node, Mapping):
        return []
    return sorted((_resolve(node, schema).get("properties") or {}).keys())


def _unknown_top_level(
    tool: str, key: str, schema: Mapping[str, Any], given: Sequence[str], schemas: Schemas
) -> str:
    own = sorted((schema.get("properties") or {}).keys())
    shown = f"'{shown_name(key)}'"
    curated = _CURATED.get((tool, key))
    if curated:
        return f"unknown argument {shown}: {curated}"
    custom = _custom_field_names(schema)
    if key.startswith("cf_") or key in custom:
        if key in custom:
            return (
                f"{shown} is a custom field: put it inside custom_fields, "
                f'e.g. {{"custom_fields": {{"{shown_name(key)}": ...}}}}'
            )
        if custom:
            near = _close(key, custom)
            hint = f"; did you mean {_quoted(near)} (inside custom_fields)?" if near else ""
            return f"unknown argument {shown}: custom fields go inside custom_fields{hint}"
        owners = sorted(t for t, s in schemas.items() if _custom_field_names(s) and t != tool)
        where = f" (custom fields are set with {', '.join(owners)})" if owners else ""
        return f"unknown argument {shown}: {tool} takes no custom fields{where}"
    parts: list[str] = []
    near = _close(key, own)
    if near:
        parts.append(f"did you mean {_quoted(near)}?")
    elif "keyword" in own and key.lower() in _SEARCH_WORDS:
        parts.append(f"{tool} has no such filter: search by name, email or phone with keyword")
    owners = [t for t, s in schemas.items() if t != tool and key in (s.get("properties") or {})]
    if owners:
        # The tool that also takes the call's other arguments is most likely the one meant.
        def fit(other: str) -> tuple[int, float]:
            props = schemas[other].get("properties") or {}
            shared = sum(1 for g in given if g in props)
            return (-shared, -difflib.SequenceMatcher(None, tool, other).ratio())

        best = sorted(owners, key=fit)[:3]
        parts.append(f"{shown} is an argument of {', '.join(best)}, not of {tool}")
    if not parts:
        listed = ", ".join(own[:MAX_NAMES_LISTED]) + (", ..." if len(own) > MAX_NAMES_LISTED else "")
        parts.append(f"{tool} takes: {listed or 'no arguments'}")
    return f"unknown argument {shown}; " + "; ".join(parts)


def _unknown_custom_field(tool: str, key: str, schema: Mapping[str, Any], custom: Sequence[str]) -> str:
    shown = f"'{shown_name(key)}'"
    if key in (schema.get("properties") or {}):
        return f"{shown} is a top-level argument of {tool}, not a custom field: move it out of custom_fields"
    near = _close(key, custom)
    if near:
        return f"unknown custom field {shown}; did you mean {_quoted(near)}?"
    listed = ", ".join(custom[:MAX_NAMES_LISTED]) + (", ..." if len(custom) > MAX_NAMES_LISTED else "")
    form_tool = "get_ticket_form_fields" if "ticket" in tool else "get_contact_form_fields"
    return f"unknown custom field {shown}; this tenant's custom fields are {listed} (see {form_tool})"


# ----------------------------------------------------------------------------------------- validation


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_date(value: object) -> bool:
    if isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("not YYYY-MM-DD")
        date.fromisoformat(value)
    return True


@_FORMATS.checks("date-time", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_datetime(value: object) -> bool:
    if isinstance(value, str):
        if not re.match(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("not ISO-8601")
        datetime.fromisoformat(value)
    return True


@_FORMATS.checks("email", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_email(value: object) -> bool:
    # The same rule the compiled form models apply (klink_mcp.forms), checked here so the message
    # can show the expected format.
    if isinstance(value, str) and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise ValueError("not an email address")
    return True


def _check_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    # ECMA-262 / pydantic (Rust regex) anchors: a final `$` matches only at the very end.
    if isinstance(instance, str):
        regex = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
        if re.search(regex, instance) is None:
            yield jsonschema.ValidationError(f"does not match {pattern!r}")


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, validators={"pattern": _check_pattern}
)


class _ValidatorCache:
    """One compiled validator per schema object (a tool's schema object lives until it is re-registered)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Mapping[str, Any], dict[str, Any], Any]] = {}

    def get(self, schema: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
        entry = self._entries.get(id(schema))
        if entry is None or entry[0] is not schema:
            closed = close_objects(dict(schema))
            entry = (schema, closed, _Validator(closed, format_checker=_FORMATS))
            if len(self._entries) > 512:  # re-registered tools leave old schemas behind
                self._entries.clear()
            self._entries[id(schema)] = entry
        return entry[1], entry[2]


def _without_optional_nulls(node: Mapping[str, Any], root: Mapping[str, Any], value: Any) -> Any:
    """An explicit null for an optional argument means "not given" (the published schemas say so)."""
    if not isinstance(value, dict):
        return value
    node = _resolve(node, root)
    props = node.get("properties") or {}
    required = set(node.get("required") or ())
    return {
        key: _without_optional_nulls(props[key], root, item) if key in props else item
        for key, item in value.items()
        if not (item is None and key in props and key not in required)
    }


def _path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + shown_name(str(part))
    return out


def _problems_of(
    error: Any, tool: str, root: Mapping[str, Any], arguments: Mapping[str, Any], schemas: Schemas
) -> list[Problem]:
    path = list(error.absolute_path)
    field = _path(path) or "arguments"
    node: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    kind = error.validator
    value = error.instance
    if kind == "required":
        props = node.get("properties") or {}
        missing = [k for k in error.validator_value if isinstance(value, dict) and k not in value]
        return [
            Problem(
                _path([*path, k]),
                f"missing; it is required: {describe_expected(_resolve(props.get(k, {}), root))}",
            )
            for k in missing
        ]
    if kind == "additionalProperties":
        props = node.get("properties") or {}
        extras = [k for k in value if k not in props] if isinstance(value, dict) else []
        if not path:
            return [
                Problem(shown_name(k), _unknown_top_level(tool, k, root, list(arguments), schemas))
                for k in extras
            ]
        custom = sorted(props)
        return [
            Problem(
                _path([*path, k]),
                _unknown_custom_field(tool, k, root, custom)
                if path == ["custom_fields"]
                else f"unknown key '{shown_name(k)}'; allowed keys: {', '.join(custom[:MAX_NAMES_LISTED])}",
            )
            for k in extras
        ]
    got = _shown_value(value)
    if kind == "enum":
        options = [str(v) for v in node.get("enum", ()) if isinstance(v, str)]
        near = _close(str(value), options, n=3) if isinstance(value, str) else []
        hint = f"; did you mean {_quoted(near)}?" if near else ""
        return [Problem(field, f"got {got}, expected {describe_expected(node)}{hint}")]
    if kind == "minLength" and isinstance(value, str) and not value:
        return [Problem(field, f"is empty, expected {describe_expected(node)}")]
    if kind == "maxLength" and isinstance(value, str):
        return [Problem(field, f"is {len(value)} characters long, expected {describe_expected(node)}")]
    if kind in ("minItems", "maxItems") and isinstance(value, list):
        bound = "at least" if kind == "minItems" else "at most"
        unit = "item" if error.validator_value == 1 else "items"
        return [Problem(field, f"has {len(value)} items, expected {bound} {error.validator_value} {unit}")]
    if kind == "uniqueItems":
        return [Problem(field, "has duplicate items, expected each value once")]
    if kind in (
        "type",
        "format",
        "pattern",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
    ):
        return [Problem(field, f"got {got}, expected {describe_expected(node)}")]
    return [Problem(field, f"got {got}: {sanitize_text(_escape(str(error.message)), max_len=200)}")]


def check_arguments(tool: str, arguments: Mapping[str, Any], schemas: Schemas) -> list[Problem]:
    """Every problem of a call to `tool` with `arguments`, against the tools' published input schemas.

    An empty list means the published schema accepts the call. A tool not in `schemas` is not checked.
    """
    schema = schemas.get(tool)
    if schema is None:
        return []
    closed, validator = _VALIDATORS.get(schema)
    cleaned = _without_optional_nulls(closed, closed, dict(arguments))
    problems: list[Problem] = []
    errors = sorted(validator.iter_errors(cleaned), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        problems.extend(_problems_of(error, tool, closed, arguments, schemas))
    return list(dict.fromkeys(problems))


_VALIDATORS = _ValidatorCache()


def validation_result(tool: str, problems: Sequence[Problem]) -> dict[str, Any]:
    """The tool-error result (wire shape) that reports `problems` of a call to `tool`."""
    # A message that already names its argument ("unknown argument 'x'; ...") is not prefixed again.
    lines = [
        p.message if f"'{p.field}'" in p.message else f"{p.field}: {p.message}" for p in problems[:MAX_FIELDS]
    ]
    if len(problems) > MAX_FIELDS:
        lines.append(f"... and {len(problems) - MAX_FIELDS} more")
    text = f"Invalid arguments for {tool}: " + "; ".join(lines)
    message = sanitize_text(
        text + ("" if text.endswith("?") else ".") + " Fix them and call again.", max_len=4000
    )
    fields = list(dict.fromkeys(p.field for p in problems))
    return {
        "content": [{"type": "text", "text": message}],
        "isError": True,
        "_meta": {ERROR_META_KEY: {"code": "validation", "fields": fields}},
    }


def strict_arguments(
    input_schemas: Callable[[], Schemas],
    *,
    server_info: Callable[[], Mapping[str, Any]] | None = None,
) -> ServerMiddleware[Any]:
    """MCPServer middleware: refuse a `tools/call` its published (closed) schema rejects.

    `input_schemas()` returns the current `{tool name: input schema}` of every registered tool (the
    tool list changes when form fields are recompiled, so it is asked on each call). `server_info()`
    gives the 2026-era `serverInfo` stamp the SDK puts on results it builds itself (this middleware
    answers a refused call without reaching the SDK's result pipeline).
    """

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        method = getattr(ctx, "method", None)
        params = getattr(ctx, "params", None)
        if method != "tools/call" or not isinstance(params, Mapping):
            return await call_next(ctx)
        name, arguments = params.get("name"), params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(name, str) or not isinstance(arguments, Mapping):
            return await call_next(ctx)  # the SDK answers malformed params with a protocol error
        schemas = input_schemas()
        problems = check_arguments(name, arguments, schemas)
        if not problems:
            schema = schemas.get(name) or {}
            optional = set(schema.get("properties") or {}) - set(schema.get("required") or ())
            if any(arguments.get(key, ...) is None for key in optional):
                # null means "not given" (the published schemas have no null): let the tool's default apply.
                kept = {k: v for k, v in arguments.items() if not (v is None and k in optional)}
                ctx = replace(ctx, params={**params, "arguments": kept})
            return await call_next(ctx)
        result = validation_result(name, problems)
        if getattr(ctx, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS:
            result["resultType"] = "complete"
            if server_info is not None:
                result["_meta"][SERVER_INFO_META_KEY] = dict(server_info())
        return result

    return middleware


# ------------------------------------------------------------------------- the SDK's pydantic report


def _parse(report: str) -> list[tuple[str, str, str | None]]:
    problems: list[tuple[str, str, str | None]] = []
    loc: str | None = None
    for line in report.splitlines():
        if not line.strip() or line.startswith("    For further information"):
            continue
        if not line.startswith(" "):
            loc = line.strip()
            continue
        match = _DETAIL.match(line)
        if loc is not None and match:
            problems.append((loc, match.group("msg").strip(), match.group("type")))
            loc = None
    return problems


def rewrite_argument_error(result: dict[str, Any]) -> dict[str, Any]:
    """Return `result` with a compact message and a validation code when it is an SDK argument error.

    Each field gets pydantic's short message plus, for the formats it knows, the expected format with
    an example (`expected a date as YYYY-MM-DD, e.g. 2026-10-31`).
    """
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
    parsed = _parse(text[header.end() :])
    if not parsed:
        return result
    problems = []
    for loc, msg, kind in parsed:
        hint = _PYDANTIC_HINTS.get(kind or "")
        problems.append(Problem(loc, f"{msg}, expected {hint}" if hint else msg))
    rewritten = validation_result(header.group("tool"), problems)
    meta[ERROR_META_KEY] = rewritten["_meta"][ERROR_META_KEY]
    return {**result, "content": rewritten["content"], "_meta": meta}
