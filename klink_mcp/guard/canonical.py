"""Canonical JSON and argument digests shared by the confirmation tokens and the audit log.

Two calls are "the same action" when their normalised arguments are equal: `confirmation_token`
is dropped (it is the proof, not part of the action) and so are top-level `None` values (an
omitted optional argument and an explicit null mean the same thing to every tool). The digest
is SHA-256 over canonical JSON (sorted keys, compact, UTF-8, `ensure_ascii=False`), so key
order and whitespace never change it.

This module must not import `mcp`, log, or hold secrets: it only turns data into stable bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic_core import to_jsonable_python

__all__ = ["CONFIRMATION_TOKEN_ARG", "args_digest", "canonical_json", "normalize_args"]

CONFIRMATION_TOKEN_ARG = "confirmation_token"  # noqa: S105 - an argument name, not a credential


def canonical_json(value: Any) -> str:
    """Serialise `value` to one canonical JSON string (sorted keys, no spaces, real Unicode).

    Pydantic models, enums, dates and tuples are converted the way pydantic would dump them.

    Raises:
        pydantic_core.PydanticSerializationError: `value` holds something with no JSON form.
    """
    return json.dumps(
        to_jsonable_python(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def normalize_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that define an action: without `confirmation_token` and without `None` values."""
    return {k: v for k, v in args.items() if k != CONFIRMATION_TOKEN_ARG and v is not None}


def args_digest(args: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of the normalised arguments.

    Raises:
        pydantic_core.PydanticSerializationError: an argument has no JSON form.
    """
    return hashlib.sha256(canonical_json(normalize_args(args)).encode("utf-8")).hexdigest()
