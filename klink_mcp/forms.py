"""The form-field schema compiler: a tenant's contact/ticket field definitions -> typed pydantic models.

K-LINK tenants define their own contact and ticket fields (built-in ones plus custom `cf_*` fields).
`compile_form_schema` turns those definitions into:

* typed, described parameters for the built-in fields (top-level tool parameters),
* a pydantic model for the custom fields (the tool's `custom_fields` object, keyed by `system_name`),

so that MCPServer publishes a real JSON Schema per tenant and validates arguments before any upstream
request. Select options become enums (up to `option_cap`; longer lists are described briefly and
checked here with a "did you mean" error), dates get `format: date`, numbers are numbers, checkboxes
booleans, and an unknown field type degrades to a string whose description names the type.

Tenant admins write the labels, so they are untrusted text that ends up in tool descriptions and
schemas: display names, option labels and unknown type names are cleaned (`content.clean_label`) before
they are compiled in. Option values and custom system names are sent back to K-LINK exactly, so they
are never altered: an option value holding an invisible character (bidi control, tag character,
zero-width...) is left out of the schema and so refused, and a custom field whose system_name holds
one is skipped (both reported in `skipped` / the field description).

This module knows nothing about MCP or HTTP: it reads the K-LINK wire model of a field definition
(`klink_mcp.api.models.FormField`) directly - plain mappings, such as the built-in fallback forms, are
parsed into it - and returns types. It must never raise on odd definitions (an unusable field is
skipped and reported).
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import inspect
import json
import keyword
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from klink_mcp.api.errors import ErrorCode
from klink_mcp.api.models import FormField
from klink_mcp.content import clean_label, has_invisible, mark_invisible

logger = logging.getLogger("klink_mcp.forms")

FormKind = Literal["contact", "ticket"]
DEFAULT_OPTION_CAP = 40

KNOWN_TYPES = frozenset(
    {
        "text",
        "textarea",
        "number",
        "date",
        "datetime",
        "select",
        "multiselect",
        "checkbox",
        "email",
        "phone",
        "url",
    }
)

_EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_PHONE_PATTERN = r"^\+?[0-9][0-9 ()\-]{5,19}$"
_URL_PATTERN = r"^https?://\S+$"

# Built-in fields whose wire key differs from the definition's system_name (contract: create/update
# contact bodies carry `emails` and `phones` lists).
_LIST_BUILTINS = {"email": "emails", "emails": "emails", "phone": "phones", "phones": "phones"}


@dataclass(frozen=True)
class CompiledField:
    """One usable field: how it is named on the wire and in the tool, and its Python type."""

    system_name: str
    wire_key: str
    param_name: str
    display_name: str
    field_type: str
    required: bool
    is_custom: bool
    option_values: tuple[str, ...] = ()
    option_labels: tuple[str, ...] = ()
    capped: bool = False
    kind_hint: str = "contact"
    hidden_options: int = 0

    @property
    def has_options(self) -> bool:
        return self.field_type in ("select", "multiselect")


@dataclass
class FormSchema:
    """The compiled form of one kind (contact or ticket) for one tenant."""

    kind: FormKind
    builtin: list[CompiledField]
    custom: list[CompiledField]
    skipped: list[str]
    digest: str
    option_cap: int
    _models: dict[str, type[BaseModel]] = field(default_factory=dict, repr=False)

    def by_param(self) -> dict[str, CompiledField]:
        return {f.param_name: f for f in self.builtin}

    def builtin_parameters(self, *, for_update: bool, exclude: Iterable[str] = ()) -> list[inspect.Parameter]:
        """Keyword-only parameters (with annotated types) for the built-in fields.

        Required fields come first on create; on update every field is optional.
        """
        skip = set(exclude)
        params: list[inspect.Parameter] = []
        for f in self.builtin:
            if f.param_name in skip:
                continue
            required = f.required and not for_update
            annotation = _annotation_for(f, optional=not required, cap=self.option_cap)
            default = inspect.Parameter.empty if required else None
            params.append(
                inspect.Parameter(
                    f.param_name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
            )
        params.sort(key=lambda p: p.default is not inspect.Parameter.empty)
        return params

    @property
    def has_required_custom(self) -> bool:
        return any(f.required for f in self.custom)

    def custom_model(self, *, for_update: bool) -> type[BaseModel] | None:
        """The pydantic model of the `custom_fields` object, or None when the tenant has no custom fields."""
        if not self.custom:
            return None
        key = "update" if for_update else "create"
        if key in self._models:
            return self._models[key]
        fields: dict[str, Any] = {}
        for i, f in enumerate(self.custom):
            required = f.required and not for_update
            annotation = _annotation_for(f, optional=not required, cap=self.option_cap, describe=False)
            default: Any = ... if required else None
            fields[f"f{i}"] = (
                annotation,
                Field(default, alias=f.system_name, description=_describe(f, self.option_cap)),
            )
        model_name = f"{self.kind.capitalize()}{'Update' if for_update else 'Create'}CustomFields"
        model = create_model(
            model_name,
            __config__=ConfigDict(extra="forbid", populate_by_name=False, title=model_name),
            __doc__=f"Custom {self.kind} fields of this K-LINK tenant, keyed by system_name (cf_*).",
            **fields,
        )
        self._models[key] = model
        return model

    def check_capped_options(self, values: Mapping[str, Any]) -> None:
        """Validate values of select fields whose option lists were too long to inline in the schema.

        `values` maps a param name or custom system_name to the given value.

        Raises:
            FormValueError: a value is not one of the field's options (with close matches).
        """
        index = {f.param_name: f for f in self.builtin} | {f.system_name: f for f in self.custom}
        for key, value in values.items():
            f = index.get(key)
            if f is None or not f.capped or value is None:
                continue
            given = value if isinstance(value, list) else [value]
            for item in given:
                if item not in f.option_values:
                    close = difflib.get_close_matches(str(item), f.option_values, n=3, cutoff=0.5)
                    raise FormValueError(f, str(item), close)

    def wire_body(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validated tool arguments -> the K-LINK body keys of this form (only the ones given).

        Built-in parameters become their wire keys; `custom_fields` becomes `customFields`. Other
        arguments (ids, tags, the confirmation token) are the tool's to add.

        Raises:
            FormValueError: a value is not among a capped option list's values.
        """
        index = self.by_param()
        values = {k: v for k, v in arguments.items() if k in index and v is not None}
        custom = self.split_custom(arguments.get("custom_fields"))
        self.check_capped_options(values | custom)
        body = {index[k].wire_key: wire_value(index[k], v) for k, v in values.items()}
        if custom:
            body["customFields"] = custom
        return body

    def split_custom(self, custom: BaseModel | Mapping[str, Any] | None) -> dict[str, Any]:
        """Custom values as a wire dict keyed by system_name (only the ones given), JSON-ready."""
        if custom is None:
            return {}
        if isinstance(custom, BaseModel):
            data = custom.model_dump(by_alias=True, exclude_none=True, mode="json")
        else:
            data = {k: v for k, v in custom.items() if v is not None}
        return dict(data)


