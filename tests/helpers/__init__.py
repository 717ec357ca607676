"""Helpers shared by test packages (imported by conftests and tests; never a conftest itself)."""
