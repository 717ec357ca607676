"""Fixtures of the team suite: a real deployment (sandbox upstream, 3 replicas, HAProxy) per module.

A missing haproxy skips loudly, or fails when KLINK_REQUIRE_REAL_SERVICES=1 (CI). The store-backed
fixture (`store_cluster`) skips only while `klink_mcp.store` is not on the branch.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from tests.team.harness import TeamCluster, haproxy_binary, require_real_services, running_cluster

STORE_MISSING = importlib.util.find_spec("klink_mcp.store") is None
STORE_SKIP_REASON = "needs KLINK_DATABASE_URL store wiring (klink_mcp.store is not on this branch yet)"


def _need_haproxy() -> None:
    if haproxy_binary() is None:
        message = "haproxy is not installed (run .ci/install-haproxy.sh): the team suite needs the real one"
        if require_real_services():
            pytest.fail(f"KLINK_REQUIRE_REAL_SERVICES=1 but {message}")
        pytest.skip(f"SKIPPED LOUDLY: {message}")


def wired_database_url() -> str | None:
    """The shared PostgreSQL URL for the replicas once the store is on the branch, else None."""
    if STORE_MISSING:
        return None
    return os.environ.get("KLINK_TEST_DATABASE_URL") or None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamCluster]:
    """Three replicas behind HAProxy over one sandbox upstream.

    The replicas share the PostgreSQL store when it is wired (`KLINK_TEST_DATABASE_URL` and
    `klink_mcp.store` present); today each keeps its own state, which the xfail tests document.
    """
    _need_haproxy()
    root = tmp_path_factory.mktemp("team")
    with running_cluster(3, root=root, database_url=wired_database_url()) as started:
        yield started


@pytest.fixture(scope="module")
def team_database_url() -> str:
    """The PostgreSQL URL the replicas share (`KLINK_TEST_DATABASE_URL`), once the store exists."""
    if STORE_MISSING:
        pytest.skip(STORE_SKIP_REASON)
    url = os.environ.get("KLINK_TEST_DATABASE_URL", "")
    if not url:
        message = "set KLINK_TEST_DATABASE_URL (a throwaway PostgreSQL) for the store-backed team tests"
        if require_real_services():
            pytest.fail(f"KLINK_REQUIRE_REAL_SERVICES=1 but no database: {message}")
        pytest.skip(f"SKIPPED LOUDLY: {message}")
    return url


@pytest.fixture
def store_cluster(cluster: TeamCluster, team_database_url: str) -> TeamCluster:
    """The module's cluster, whose replicas share the PostgreSQL store (skips until it is wired)."""
    assert cluster.database_url == team_database_url
    return cluster
