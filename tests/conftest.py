"""Shared fixtures. Fixtures for one area live in tests/fixtures_<area>.py, listed in pytest_plugins."""

from __future__ import annotations

pytest_plugins: list[str] = ["tests.fixtures_e2b", "tests.fixtures_runs", "tests.fixtures_browser", "tests.fixtures_sandboxes", "tests.fixtures_daphne"]
