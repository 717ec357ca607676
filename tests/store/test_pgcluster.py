"""The PostgreSQL fixture's rule: skip loudly when the server is missing, fail when CI requires it."""

from __future__ import annotations

import pytest

from .pgcluster import find_pg_bin, skip_or_fail


def test_a_missing_server_skips_loudly_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLINK_REQUIRE_REAL_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"SKIPPED .*install-postgresql"):
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


def test_a_missing_server_fails_when_real_services_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINK_REQUIRE_REAL_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="KLINK_REQUIRE_REAL_SERVICES=1 but"):
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


def test_the_server_binaries_are_found_where_debian_puts_them() -> None:
    found = find_pg_bin()
    if found is None:
        skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        return
    assert (found / "initdb").exists() and (found / "pg_ctl").exists()
