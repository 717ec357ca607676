"""The harness itself: a missing haproxy skips loudly, or fails when real services are required,
and refuses to start a half cluster."""

from __future__ import annotations

import pytest

from tests.team import harness


def _without_haproxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "haproxy_binary", lambda: None)


def test_missing_haproxy_skips_loudly_on_a_developer_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_haproxy(monkeypatch)
    monkeypatch.delenv(harness.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="SKIPPED LOUDLY: haproxy is not installed"):
        harness.need_haproxy()


def test_missing_haproxy_fails_when_real_services_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_haproxy(monkeypatch)
    monkeypatch.setenv(harness.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="KLINK_REQUIRE_REAL_SERVICES=1 but haproxy"):
        harness.need_haproxy()


def test_the_cluster_refuses_to_start_without_haproxy(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_haproxy(monkeypatch)
    started: list[object] = []
    monkeypatch.setattr(harness.ManagedProcess, "start", lambda self: started.append(self))
    with pytest.raises(harness.MissingServiceError, match=r"install-haproxy\.sh"):
        harness.TeamCluster.start(3)
    assert started == []  # nothing was started, so nothing is left running
