"""The 21 K-LINK operations as data: name, method, path template, response envelope, how sure we are.

Names are exactly the MCP tool names of the contract, `docs/klink-api.md` (the project's understanding of
the K-LINK API: documented vs inferred, and overrides). Paths are templates
such as "/api/v1/contacts/{id}"; `_http.py` fills the placeholders with validated, URL-quoted ids.

Much of the contract is [inferred], so a tenant whose API differs is fixed by configuration, not a release:
`Catalog.from_settings(settings)` applies `settings.operations` (TOML `[operations.<name>]` or
`KLINK_OP_<NAME>_METHOD` / `_PATH`). An override may change the method and the path, but must keep the
operation's placeholders (a path without `{id}` cannot address a contact).

Idempotency (whether `_http.py` may retry a failed attempt) is derived, never configured: reads and
DELETE are idempotent; PUT/PATCH only when the operation's body *sets* state (repeating it changes
nothing); POST never is, whatever the operation. So overriding a method recomputes it.

This module must not import `mcp` and does no I/O.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from klink_mcp.config import ConfigError, OperationOverride

if TYPE_CHECKING:
    from klink_mcp.config import Settings

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Envelope = Literal["paged", "status_data", "success_data", "send_status", "data", "cx_logs"]
Certainty = Literal["documented", "inferred", "partly"]

_SAFE_METHODS = frozenset({"GET", "DELETE"})


@dataclass(frozen=True, slots=True)
class Operation:
    """One K-LINK endpoint.

    `envelope` names the documented response shape (see the contract's "Response envelopes"):
    "paged" {total,page,pageSize,lastPage,data}, "status_data" {status,message,data}, "success_data"
    {success,data}, "send_status" {status: 200, message, data}, "data" {data: [...]}, "cx_logs"
    {requestId, cxLogs: {...paged}}. `status` says how sure the contract is: "documented", "inferred",
    or "partly" (method documented, path/body inferred). `set_semantics` marks writes whose body sets
    state, so that repeating them is harmless.
    """

    name: str
    method: HttpMethod
    path: str
    envelope: Envelope
    status: Certainty
    paged: bool = False
    set_semantics: bool = False

    @property
    def idempotent(self) -> bool:
        """True when a failed attempt may be repeated without risk of applying the change twice."""
        if self.method == "POST":
            return False
        return self.method in _SAFE_METHODS or self.set_semantics

    @property
    def placeholders(self) -> frozenset[str]:
        """The `{name}` fields of the path template."""
        return path_placeholders(self.path)


def path_placeholders(template: str) -> frozenset[str]:
    """The placeholder names of a path template.

    Raises:
        ConfigError: the template is malformed (unbalanced braces, `{a.b}`, `{id!r}`, `{id:x}`, `{}`).
    """
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"bad path template {template!r}: {exc}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ConfigError(f"bad path template {template!r}: placeholder {{{field}}} must be a plain name")
        names.add(field)
    return frozenset(names)


def _op(
    name: str,
    method: HttpMethod,
    path: str,
    envelope: Envelope,
    status: Certainty,
    *,
    paged: bool = False,
    set_semantics: bool = False,
) -> Operation:
    return Operation(name, method, path, envelope, status, paged=paged, set_semantics=set_semantics)


# The contract's operations table, in its order.
DEFAULT_OPERATIONS: tuple[Operation, ...] = (
    _op("list_contacts", "GET", "/api/v1/contacts", "paged", "documented", paged=True),
    _op("create_contact", "POST", "/api/v1/contacts", "status_data", "partly"),
    _op(
        "find_contacts_by_social_platform_id",
        "GET",
        "/api/v1/contacts/social-platform/{socialPlatformId}",
        "status_data",
        "partly",
    ),
    _op("get_contact_form_fields", "GET", "/api/v1/contacts/fields", "paged", "documented", paged=True),
    _op("get_contact", "GET", "/api/v1/contacts/{id}", "status_data", "documented"),
    _op("update_contact", "PATCH", "/api/v1/contacts/{id}", "status_data", "partly", set_semantics=True),
    _op("delete_contact", "DELETE", "/api/v1/contacts/{id}", "status_data", "partly"),
    _op("list_contact_groups", "GET", "/api/v1/contacts/groups", "status_data", "partly"),
    # MERGE/REPLACE/REMOVE of named tags all converge: sending the same body twice gives the same tags.
    _op(
        "update_contact_tags",
        "PATCH",
        "/api/v1/contacts/{id}/tags",
        "status_data",
        "documented",
        set_semantics=True,
    ),
    _op("list_tags", "GET", "/api/v1/tags", "data", "inferred"),
    _op("list_channels", "GET", "/api/v1/channels", "data", "inferred"),
    _op("create_channel", "POST", "/api/v1/channels", "status_data", "inferred"),
    _op("list_tickets", "GET", "/api/v1/tickets", "paged", "documented", paged=True),
    _op("create_ticket", "POST", "/api/v1/tickets", "success_data", "documented"),
    _op("list_contact_tickets", "GET", "/api/v1/tickets/contact/{contactId}", "paged", "partly", paged=True),
    _op("get_ticket_form_fields", "GET", "/api/v1/tickets/fields", "paged", "partly", paged=True),
    _op("update_ticket", "PATCH", "/api/v1/tickets/{id}", "success_data", "partly", set_semantics=True),
    _op(
        "update_ticket_status",
        "PUT",
        "/api/v1/tickets/{id}/status",
        "success_data",
        "partly",
        set_semantics=True,
    ),
    _op("list_categories", "GET", "/api/v1/categories", "data", "documented"),
    _op("list_cx_logs", "GET", "/api/v1/cx-logs", "cx_logs", "documented", paged=True),
    _op("send_message", "POST", "/api/v1/messages/send", "send_status", "documented"),
)

OPERATION_NAMES: tuple[str, ...] = tuple(op.name for op in DEFAULT_OPERATIONS)


def _apply_override(op: Operation, override: OperationOverride) -> Operation:
    path = op.path
    if override.path is not None:
        path = override.path.strip()
        if any(ch in path for ch in "?#") or any(ch.isspace() for ch in path):
            raise ConfigError(
                f"operations.{op.name}.path: {path!r} must be a bare path (no query, fragment or spaces)"
            )
        try:
            placeholders = path_placeholders(path)
        except ConfigError as exc:
            raise ConfigError(f"operations.{op.name}.path: {exc}") from None
        if placeholders != op.placeholders:
            want = ", ".join(f"{{{p}}}" for p in sorted(op.placeholders)) or "no placeholders"
            raise ConfigError(
                f"operations.{op.name}.path: {path!r} must use exactly {want} (like {op.path!r})"
            )
    method = override.method or op.method
    return replace(op, method=method, path=path)


class Catalog:
    """The operations in use: the contract's defaults with any configured overrides applied."""

    def __init__(self, operations: Iterable[Operation] = DEFAULT_OPERATIONS) -> None:
        self._ops: dict[str, Operation] = {op.name: op for op in operations}

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        """The default catalogue with `settings.operations` applied.

        Raises:
            ConfigError: an override names an unknown operation or changes the path's placeholders.
        """
        return cls().with_overrides(settings.operations)

    def with_overrides(self, overrides: Mapping[str, OperationOverride]) -> Catalog:
        """A new catalogue with these method/path overrides applied.

        Raises:
            ConfigError: an override names an unknown operation or changes the path's placeholders.
        """
        ops = dict(self._ops)
        for name, override in overrides.items():
            if name not in ops:
                known = ", ".join(sorted(ops))
                raise ConfigError(f"operations.{name}: unknown operation (known: {known})")
            ops[name] = _apply_override(ops[name], override)
        return Catalog(ops.values())

    def __getitem__(self, name: str) -> Operation:
        return self._ops[name]

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)

    def __repr__(self) -> str:
        changed = [op.name for op in self if op not in DEFAULT_OPERATIONS]
        return f"Catalog({len(self)} operations, overridden={changed})"


__all__ = ["DEFAULT_OPERATIONS", "OPERATION_NAMES", "Catalog", "Operation", "path_placeholders"]
