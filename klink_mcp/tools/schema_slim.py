"""Slim the published tool schemas: same contract, fewer bytes in every model's context.

pydantic's JSON Schema carries bytes that tell a model nothing: an auto-generated `title` on every
node ("Contact Id" for `contact_id`), `anyOf: [X, {"type": "null"}]` plus `"default": null` on every
optional parameter. `tools/list` is sent into the model's context on every conversation, so these
add up (about a third of the list). This module rewrites a schema:

* `title` keywords are dropped (property NAMES called "title" are of course kept);
* a `pattern` next to `format: email|uri` goes (the format says it; validation is unchanged);
* an optional value's `anyOf: [X, null]` becomes X, and `"default": null` goes: leaving a key out
  means "not given", which is what null meant. An explicit null for an optional argument is still
  accepted and read as "not given" (`arg_errors.strict_arguments` drops it before the tool runs), and
  tool results never contain null (`tools.results.compact_result` leaves nulls out).

Descriptions, enums, formats, patterns, bounds and required lists are never touched.

`close_objects` closes an INPUT schema: every object node that lists its properties says
`additionalProperties: false`, so a client (and the model reading the schema) knows an unknown argument
is refused, not dropped; `klink_mcp.tools.arg_errors.strict_arguments` enforces it on every call. Output
schemas are never closed: a client must keep working when a later version adds a result field.
"""

from __future__ import annotations

from typing import Any

_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains", "propertyNames")
_NULL = {"type": "null"}


def slim_schema(schema: dict[str, Any], *, collapse_nulls: bool = True) -> dict[str, Any]:
    """A slimmer copy of a JSON Schema node (see the module docstring).

    `collapse_nulls=False` only drops titles: for an output schema whose results may contain null.
    """
    node = {k: v for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            node[key] = {
                name: slim_schema(sub, collapse_nulls=collapse_nulls) if isinstance(sub, dict) else sub
                for name, sub in node[key].items()
            }
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            node[key] = [
                slim_schema(sub, collapse_nulls=collapse_nulls) if isinstance(sub, dict) else sub
                for sub in node[key]
            ]
    for key in _SCHEMA_VALUES:
        if isinstance(node.get(key), dict):
            node[key] = slim_schema(node[key], collapse_nulls=collapse_nulls)
    if node.get("format") in ("email", "uri") and "pattern" in node:
        # The format says it; the (server-side) pattern check still runs on every call.
        del node["pattern"]
    if not collapse_nulls:
        return node
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and _NULL in options:
        kept = next(o for o in options if o != _NULL)
        merged = {k: v for k, v in node.items() if k != "anyOf"}
        node = {**kept, **merged}
    if "default" in node and node["default"] is None:
        del node["default"]
    return node


def close_objects(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of an input schema where every object node with `properties` refuses unknown keys.

    A node that already says what extra keys may be (`additionalProperties` set, or
    `patternProperties`) is left as it is: it is open on purpose (a free-form map). Idempotent.
    """
    node = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            node[key] = {
                name: close_objects(sub) if isinstance(sub, dict) else sub for name, sub in node[key].items()
            }
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            node[key] = [close_objects(sub) if isinstance(sub, dict) else sub for sub in node[key]]
    for key in _SCHEMA_VALUES:
        if isinstance(node.get(key), dict):
            node[key] = close_objects(node[key])
    if (
        isinstance(node.get("properties"), dict)
        and "additionalProperties" not in node
        and "patternProperties" not in node
    ):
        node["additionalProperties"] = False
    return node


def slim_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """What a tool's input schema is published as: slimmed (`slim_schema`) and closed (`close_objects`)."""
    return close_objects(slim_schema(schema))


def drop_descriptions(schema: Any) -> Any:
    """An output schema without `description` keywords (property NAMES are kept).

    Output schemas tell a client application the shape of `structuredContent`; hosts do not put them
    in the model's prompt, while tools/list travels whole. The meaning of the shared fields (paging,
    confirmation status) is in the server instructions and the tool descriptions.
    """
    if isinstance(schema, list):
        return [drop_descriptions(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: drop_descriptions(sub) for name, sub in value.items()}
        else:
            out[key] = drop_descriptions(value)
    return out


CONFIRMATION_FIELDS = (
    "preview",
    "approval_url",
    "approval_id",
    "confirmation_token",
    "expires_in_s",
    "reason",
    "next_step",
    # What an approval let through (the text a person approved): only guarded tools report it.
    "sent_text",
    "text_edited",
    "removed_invisible",
)


def without_confirmation_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """An outcome schema for a write tool that is not guarded: it only ever answers `status: done`.

    The confirmation and approval fields (and the Preview definitions) are left out of what is
    published.
    """
    props = {k: v for k, v in schema.get("properties", {}).items() if k not in CONFIRMATION_FIELDS}
    out = {**schema, "properties": props}
    defs = {k: v for k, v in schema.get("$defs", {}).items() if k not in ("Preview", "PreviewTarget")}
    if defs:
        out["$defs"] = defs
    else:
        out.pop("$defs", None)
    return out
