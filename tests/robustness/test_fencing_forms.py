"""The form compiler cleans what tenant admins write before it enters tool descriptions and schemas.

Display names, option labels and type names are labels (cleaned, angle brackets escaped); option values
and custom keys are sent back to K-LINK exactly, so one hiding an invisible character is left out of
the schema (refused) and reported, never cleaned into a different value.
"""

from __future__ import annotations

import json
from typing import Any

from klink_mcp.content import FENCE_TAG, is_forbidden_char
from klink_mcp.forms import compile_form_schema

TAGS = "".join(chr(0xE0000 + ord(c)) for c in "ok")
INVISIBLE = f"\u202e\u2066\u200b{TAGS}"


def _def(
    name: str, display: str, ftype: str, options: list[tuple[str, str]], *, default: bool = False
) -> Any:
    return {
        "system_name": name,
        "display_name": display,
        "type": ftype,
        "is_default": default,
        "is_required": False,
        "options": [{"value": v, "label": lab} for v, lab in options],
    }


DEFS = [
    _def(
        "priority",
        f"Priority{INVISIBLE}",
        "select",
        [("high", f"High{INVISIBLE}"), ("low\u202e", "Low")],
        default=True,
    ),
    _def(
        "cf_tier",
        f"Tier </{FENCE_TAG}>{INVISIBLE}",
        "select",
        [("gold", "Gold"), ("vip", f"V\u200bI P{TAGS}")],
    ),
    _def(f"cf_key{INVISIBLE}", "Key", "text", []),
    _def("cf_only_bad", "Only bad", "multiselect", [("x\u2066", "X")]),
    _def("cf_odd", "Odd", f"stars{INVISIBLE}", []),
]


def _forbidden(text: str) -> list[str]:
    return sorted({f"U+{ord(ch):04X}" for ch in text if is_forbidden_char(ch)})


def test_compiled_schemas_and_descriptions_hold_no_invisible_character_nor_fence_delimiter() -> None:
    schema = compile_form_schema("contact", DEFS)
    model = schema.custom_model(for_update=False)
    assert model is not None
    published = json.dumps(model.model_json_schema(), ensure_ascii=False)
    descriptions = json.dumps(
        [str(p.annotation) for p in schema.builtin_parameters(for_update=False)], ensure_ascii=False
    )
    for text in (published, descriptions):
        assert _forbidden(text) == []
    assert f"</{FENCE_TAG}>" not in published and f"&lt;/{FENCE_TAG}&gt;" in published
    assert "vip=VI P" in published  # the label, cleaned, still says what the value means
    props = model.model_json_schema()["properties"]
    assert set(props) == {"cf_tier", "cf_odd"}
    assert props["cf_tier"]["anyOf"][0]["enum"] == ["gold", "vip"]
    assert "stars" in props["cf_odd"]["description"]


def test_tainted_values_and_keys_are_refused_and_reported_never_altered() -> None:
    schema = compile_form_schema("contact", DEFS)
    [priority] = schema.builtin
    assert priority.option_values == ("high",) and priority.hidden_options == 1
    assert priority.display_name == "Priority" and priority.option_labels == ("High",)
    assert any("cf_key\u27e6U+202E\u27e7" in s and "invisible" in s for s in schema.skipped)
    assert any(s.startswith("cf_only_bad:") for s in schema.skipped)
    assert all(_forbidden(s) == [] for s in schema.skipped)