class FormValueError(ValueError):
    """A value is not among a field's options; the message names the field, the value and close matches."""

    code: ClassVar[ErrorCode] = ErrorCode.VALIDATION

    def __init__(self, f: CompiledField, value: str, suggestions: Sequence[str]) -> None:
        self.field = f
        self.value = value
        self.suggestions = list(suggestions)
        hint = f" Did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(
            f"{f.display_name} ({f.system_name}): {value!r} is not an allowed value.{hint} "
            f"The field has {len(f.option_values)} options; get_{f.kind_hint}_form_fields lists them all."
        )


def _unique(items: list[Any]) -> list[Any]:
    if len(set(map(str, items))) != len(items):
        raise ValueError("values must be unique")
    return items


def _adds_information(value: str, label: str | None) -> bool:
    """A label worth showing: not just the value re-cased or with spaces for underscores."""
    if not label:
        return False

    def norm(text: str) -> str:
        return re.sub(r"[\s_\-]+", " ", text).strip().lower()

    return norm(label) != norm(value)


def _describe(f: CompiledField, cap: int) -> str:
    # Formats (date, date-time, email, uri) are in the schema itself; the description adds what the
    # schema cannot say: the display name, labels that differ from values, an unknown type.
    parts = [f.display_name]
    if f.field_type not in KNOWN_TYPES:
        parts.append(f"K-LINK field type '{f.field_type}', sent as text")
    if f.hidden_options:
        parts.append(
            f"{f.hidden_options} option(s) hold invisible characters and cannot be chosen here "
            "(an admin can fix them in K-LINK)"
        )
    if f.has_options:
        pairs = [
            f"{v}={lab}" if _adds_information(v, lab) else v
            for v, lab in zip(f.option_values, f.option_labels, strict=True)
        ]
        if f.capped:
            parts.append(
                f"one of {len(pairs)} options, e.g. {', '.join(pairs[:8])}; others are checked on submit"
            )
        elif any(_adds_information(v, lab) for v, lab in zip(f.option_values, f.option_labels, strict=True)):
            parts.append("labels: " + ", ".join(p for p in pairs if "=" in p))
    return "; ".join(parts)


