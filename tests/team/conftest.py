"""Fixtures of the team suite: one real deployment (sandbox upstream, 3 replicas, HAProxy) per run.

A missing haproxy skips loudly, or fails when KLINK_REQUIRE_REAL_SERVICES=1 (CI). Once
`klink_mcp.store` is on the branch the replicas share a PostgreSQL (`KLINK_TEST_DATABASE_URL`, or a
throwaway cluster of Debian's PostgreSQL started here); the store-backed tests (`store_cluster`) skip
only while the store is absent.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from tests.team.harness import (
    MissingServiceError,
    TeamCluster,
    need_haproxy,
    require_real_services,
    running_cluster,
    throwaway_postgres,
)

STORE_MISSING = importlib.util.find_spec("klink_mcp.store") is None
_NO_DATABASE: list[str] = []  # why no database could be started, for the store tests' skip reason
STORE_SKIP_REASON = "needs KLINK_DATABASE_URL store wiring (klink_mcp.store is not on this branch yet)"


@pytest.fixture(scope="session")
def shared_database_url() -> Iterator[str | None]:
    """The PostgreSQL URL the replicas share, or None while the store is not on the branch.

    `KLINK_TEST_DATABASE_URL` when set; otherwise a throwaway cluster of Debian's PostgreSQL in a
    temporary folder. None (with the reason kept for `team_database_url`) when neither is possible.
    """
    if STORE_MISSING:
        yield None
        return
    url = os.environ.get("KLINK_TEST_DATABASE_URL")
    if url:
        yield url
        return
    try:
        with throwaway_postgres() as started:
            yield started
    except MissingServiceError as exc:
        _NO_DATABASE.append(str(exc))
        yield None


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, shared_database_url: str | None
) -> Iterator[TeamCluster]:
    """Three replicas behind HAProxy over one sandbox upstream.

    The replicas share the PostgreSQL store once it is wired (`klink_mcp.store` present); today each
    keeps its own state, which the xfail test documents.
    """
    need_haproxy()
    root = tmp_path_factory.mktemp("team")
    with running_cluster(
        3,
        root=root,
        database_url=shared_database_url,
        health_path="/readyz",  # ready = the store and K-LINK answer (public, no bearer)
        extra_env={"KLINK_CONFIRM": "token"},  # the two-step token flow; the page flow has its own cluster
    ) as started:
        yield started


@pytest.fixture(scope="session")
def page_cluster(tmp_path_factory: pytest.TempPathFactory, team_database_url: str) -> Iterator[TeamCluster]:
    """Three replicas on the shared store in the default confirmation mode: the approval page."""
    need_haproxy()
    root = tmp_path_factory.mktemp("team-page")
    with running_cluster(3, root=root, database_url=team_database_url, health_path="/readyz") as started:
        yield started


@pytest.fixture(scope="session")
def team_database_url(shared_database_url: str | None) -> str:
    """The shared database URL; skips until the store is on the branch."""
    if STORE_MISSING:
        pytest.skip(STORE_SKIP_REASON)
    if shared_database_url is None:
        message = "; ".join(_NO_DATABASE) or "no database for the store-backed team tests"
        if require_real_services():
            pytest.fail(f"KLINK_REQUIRE_REAL_SERVICES=1 but {message} (run the PostgreSQL install script)")
        pytest.skip(f"SKIPPED LOUDLY: {message}")
    return shared_database_url


@pytest.fixture
def store_cluster(cluster: TeamCluster, team_database_url: str) -> TeamCluster:
    """The cluster, whose replicas share the PostgreSQL store (skips until it is wired)."""
    assert cluster.database_url == team_database_url
    return cluster
