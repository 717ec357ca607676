"""The audit log: one JSON line per guard decision and per upstream outcome.

Each record says when (ISO-8601 UTC), which tool, which targets (ids), a SHA-256 digest of the
normalised arguments (the same digest the confirmation tokens bind to, so a "confirmation_required"
line and its "confirmed_by_token" line can be matched), the decision, the confirmation channel, the
upstream HTTP status and a short error. Lines are appended to a file (parent folders created, the
file created private to the user, flushed per line). `recent()`, which backs the
`klink://audit/recent` resource, reads the file's tail, so a restart loses nothing from view; without
a file a bounded in-memory ring answers.

Privacy by default: argument values are summarised. Ids, enumerations, numbers and booleans are
kept; free text (message bodies, names, notes, e-mails...) appears only as its length unless
`include_bodies` is set; anything that looks like a credential (`confirmation_token`, `*token*`,
`*secret*`, `*password*`, `authorization`) never appears, whatever the setting.

Decisions: "executed", "failed", "confirmation_required", "confirmed_by_token",
"confirmed_by_elicitation", "confirmed_by_page", "approved_on_page", "declined", "cancelled", "timeout",
"expired", "superseded", "refused:<reason>", "read_only", "not_guarded".

`change` (executed writes whose tool reports it): the before -> after of exactly the fields the call
changed, values in full - a before-image, so a mistake can be undone by hand. It is personal data
like the rest of the log (the file is private to the server's user); message bodies never appear in
it (a send has no before-image).

`approval` (approval-page channels) says how a person decided: ``{"ref", "via", "decided_at",
"client", "user_agent", "principal", "edited", "removed_invisible"}`` - `ref` is a hash of the
approval id, never the id (the id opens the page).

Every record made during an HTTP request names who asked (`principal`, the authenticated caller, when there is one) and the
HTTP `request_id`, so an operator can follow one request through the JSON logs and the audit.

Replicas (`attach_store`): records are also appended to the shared store (`Store.append_audit`) by a
background sink (`run_store_sink`, started by the server lifespan) so `record` stays synchronous and
never waits on a database; `recent_shared` then answers `klink://audit/recent` from the store, i.e.
from every replica. The file sink stays as it is.

This module must not import `mcp` and must not raise out of `record` because a disk is full: an
audit write failure is logged (logger "klink_mcp.guard") and the in-memory record is kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic_core import PydanticSerializationError

from klink_mcp.content import sanitize_text
from klink_mcp.guard.canonical import args_digest, canonical_json

if TYPE_CHECKING:
    from klink_mcp.store.base import Store

_SINK_BUFFER = 10_000  # records waiting for the shared store; beyond this they are dropped (and logged)

__all__ = ["DECISIONS", "AuditLog", "summarize_args"]

logger = logging.getLogger("klink_mcp.guard")

DECISIONS: frozenset[str] = frozenset(
    {
        "executed",
        "failed",
        "confirmation_required",
        "confirmed_by_token",
        "confirmed_by_elicitation",
        "confirmed_by_page",
        "approved_on_page",
        "expired",
        "superseded",
        "declined",
        "cancelled",
        "timeout",
        "read_only",
        "not_guarded",
    }
)
_REFUSED_PREFIX = "refused:"

_SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|api_?key", re.IGNORECASE)
_ID_KEY = re.compile(r"(?:^|_)(?:id|ids|ID|IDs)$|[a-z0-9](?:Id|Ids)$")
# Short, non-free-text arguments worth keeping verbatim: enumerations and paging.
_PLAIN_KEYS = frozenset(
    {
        "action",
        "action_type",
        "actionType",
        "mode",
        "status",
        "priority",
        "channel",
        "type",
        "message_type",
        "messageType",
        "page",
        "page_size",
        "pageSize",
        "ticket_number",
        "ticketNumber",
        "tags",
    }
)
_MAX_PLAIN_CHARS = 200
_MAX_BODY_CHARS = 4000
_MAX_ERROR_CHARS = 500


def _summarize_value(key: str, value: Any, include_bodies: bool) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        if _ID_KEY.search(key) or key in _PLAIN_KEYS:
            return sanitize_text(value, max_len=_MAX_PLAIN_CHARS)
        if include_bodies:
            return sanitize_text(value, max_len=_MAX_BODY_CHARS)
        return {"chars": len(value)}
    if isinstance(value, list | tuple):
        if _ID_KEY.search(key) or key in _PLAIN_KEYS or include_bodies:
            return [_summarize_value(key, item, include_bodies) for item in value][:100]
        return {"items": len(value)}
    if isinstance(value, Mapping):
        return {
            str(k): _summarize_value(str(k), v, include_bodies)
            for k, v in value.items()
            if not _SECRET_KEY.search(str(k))
        }
    return {"type": type(value).__name__}


def summarize_args(args: Mapping[str, Any], *, include_bodies: bool = False) -> dict[str, Any]:
    """What the audit log keeps of a call's arguments (see the module docstring for the rules)."""
    return {
        key: _summarize_value(key, value, include_bodies)
        for key, value in args.items()
        if not _SECRET_KEY.search(key) and value is not None
    }