def _annotation_for(f: CompiledField, *, optional: bool, cap: int, describe: bool = True) -> Any:
    base = _base_type(f)
    if builtin_list_type(f):
        base = list[base]  # type: ignore[valid-type]
    ann: Any = base | None if optional else base
    if describe:
        return Annotated[ann, Field(description=_describe(f, cap))]
    return ann


def _base_type(f: CompiledField) -> Any:
    t = f.field_type
    if t in ("select", "multiselect"):
        item: Any = Literal[tuple(f.option_values)] if f.option_values and not f.capped else str
        if t == "select":
            return item
        return Annotated[list[item], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True})]
    if t == "number":
        return float
    if t == "checkbox":
        return bool
    if t == "date":
        return dt.date
    if t == "datetime":
        return dt.datetime
    if t == "email":
        return Annotated[str, Field(pattern=_EMAIL_PATTERN, json_schema_extra={"format": "email"})]
    if t == "phone":
        return Annotated[str, Field(pattern=_PHONE_PATTERN)]
    if t == "url":
        return Annotated[str, Field(pattern=_URL_PATTERN, json_schema_extra={"format": "uri"})]
    return str


def _param_name(system_name: str) -> str | None:
    name = re.sub(r"[^0-9a-zA-Z_]", "_", system_name).strip("_").lower()
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        return None
    return name


def _as_definition(raw: Any) -> FormField | None:
    """The wire model of one definition: as the K-LINK client parsed it, or parsed from a mapping.

    Mappings are the built-in fallback forms and hand-written definitions: they carry no record id, so
    a local one is supplied (the id never reaches the compiled schema).
    """
    if isinstance(raw, FormField):
        return raw
    if not isinstance(raw, Mapping):
        return None
    try:
        return FormField.model_validate({"id": f"local:{raw.get('system_name')}", **raw})
    except ValueError:
        return None


def _digest_view(d: FormField) -> dict[str, Any]:
    # Only what the compiled schema depends on: a new record id or `is_unique` flag is no change.
    return {
        "system_name": d.system_name,
        "display_name": d.display_name,
        "type": d.type or "text",
        "is_default": d.is_default,
        "is_archived": d.is_archived,
        "is_required": d.is_required,
        "options": [{"value": o.value, "label": o.label} for o in d.options if o.value is not None],
    }


