"""Hypothesis strategies derived from a tool's published JSON input schema, and the schema as an oracle.

`valid_arguments(schema)` draws arguments the schema accepts (types, enums, const, ranges, lengths,
patterns, formats, required keys, `$ref`s into `$defs` such as the tenant's custom fields), with strings
drawn from an alphabet rich in trouble: bidi controls, zero-width characters, NUL and other C0/C1
controls, combining marks, astral-plane characters. `hints` may offer real values for some properties
(ids of records that exist) so that calls reach the success paths too.

`mutated_arguments(schema)` starts from such arguments and breaks them: a required key dropped, a value of
a JSON type the property does not take, an out-of-range number, an over-long or empty string, a pattern or
enum violation, an over-long or ill-typed array, unknown or ill-typed keys inside a closed object, deep
nesting. The mutations avoid the inputs pydantic's lax mode would convert (numeric strings, bools as 0/1,
numbers as timestamps, JSON text standing in for a list): those are pinned separately in test_fuzz.py
(finding F1: the server now refuses them, as the schema does).

`schema_errors(schema, args)` is the oracle: JSON Schema 2020-12 with ECMA-262 anchors (`$` matches only
at the very end, as in pydantic's Rust regex engine) and format checks for `date` and `date-time`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from hypothesis import strategies as st

from klink_mcp.tools.arg_errors import shown_name

# Characters that break naive text handling, mixed into every generated string.
TROUBLE_CHARS: tuple[str, ...] = (
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u202d",  # LEFT-TO-RIGHT OVERRIDE
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u2067",  # RIGHT-TO-LEFT ISOLATE
    "\u2069",  # POP DIRECTIONAL ISOLATE
    "\u200e",  # LEFT-TO-RIGHT MARK
    "\u200b",  # ZERO WIDTH SPACE
    "\u200c",  # ZERO WIDTH NON-JOINER
    "\u200d",  # ZERO WIDTH JOINER
    "\u2060",  # WORD JOINER
    "\ufeff",  # BYTE ORDER MARK
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\u0301",  # COMBINING ACUTE ACCENT
    "\U0001f600",
    "\U0001d518",
    "\ufdfa",
    "\uffff",
    "/",
    "..",
    "%2e",
    "?",
    "#",
    "\\",
    "'",
    '"',
    "{",
    "<script>",
    "\n",
    " ",
)

# Lone surrogates cannot be sent as JSON text (the client refuses to encode them), so they are left out.
_ANY_CHAR = st.characters(exclude_categories=["Cs"])
_PIECES = st.one_of(_ANY_CHAR, st.sampled_from(TROUBLE_CHARS), st.sampled_from("abcXYZ019-_@. "))

_DEFAULT_MAX_TEXT = 60
_DEFAULT_MAX_ITEMS = 4


def odd_text(min_size: int = 0, max_size: int = _DEFAULT_MAX_TEXT) -> st.SearchStrategy[str]:
    """Text of `min_size`..`max_size` characters, rich in TROUBLE_CHARS (some pieces are several chars)."""
    return st.lists(_PIECES, min_size=min_size, max_size=max_size).map(
        lambda parts: "".join(parts)[:max_size]
    )


def huge_text(min_size: int) -> st.SearchStrategy[str]:
    """Strings past a limit (up to ~100k characters): a short odd chunk repeated, cheap to draw at any size."""
    return st.builds(
        lambda chunk, n: (chunk * (n // len(chunk) + 1))[:n],
        odd_text(1, 12).filter(bool),
        st.integers(min_size, min_size + 100_000),
    )


# ----------------------------------------------------------------------------------------- schema walking


def resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (`#/$defs/Name`) to its definition."""
    while "$ref" in node:
        ref = str(node["$ref"])
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def alternatives(node: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The branches a value may take: `anyOf`/`oneOf` flattened, refs resolved."""
    node = resolve(node, root)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [branch for sub in node[key] for branch in alternatives(sub, root)]
    return [node]


def json_types(node: Mapping[str, Any], root: Mapping[str, Any]) -> set[str]:
    """The JSON types a property accepts (enum/const count as the types of their values)."""
    types: set[str] = set()
    for branch in alternatives(node, root):
        if "const" in branch:
            types.add(_type_of(branch["const"]))
        elif "enum" in branch:
            types.update(_type_of(v) for v in branch["enum"])
        declared = branch.get("type")
        if isinstance(declared, str):
            types.add(declared)
        elif isinstance(declared, list):
            types.update(declared)
    return types


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ------------------------------------------------------------------------------------------ valid values


def _string(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    min_len = int(node.get("minLength", 0))
    # Long strings are the mutations' business; valid ones stay short so examples run fast.
    max_len = min(int(node.get("maxLength", _DEFAULT_MAX_TEXT)), max(min_len, _DEFAULT_MAX_TEXT))
    fmt = node.get("format")
    if "pattern" in node:
        pattern = str(node["pattern"])
        return st.from_regex(_ecma(pattern), fullmatch=True).filter(lambda s: min_len <= len(s) <= max_len)
    if fmt == "date":
        return st.dates(date(1900, 1, 1), date(2100, 12, 31)).map(date.isoformat)
    if fmt == "date-time":
        zones = st.sampled_from([None, UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-3))])
        return st.builds(
            lambda moment, zone: (moment.replace(tzinfo=zone) if zone else moment).isoformat(),
            st.datetimes(datetime(2000, 1, 1), datetime(2035, 12, 31)),
            zones,
        )
    return odd_text(min_len, max_len)


def _number(node: Mapping[str, Any], *, integer: bool) -> st.SearchStrategy[Any]:
    low = node.get("minimum")
    high = node.get("maximum")
    if integer:
        return st.integers(
            min_value=int(low) if low is not None else -(10**9),
            max_value=int(high) if high is not None else 10**9,
        )
    return st.one_of(
        st.integers(min_value=-(10**6), max_value=10**6),
        st.floats(
            min_value=low, max_value=high, allow_nan=False, allow_infinity=False, allow_subnormal=False
        ),
    )


def from_schema(
    node: Mapping[str, Any],
    root: Mapping[str, Any],
    *,
    hints: Mapping[str, Sequence[Any]] | None = None,
    name: str | None = None,
) -> st.SearchStrategy[Any]:
    """Values `node` accepts. `hints[name]` (real ids, for instance) are mixed in for property `name`."""
    hints = hints or {}
    branches = [_one_branch(branch, root, hints) for branch in alternatives(node, root)]
    strategy = st.one_of(branches) if len(branches) > 1 else branches[0]
    if name is not None and hints.get(name):
        strategy = st.one_of(st.sampled_from(list(hints[name])), strategy)
    return strategy


def _one_branch(
    node: Mapping[str, Any], root: Mapping[str, Any], hints: Mapping[str, Sequence[Any]]
) -> st.SearchStrategy[Any]:
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(list(node["enum"]))
    kind = node.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return _number(node, integer=True)
    if kind == "number":
        return _number(node, integer=False)
    if kind == "string":
        return _string(node)
    if kind == "array":
        items = from_schema(node.get("items", {}), root, hints=hints)
        min_items = int(node.get("minItems", 0))
        max_items = min(int(node.get("maxItems", _DEFAULT_MAX_ITEMS)), max(min_items, _DEFAULT_MAX_ITEMS))
        return st.lists(items, min_size=min_items, max_size=max_items, unique=bool(node.get("uniqueItems")))
    if kind == "object" or "properties" in node:
        return object_strategy(node, root, hints=hints)
    # An unconstrained schema ({}): any JSON value.
    return json_values()


def object_strategy(
    node: Mapping[str, Any], root: Mapping[str, Any], *, hints: Mapping[str, Sequence[Any]] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    properties: Mapping[str, Any] = node.get("properties", {})
    required = set(node.get("required", ()))
    fixed = {k: from_schema(v, root, hints=hints, name=k) for k, v in properties.items() if k in required}
    optional = {
        k: from_schema(v, root, hints=hints, name=k) for k, v in properties.items() if k not in required
    }
    return st.fixed_dictionaries(fixed, optional=optional)


def valid_arguments(
    schema: Mapping[str, Any], *, hints: Mapping[str, Sequence[Any]] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for a tool whose input schema is `schema` that the schema accepts."""
    return object_strategy(schema, schema, hints=hints)


# ----------------------------------------------------------------------------------------------- garbage


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        odd_text(0, 20),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(odd_text(0, 8), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


def deep_nesting() -> st.SearchStrategy[Any]:
    """A list or object nested 20-200 levels deep (stays under JSON parsers' recursion limits)."""

    def nest(depth: int, as_list: bool) -> Any:
        value: Any = "\u202e\x00"
        for _ in range(depth):
            value = [value] if as_list else {"k\u200b": value}
        return value

    return st.builds(nest, st.integers(20, 200), st.booleans())


def _not_json_text() -> st.SearchStrategy[str]:
    # Text the SDK's pre-parser leaves alone (it decodes JSON text given for a list/object) and that no
    # lax conversion turns into a number, a bool or a date.
    return odd_text(1, 20).filter(lambda s: _is_inert_text(s))


_LAX_BOOL_WORDS = {"0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"}


def _is_inert_text(s: str) -> bool:
    stripped = s.strip().lower()
    if not stripped or stripped in _LAX_BOOL_WORDS:
        return False
    if stripped[0] in '[{"' or stripped in {"null", "nan", "inf", "-inf", "infinity"}:
        return False
    try:
        float(stripped.replace("_", ""))
    except ValueError:
        return True
    return False


def wrong_type_values(
    accepted: set[str], node: Mapping[str, Any], root: Mapping[str, Any]
) -> st.SearchStrategy[Any]:
    """Values of a JSON type the property does not take, excluding pydantic's deliberate lax conversions."""
    formats = {branch.get("format") for branch in alternatives(node, root)}
    pools: list[st.SearchStrategy[Any]] = []
    if "null" not in accepted:
        pools.append(st.none())
    if "string" not in accepted:
        pools.append(_not_json_text())
    if "array" not in accepted:
        pools.append(st.lists(json_values(3), min_size=0, max_size=3))
    if "object" not in accepted:
        pools.append(st.dictionaries(odd_text(1, 8), json_values(3), min_size=0, max_size=3))
    numbers_convert = bool(accepted & {"integer", "number"}) or bool(formats & {"date", "date-time"})
    if not numbers_convert and "boolean" not in accepted:
        pools.append(st.integers(min_value=-(2**70), max_value=2**70))
        pools.append(st.floats(allow_nan=False, allow_infinity=False))
        pools.append(st.booleans())
    elif "boolean" in accepted and not numbers_convert:
        # bool takes 0/1 (lax); other numbers are refused
        pools.append(st.integers(min_value=2, max_value=2**40))
        pools.append(st.floats(min_value=0.01, max_value=0.99))
    elif "integer" in accepted and "number" not in accepted:
        # fractions are refused by an integer property
        pools.append(st.floats(min_value=-1e6, max_value=1e6).filter(lambda x: not float(x).is_integer()))
    return st.one_of(pools)


def _not_in(values: Iterable[Any]) -> Callable[[Any], bool]:
    excluded = list(values)
    return lambda value: value not in excluded


def _not_matching(pattern: str) -> Callable[[str], bool]:
    regex = re.compile(_ecma(pattern))
    return lambda text: regex.search(text) is None


def _range_breakers(node: Mapping[str, Any], root: Mapping[str, Any]) -> list[st.SearchStrategy[Any]]:
    """Values of the right type that break a bound, a length, a pattern, an enum or a const."""
    out: list[st.SearchStrategy[Any]] = []
    for branch in alternatives(node, root):
        kind = branch.get("type")
        if "enum" in branch or "const" in branch:
            allowed = list(branch.get("enum", [branch.get("const")]))
            if all(isinstance(v, str) for v in allowed):
                variants = (
                    [v.upper() for v in allowed]
                    + [v + "\u200b" for v in allowed]
                    + [f" {v}" for v in allowed]
                )
                out.append(st.one_of(st.sampled_from(variants), odd_text(0, 20)).filter(_not_in(allowed)))
        elif kind == "integer":
            if "minimum" in branch:
                out.append(st.integers(min_value=-(2**70), max_value=int(branch["minimum"]) - 1))
            if "maximum" in branch:
                out.append(st.integers(min_value=int(branch["maximum"]) + 1, max_value=2**70))
        elif kind == "string":
            if "maxLength" in branch:
                out.append(huge_text(int(branch["maxLength"]) + 1))
            if int(branch.get("minLength", 0)) > 0:
                out.append(st.just(""))
            if "pattern" in branch:
                out.append(odd_text(0, 30).filter(_not_matching(str(branch["pattern"]))))
            if branch.get("format") in ("date", "date-time"):
                out.append(st.sampled_from(["2026-13-45", "yesterday", "2026-02-30", "12/31/2026", "T00:00"]))
        elif kind == "array":
            items = branch.get("items", {})
            item_types = json_types(items, root)
            if "maxItems" in branch:
                max_items = int(branch["maxItems"])
                out.append(st.lists(from_schema(items, root), min_size=max_items + 1, max_size=max_items + 5))
            if int(branch.get("minItems", 0)) > 0:
                out.append(st.just([]))
            out.append(st.lists(wrong_type_values(item_types, items, root), min_size=1, max_size=3))
            for sub in _range_breakers(items, root):
                out.append(st.lists(sub, min_size=1, max_size=2))
        elif kind == "object" or "properties" in branch:
            if branch.get("additionalProperties") is False:
                known = set(branch.get("properties", {}))
                out.append(
                    st.dictionaries(
                        odd_text(1, 12).filter(_not_in(known)),
                        json_values(4),
                        min_size=1,
                        max_size=3,
                    )
                )
            for key, sub in branch.get("properties", {}).items():
                sub_types = json_types(sub, root)
                out.append(st.fixed_dictionaries({key: wrong_type_values(sub_types, sub, root)}))
                for breaker in _range_breakers(sub, root):
                    out.append(st.fixed_dictionaries({key: breaker}))
    return out


def mutated_arguments(
    schema: Mapping[str, Any], *, hints: Mapping[str, Sequence[Any]] | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments broken in one to three ways (usually invalid; the oracle decides).

    The per-property mutation strategies are built once per schema: building strategies inside every draw
    is what makes hypothesis slow.
    """
    key = json.dumps([schema, hints], sort_keys=True, default=str)
    cached = _MUTATIONS.get(key)
    if cached is None:
        cached = _MUTATIONS[key] = _build_mutations(schema, hints)
    return cached


_MUTATIONS: dict[str, st.SearchStrategy[dict[str, Any]]] = {}


def _build_mutations(
    schema: Mapping[str, Any], hints: Mapping[str, Sequence[Any]] | None
) -> st.SearchStrategy[dict[str, Any]]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", ()))
    wrong_type = {
        name: wrong_type_values(json_types(node, schema), node, schema) for name, node in properties.items()
    }
    out_of_range = {
        name: st.one_of(breakers) if (breakers := _range_breakers(node, schema)) else wrong_type[name]
        for name, node in properties.items()
    }
    extra_keys = odd_text(1, 20).filter(lambda k: k not in properties)
    # Deep nesting goes into a declared property (an unknown key is covered by `extra_keys`).
    targets = st.sampled_from(sorted(properties) or ["zz_unknown"])
    names = st.sampled_from(sorted(properties)) if properties else st.nothing()

    # Order matters: hypothesis leans towards the first alternatives, so the mutations that usually make
    # the call invalid come first and unknown top-level keys (refused: the schemas are closed) last.
    kinds: list[st.SearchStrategy[tuple[str, Any, Any]]] = []
    if properties:
        kinds.append(names.flatmap(lambda n: st.tuples(st.just("set"), st.just(n), wrong_type[n])))
        kinds.append(names.flatmap(lambda n: st.tuples(st.just("set"), st.just(n), out_of_range[n])))
    if required:
        kinds.append(st.tuples(st.just("drop"), st.sampled_from(required), st.none()))
    kinds.append(st.tuples(st.just("set"), targets, deep_nesting()))
    kinds.append(st.tuples(st.just("set"), extra_keys, json_values()))
    edits = st.lists(st.one_of(kinds), min_size=1, max_size=3)

    def apply(base: dict[str, Any], changes: list[tuple[str, Any, Any]]) -> dict[str, Any]:
        args = dict(base)
        for op, name, value in changes:
            if op == "drop":
                args.pop(name, None)
            else:
                args[name] = value
        return args

    return st.builds(apply, valid_arguments(schema, hints=hints), edits)


# ------------------------------------------------------------------------------------------------ oracle


def _ecma(pattern: str) -> str:
    """A Python regex with ECMA-262/Rust anchor semantics: a final `$` matches only at the very end."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + r"\Z"
    return pattern


def _check_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if isinstance(instance, str) and re.search(_ecma(pattern), instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("not YYYY-MM-DD")
    date.fromisoformat(value)
    return True


@_FORMATS.checks("date-time", raises=ValueError)  # type: ignore[untyped-decorator]
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("not ISO-8601")
    datetime.fromisoformat(value)
    return True


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, validators={"pattern": _check_pattern}
)


_VALIDATORS: dict[str, Any] = {}


def _without_optional_nulls(schema: Mapping[str, Any], value: Any) -> Any:
    """`value` with null members of optional properties removed.

    The server publishes optional arguments without a null branch (klink_mcp.tools.schema_slim) and
    reads an explicit null as "not given", so for the oracle an optional null is an omitted key.
    """
    if not isinstance(value, dict):
        return value
    resolved = schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved = _ROOT_DEFS.get(ref.split("/")[-1], schema)
    props = resolved.get("properties", {})
    required = set(resolved.get("required", ()))
    out = {}
    for key, item in value.items():
        if item is None and key in props and key not in required:
            continue
        out[key] = _without_optional_nulls(props.get(key, {}), item) if key in props else item
    return out


_ROOT_DEFS: dict[str, Any] = {}


def schema_errors(schema: Mapping[str, Any], args: Mapping[str, Any]) -> list[jsonschema.ValidationError]:
    """Why the schema rejects `args` (empty when it accepts them)."""
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        validator = _VALIDATORS[key] = _Validator(copy.deepcopy(dict(schema)), format_checker=_FORMATS)
    _ROOT_DEFS.clear()
    _ROOT_DEFS.update(schema.get("$defs", {}))
    return list(validator.iter_errors(_without_optional_nulls(schema, dict(args))))


def fields_named(
    schema: Mapping[str, Any], args: Mapping[str, Any], errors: Sequence[jsonschema.ValidationError]
) -> set[str]:
    """The top-level argument names the errors are about (a missing required key counts)."""
    names: set[str] = set()
    for error in errors:
        if error.absolute_path:
            names.add(str(error.absolute_path[0]))
        elif error.validator == "required":
            names.update(k for k in schema.get("required", ()) if k not in args)
        elif error.validator == "additionalProperties":
            # An unknown top-level argument is named as the server shows names: control and invisible
            # characters escaped (a raw one must never reach the error text).
            unknown = [k for k in args if k not in schema.get("properties", {})]
            names.update(shown_name(k) for k in unknown)
    return names