def _safe_digest(args: Mapping[str, Any]) -> str | None:
    # An argument with no JSON form (a NaN, an arbitrary object) must not stop the record being written.
    try:
        return args_digest(args)
    except (ValueError, TypeError, PydanticSerializationError):
        return None


def _iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Append-only JSON-lines audit log with an in-memory ring of the most recent records.

    With `path=None` only the ring is kept (nothing touches the disk).
    """

    def __init__(
        self,
        path: Path | None,
        include_bodies: bool = False,
        ring_size: int = 200,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Raises:
            OSError: the log's folder cannot be created or the file cannot be opened for appending
                (checked here, so a bad `KLINK_AUDIT_LOG` stops the server at start, not at the first write).
            ValueError: `ring_size` is smaller than 1.
        """
        if ring_size < 1:
            raise ValueError("ring_size must be at least 1")
        self.path = path
        self.include_bodies = include_bodies
        self._ring: deque[dict[str, Any]] = deque(maxlen=ring_size)
        self._clock = clock
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._pending: deque[dict[str, Any]] = deque()  # records not yet in the attached store
        self._wake: anyio.Event | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(self._open_for_append(path))

    def attach_store(self, store: Store) -> None:
        """Also append every record to `store` (drained by `run_store_sink`)."""
        self._store = store

    async def flush_to_store(self) -> None:
        """Append every queued record to the attached store now; a failed append is logged."""
        while self._pending and self._store is not None:
            entry = self._pending.popleft()
            try:
                await self._store.append_audit(entry)
            except Exception as exc:  # the file and ring keep the record; the store only misses it
                logger.error("audit append to the shared store failed: %s", type(exc).__name__)

    async def run_store_sink(self) -> None:
        """Append queued records to the attached store until cancelled (`flush_to_store` in a loop)."""
        while True:
            await self.flush_to_store()
            self._wake = anyio.Event()
            if not self._pending:
                await self._wake.wait()

    async def recent_shared(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest records of every replica (from a shared store, PostgreSQL), else `recent(limit)`."""
        if self._store is None or not self._store.shares_across_processes:
            return self.recent(limit)
        if limit <= 0:
            return []
        try:
            rows = await self._store.recent_audit(limit)
        except Exception as exc:
            logger.error("audit read from the shared store failed: %s", type(exc).__name__)
            return self.recent(limit)
        return [dict(row.record) for row in rows]

    def __repr__(self) -> str:
        return f"AuditLog(path={self.path!r}, include_bodies={self.include_bodies!r})"

    def record(
        self,
        tool: str,
        decision: str,
        *,
        target_ids: Mapping[str, str] | None = None,
        args: Mapping[str, Any] | None = None,
        channel: str | None = None,
        upstream_status: int | None = None,
        error: str | None = None,
        approval: Mapping[str, Any] | None = None,
        change: Mapping[str, Any] | None = None,
        principal: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Write one record (file, ring and the attached store) and return it.

        `change`: the before -> after of what an executed write changed, `{field: {"before": ...,
        "after": ...}}`, kept in full (sanitized, not summarised) so a mistake can be undone by hand.

        Raises:
            ValueError: `decision` is not in the vocabulary (a programming error).
        """
        if decision not in DECISIONS and not (
            decision.startswith(_REFUSED_PREFIX) and len(decision) > len(_REFUSED_PREFIX)
        ):
            raise ValueError(f"unknown audit decision {decision!r}")
        call_args = dict(args or {})
        entry: dict[str, Any] = {
            "time": _iso_utc(self._clock()),
            "tool": tool,
            "decision": decision,
            "channel": channel,
            "target_ids": {str(k): sanitize_text(str(v), max_len=200) for k, v in (target_ids or {}).items()},
            "args_digest": _safe_digest(call_args),
            "args": summarize_args(call_args, include_bodies=self.include_bodies),
            "upstream_status": upstream_status,
            "error": None if error is None else sanitize_text(error, max_len=_MAX_ERROR_CHARS),
        }
        # Present whenever known (HTTP); stdio records have neither, and keep their old shape.
        if principal is not None:
            entry["principal"] = sanitize_text(principal, max_len=_MAX_PLAIN_CHARS)
        if request_id is not None:
            entry["request_id"] = sanitize_text(request_id, max_len=_MAX_PLAIN_CHARS)
        if approval is not None:
            entry["approval"] = {
                str(k): sanitize_text(v, max_len=_MAX_PLAIN_CHARS) if isinstance(v, str) else v
                for k, v in approval.items()
            }
        if change is not None:
            entry["change"] = {str(k): _plain(v) for k, v in change.items()}
        line = canonical_json(entry)
        with self._lock:
            self._ring.append(entry)
            if self.path is not None:
                self._append(line)
        if self._store is not None:
            if len(self._pending) >= _SINK_BUFFER:
                logger.error("audit records are not reaching the shared store fast enough; one was dropped")
            else:
                self._pending.append(dict(entry))
                if self._wake is not None:
                    self._wake.set()
        return entry

    def _append(self, line: str) -> None:
        assert self.path is not None
        try:
            fd = self._open_for_append(self.path)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
        except OSError as exc:
            logger.error("audit log write to %s failed: %s", self.path, exc.strerror or type(exc).__name__)

    @staticmethod
    def _open_for_append(path: Path) -> int:
        # 0o600: the log names customers; only the server's user should read it.
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent records, newest first (at most `limit`, at most the ring size).

        With a file, they are read from the file's tail: records written before a restart, or by
        another replica sharing the file, stay in view. If the file cannot be read, the in-memory
        ring answers (and the failure is logged).
        """
        if limit <= 0:
            return []
        limit = min(limit, self._ring.maxlen or limit)
        if self.path is not None:
            try:
                return list(reversed(_tail_records(self.path, limit)))
            except OSError as exc:
                logger.error("audit log read of %s failed: %s", self.path, exc.strerror or type(exc).__name__)
        with self._lock:
            items = list(self._ring)
        return [dict(item) for item in reversed(items[-limit:])]


_TAIL_BLOCK = 64 * 1024
_TAIL_MAX_BYTES = 8 * 1024 * 1024


def _tail_records(path: Path, limit: int) -> list[dict[str, Any]]:
    """The last `limit` JSON records of a JSON-lines file, oldest first, reading only its tail.

    A line that is not a JSON object (a torn last line, a foreign line) is skipped.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        data = b""
        pos = end
        while pos > 0 and data.count(b"\n") <= limit and end - pos < _TAIL_MAX_BYTES:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
    lines = data.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # the first line may be cut in the middle
    records: list[dict[str, Any]] = []
    for raw in reversed(lines):
        if len(records) >= limit:
            break
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return list(reversed(records))


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a before/after value, every string sanitized (never cut)."""
    if isinstance(value, str):
        return sanitize_text(value, max_len=None)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return sanitize_text(str(value), max_len=None)
