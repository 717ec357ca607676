"""`open_store(settings)`: which store the settings select, and that the URL's password stays secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from klink_mcp.config import ConfigError, load_settings
from klink_mcp.store import MemoryStore, SQLiteStore, StoreError, create_store, open_store

pytestmark = pytest.mark.anyio


async def test_without_a_database_url_the_store_is_sqlite_on_the_events_file(tmp_path: Path) -> None:
    settings = load_settings(
        env={"KLINK_EVENTS_DB": str(tmp_path / "ev.sqlite3"), "KLINK_EVENTS_RETENTION": "50"}
    )
    async with open_store(settings) as store:
        assert isinstance(store, SQLiteStore)
        assert store.events.path == str(tmp_path / "ev.sqlite3")
        await store.ping()
    assert (tmp_path / "ev.sqlite3").exists()


async def test_an_in_memory_events_db_or_memory_url_gives_a_memory_store(tmp_path: Path) -> None:
    async with open_store(load_settings(env={"KLINK_EVENTS_DB": ":memory:"})) as store:
        assert isinstance(store, MemoryStore)
    assert isinstance(create_store(load_settings(env={"KLINK_DATABASE_URL": "memory://"})), MemoryStore)
    sqlite = create_store(load_settings(env={"KLINK_DATABASE_URL": f"sqlite://{tmp_path}/x.sqlite3"}))
    assert isinstance(sqlite, SQLiteStore) and sqlite.path == f"{tmp_path}/x.sqlite3"


async def test_a_postgresql_url_opens_the_postgresql_store(postgres_url: str) -> None:
    from klink_mcp.store.postgres import PostgresStore

    async with open_store(load_settings(env={"KLINK_DATABASE_URL": postgres_url})) as store:
        assert isinstance(store, PostgresStore)
        assert store.kind == "postgresql" and store.shares_across_processes
        await store.ping()


def test_an_unsupported_scheme_is_refused_without_echoing_the_url() -> None:
    # The settings refuse it when they load; the store refuses it too when settings skip validation.
    with pytest.raises(ConfigError, match="KLINK_DATABASE_URL") as refused:
        load_settings(env={"KLINK_DATABASE_URL": "mysql://root:hunter2@db/klink"})
    assert "hunter2" not in str(refused.value)
    settings = load_settings(env={}).model_copy(
        update={"database_url": SecretStr("mysql://root:hunter2@db/klink")}
    )
    with pytest.raises(StoreError, match="unsupported scheme 'mysql'") as caught:
        create_store(settings)
    assert "hunter2" not in str(caught.value)


def test_the_database_url_is_a_secret_in_settings_and_in_the_store_repr(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from klink_mcp.store.postgres import redact_url

    url = "postgresql://agent:hunter2@db.internal:5432/klink"
    settings = load_settings(env={"KLINK_DATABASE_URL": url})
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.redacted())
    with caplog.at_level(logging.DEBUG):
        store = create_store(settings)
        assert "hunter2" not in repr(store)
        assert store.events.path == "postgresql://agent:***@db.internal:5432/klink"
    assert "hunter2" not in caplog.text
    assert redact_url("postgresql://agent@db/klink") == "postgresql://agent@db/klink"
