"""Shared fixtures. Fixtures for one area live in tests/fixtures_<area>.py, listed in pytest_plugins."""

from __future__ import annotations

# fixtures_daphne before fixtures_browser, which imports it (so pytest can still rewrite its asserts).
pytest_plugins: list[str] = [
    "tests.fixtures_daphne",
    "tests.fixtures_e2b",
    "tests.fixtures_runs",
    "tests.fixtures_browser",
    "tests.fixtures_sandboxes",
    "tests.fixtures_classrooms",
    "tests.fixtures_usage",
    "tests.fixtures_workspace",
]
