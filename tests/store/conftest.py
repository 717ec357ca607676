"""Fixtures for the store tests: a real PostgreSQL cluster (session), a fresh database per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from .pgcluster import PostgresCluster, start_cluster

_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The URL of a new, empty database on the session's cluster."""
    return postgres_cluster.create_database(f"klink_test_{next(_names)}")
