"""Fixtures for the webhook tests: a signing secret, settings, a file-backed store and a hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from klink_mcp.config import Settings, load_settings
from klink_mcp.webhooks.hub import EventHub
from klink_mcp.webhooks.store import EventStore

from ._support import SECRET


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "events.sqlite3"


@pytest.fixture
def settings(db_path: Path) -> Settings:
    return load_settings(env={}, webhook_secret=SECRET, events_db=db_path)


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[EventStore]:
    store = await EventStore.open(db_path)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def hub(store: EventStore) -> EventHub:
    return EventHub(store)
