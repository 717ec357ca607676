"""The shared store: nonces, approvals, webhook events, audit and fan-out, for one process or many replicas.

`open_store(settings)` is the one way in: it picks the implementation from the settings, opens it
(applying migrations) and closes it on exit.

- `KLINK_DATABASE_URL=postgresql://user:pass@host/db` (or `postgres://`): `PostgresStore`, for
  several replicas (needs the `postgres` extra: `pip install 'klink-mcp[postgres]'`).
- `KLINK_DATABASE_URL=sqlite:///abs/path.sqlite3`: `SQLiteStore` on that file.
- `KLINK_DATABASE_URL=memory://`: `MemoryStore` (nothing durable).
- unset: `SQLiteStore` on the events database (`KLINK_EVENTS_DB` or the default path) -- today's
  file; `KLINK_EVENTS_DB=:memory:` gives a `MemoryStore`.

The PostgreSQL driver is imported only when a PostgreSQL URL is used. Nothing runs at import time;
the URL's password never reaches a log or an error. This package must not import `mcp`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote, urlsplit

from klink_mcp.config import Settings
from klink_mcp.store.base import (
    APPROVAL_STATES,
    TOPICS,
    ApprovalExists,
    ApprovalRecord,
    ApprovalState,
    AuditRecord,
    EventLog,
    Notification,
    Store,
    StoreError,
    Subscription,
    Topic,
)
from klink_mcp.store.memory import MemoryDatabase, MemoryStore
from klink_mcp.store.sqlite import SQLiteStore
from klink_mcp.webhooks.store import MEMORY, events_db_path

__all__ = [
    "APPROVAL_STATES",
    "TOPICS",
    "ApprovalExists",
    "ApprovalRecord",
    "ApprovalState",
    "AuditRecord",
    "EventLog",
    "MemoryDatabase",
    "MemoryStore",
    "Notification",
    "SQLiteStore",
    "Store",
    "StoreError",
    "Subscription",
    "Topic",
    "create_store",
    "open_store",
]


def create_store(settings: Settings) -> Store:
    """The store `settings` select, not opened yet (see the module docstring for the choice).

    Raises:
        StoreError: an unsupported URL scheme, or a PostgreSQL URL without the driver installed.
    """
    retention = settings.events_retention
    url = settings.database_url.get_secret_value().strip() if settings.database_url is not None else ""
    if not url:
        path = events_db_path(settings)
        return MemoryStore(retention=retention) if path == MEMORY else SQLiteStore(path, retention=retention)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        try:
            from klink_mcp.store.postgres import PostgresStore
        except ImportError:
            raise StoreError(
                "KLINK_DATABASE_URL is a PostgreSQL URL but the driver is missing: "
                "pip install 'klink-mcp[postgres]'"
            ) from None
        conninfo = url if not scheme.startswith("postgresql+") else "postgresql" + url[len(scheme) :]
        return PostgresStore(conninfo, retention=retention)
    if scheme == "sqlite":
        path = unquote(urlsplit(url).path)
        if not path:
            raise StoreError("KLINK_DATABASE_URL=sqlite:///<absolute path> needs a path")
        return (
            MemoryStore(retention=retention)
            if path in (MEMORY, "/" + MEMORY)
            else SQLiteStore(path, retention=retention)
        )
    if scheme == "memory":
        return MemoryStore(retention=retention)
    # Only the scheme is echoed: the rest may hold a password.
    raise StoreError(
        f"KLINK_DATABASE_URL has an unsupported scheme {scheme or '(none)'!r}: "
        "use postgresql://..., sqlite:///path or memory://"
    )


@asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """`async with open_store(settings) as store:` -- the selected store, open and migrated; closed on exit.

    Raises:
        StoreError: unsupported URL, missing driver, database unreachable, or a schema newer than
            this program.
    """
    store = create_store(settings)
    try:
        await store.open()
        yield store
    finally:
        await store.close()
