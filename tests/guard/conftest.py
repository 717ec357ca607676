"""Fixtures for the guard tests (the harness itself lives in guard_harness.py)."""

from __future__ import annotations

from guard_harness import make_harness

__all__ = ["make_harness"]