def definitions_digest(definitions: Iterable[FormField | Mapping[str, Any]]) -> str:
    """A stable digest of the definitions that matter to the compiled schema (order-insensitive)."""
    normalized = []
    for raw in definitions:
        d = _as_definition(raw)
        if d is not None and d.system_name:
            normalized.append(_digest_view(d))
    normalized.sort(key=lambda d: str(d["system_name"]))
    blob = json.dumps(normalized, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def compile_form_schema(
    kind: FormKind,
    definitions: Iterable[FormField | Mapping[str, Any]],
    *,
    option_cap: int = DEFAULT_OPTION_CAP,
    reserved: Iterable[str] = (),
) -> FormSchema:
    """Compile a tenant's field definitions of one kind into a `FormSchema`.

    `reserved` names built-in system_names the tool handles itself (e.g. `contact_id`, `tags`); they are
    left out of the compiled built-ins. Archived fields are left out; unusable ones are listed in
    `skipped` with the reason. Never raises on odd definitions.
    """
    defs = list(definitions)
    reserved_set = {r.lower() for r in reserved}
    builtin: list[CompiledField] = []
    custom: list[CompiledField] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for raw in defs:
        d = _as_definition(raw)
        if d is None:
            skipped.append(f"{raw!r:.60}: not a field definition")
            continue
        if d.is_archived:
            continue
        sys_name = (d.system_name or "").strip()
        if not sys_name or sys_name in seen:
            skipped.append(f"{mark_invisible(sys_name) or '<empty>'}: empty or duplicate system_name")
            continue
        seen.add(sys_name)
        if not d.is_default and (has_invisible(sys_name) or not sys_name.isprintable()):
            # The key of the custom_fields object, sent back as is: it cannot be cleaned, so refused.
            skipped.append(f"{mark_invisible(sys_name)}: system_name holds invisible characters")
            continue
        ftype = clean_label((d.type or "text").strip().lower(), max_len=40, markup_safe=True) or "text"
        options = [o for o in d.options if o.value is not None]
        usable = [o for o in options if not has_invisible(o.value or "")]
        values = tuple(o.value or "" for o in usable)
        labels = tuple(clean_label(o.label or o.value or "", max_len=80, markup_safe=True) for o in usable)
        hidden = len(options) - len(usable)
        if ftype in ("select", "multiselect") and hidden and not values:
            skipped.append(f"{mark_invisible(sys_name)}: every option value holds invisible characters")
            continue
        if ftype in ("select", "multiselect") and not values:
            ftype_note = ftype
            ftype = "text"
            logger.info("field %s is a %s without options; accepted as text", sys_name, ftype_note)
        compiled = functools.partial(
            CompiledField,
            system_name=sys_name,
            display_name=clean_label(d.display_name or "", max_len=120, markup_safe=True)
            or mark_invisible(sys_name),
            field_type=ftype,
            required=d.is_required,
            option_values=values,
            option_labels=labels,
            capped=len(values) > option_cap,
            kind_hint=kind,
            hidden_options=hidden,
        )
        if not d.is_default:
            custom.append(compiled(wire_key=sys_name, param_name=sys_name, is_custom=True))
            continue
        if sys_name.lower() in reserved_set:
            continue
        wire_key = _LIST_BUILTINS.get(sys_name.lower(), sys_name)
        param = _param_name(wire_key)
        if param is None or param in ("custom_fields", "ctx", "confirmation_token"):
            skipped.append(f"{mark_invisible(sys_name)}: cannot be a parameter name")
            continue
        builtin.append(compiled(wire_key=wire_key, param_name=param, is_custom=False))
    return FormSchema(
        kind=kind,
        builtin=builtin,
        custom=custom,
        skipped=skipped,
        digest=definitions_digest(defs),
        option_cap=option_cap,
    )


def builtin_list_type(f: CompiledField) -> bool:
    """True for built-ins that travel as lists (`emails`, `phones`)."""
    return f.wire_key in ("emails", "phones")


def wire_value(f: CompiledField, value: Any) -> Any:
    """A validated parameter value in the form the K-LINK body expects."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if builtin_list_type(f) and not isinstance(value, list):
        return [value]
    return value
