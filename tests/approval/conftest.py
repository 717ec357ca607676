"""Fixtures for the approval-page tests: the guard harness (tests/guard) and a person with a browser."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.approval._support import Person
from tests.guard.guard_harness import make_harness

__all__ = ["make_harness", "person"]


@pytest.fixture
async def person() -> AsyncIterator[Person]:
    someone = Person()
    yield someone
    await someone.aclose()
