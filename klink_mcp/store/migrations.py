"""Versioned schema migrations for the shared store, applied when a store opens.

A table `klink_schema_migrations(version, name, applied_at)` records what is applied. Migrations
only ever get appended to the lists below (never edited once released): a database records which
versions it has, and a database that has a version this program does not know was migrated by a
newer klink-mcp, so it is refused rather than used with a schema we cannot read.

Several replicas starting at once: on PostgreSQL the whole run happens in one transaction holding
`pg_advisory_xact_lock(MIGRATION_LOCK)`; the first replica applies, the others wait on the lock,
then find everything applied and do nothing. On SQLite `BEGIN IMMEDIATE` serialises writers the
same way. The SQLite events table itself predates this table and keeps its own `user_version`
(see `webhooks/store.py`).

This module must not log SQL parameters or import `mcp`.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from klink_mcp.webhooks.store import StoreError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "MIGRATION_LOCK",
    "POSTGRES_MIGRATIONS",
    "SQLITE_MIGRATIONS",
    "Migration",
    "migrate_postgres",
    "migrate_sqlite",
]

logger = logging.getLogger(__name__)

# Key of the transaction-level advisory lock held while migrating ("klinkmig" as a 64-bit integer).
MIGRATION_LOCK: Final = int.from_bytes(b"klinkmig", "big")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: applied once, in version order, inside the migrating transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS klink_schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)

POSTGRES_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "webhook events",
        (
            """CREATE TABLE klink_events (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                dedupe_key TEXT NOT NULL UNIQUE,
                event TEXT NOT NULL,
                ts TIMESTAMPTZ NOT NULL,
                contact_id TEXT,
                received_at TIMESTAMPTZ NOT NULL,
                data JSONB NOT NULL
            )""",
            "CREATE INDEX klink_events_by_type ON klink_events (event, id)",
            "CREATE INDEX klink_events_by_contact ON klink_events (contact_id, id)",
        ),
    ),
    Migration(
        2,
        "nonces and approvals",
        (
            "CREATE TABLE klink_nonces (nonce TEXT PRIMARY KEY, expires_at TIMESTAMPTZ NOT NULL)",
            "CREATE INDEX klink_nonces_by_expiry ON klink_nonces (expires_at)",
            """CREATE TABLE klink_approvals (
                id TEXT PRIMARY KEY,
                state TEXT NOT NULL
                    CHECK (state IN ('pending', 'approved', 'declined', 'expired', 'consumed')),
                body JSONB NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL,
                decided_at TIMESTAMPTZ,
                decided_by JSONB,
                extra JSONB,
                consumed_at TIMESTAMPTZ
            )""",
            "CREATE INDEX klink_approvals_by_expiry ON klink_approvals (expires_at)",
        ),
    ),
    Migration(
        3,
        "audit log",
        (
            """CREATE TABLE klink_audit (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                at TIMESTAMPTZ NOT NULL,
                record JSONB NOT NULL
            )""",
        ),
    ),
)

# Times are stored as `YYYY-MM-DDTHH:MM:SS.ffffffZ` text, which sorts in time order.
SQLITE_MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "nonces and approvals",
        (
            "CREATE TABLE klink_nonces (nonce TEXT PRIMARY KEY, expires_at TEXT NOT NULL)",
            "CREATE INDEX klink_nonces_by_expiry ON klink_nonces (expires_at)",
            """CREATE TABLE klink_approvals (
                id TEXT PRIMARY KEY,
                state TEXT NOT NULL
                    CHECK (state IN ('pending', 'approved', 'declined', 'expired', 'consumed')),
                body TEXT NOT NULL,
                created_at TEXT NOT NULL,
                expires_at TEXT NOT NULL,
                decided_at TEXT,
                decided_by TEXT,
                extra TEXT,
                consumed_at TEXT
            )""",
            "CREATE INDEX klink_approvals_by_expiry ON klink_approvals (expires_at)",
        ),
    ),
    Migration(
        2,
        "audit log",
        (
            """CREATE TABLE klink_audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at TEXT NOT NULL,
                record TEXT NOT NULL
            )""",
        ),
    ),
)


def _check_known(applied: set[int], migrations: tuple[Migration, ...]) -> None:
    known = {m.version for m in migrations}
    unknown = sorted(applied - known)
    if unknown:
        raise StoreError(
            f"the database has schema version(s) {unknown} that this klink-mcp does not know: "
            "it was migrated by a newer release; upgrade klink-mcp"
        )


async def migrate_postgres(
    conn: psycopg.AsyncConnection[Any], migrations: tuple[Migration, ...] = POSTGRES_MIGRATIONS
) -> list[int]:
    """Apply the missing `migrations` on `conn` (autocommit connection); returns the versions applied.

    Raises:
        StoreError: the database has a version this program does not know.
        psycopg.Error: a statement failed (nothing of this run is kept: one transaction).
    """
    applied_now: list[int] = []
    async with conn.transaction():
        # Held until commit: concurrent starters queue here, then see the versions applied.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(_MIGRATIONS_TABLE)
        cur = await conn.execute("SELECT version FROM klink_schema_migrations")
        applied = {int(row[0]) for row in await cur.fetchall()}
        _check_known(applied, migrations)
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version in applied:
                continue
            for statement in migration.statements:
                await conn.execute(statement.encode())
            await conn.execute(
                "INSERT INTO klink_schema_migrations (version, name, applied_at) VALUES (%s, %s, now()::text)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.version)
    if applied_now:
        logger.info("store schema migrated: applied version(s) %s", applied_now)
    return applied_now


def migrate_sqlite(
    conn: sqlite3.Connection, migrations: tuple[Migration, ...] = SQLITE_MIGRATIONS
) -> list[int]:
    """Apply the missing `migrations` on `conn` (isolation_level=None); returns the versions applied.

    Raises:
        StoreError: the database has a version this program does not know.
        sqlite3.Error: a statement failed (nothing of this run is kept: one transaction).
    """
    applied_now: list[int] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_MIGRATIONS_TABLE)
        applied = {int(row[0]) for row in conn.execute("SELECT version FROM klink_schema_migrations")}
        _check_known(applied, migrations)
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version in applied:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO klink_schema_migrations (version, name, applied_at)"
                " VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (migration.version, migration.name),
            )
            applied_now.append(migration.version)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if applied_now:
        logger.info("store schema migrated: applied version(s) %s", applied_now)
    return applied_now
