"""Shared fixtures. Fixtures for one area live in tests/fixtures_<area>.py, listed in pytest_plugins."""

from __future__ import annotations

import pytest

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

# Tests that run alone, after bin/test's parallel pass (marked `serial` here, so tests added to these
# modules are too): they compare timings, or start servers of their own and count what is left.
SERIAL: dict[str, str] = {
    "tests/test_drills.py": "fault drills: several Daphnes, private Postgres and Redis, a latency comparison",
    "tests/test_drills_redis.py": "a private Redis killed under a browser page mid-stream",
    "tests/test_soak.py": "a minute of mixed load on its own stack, then counts kernels, cgroups and tasks left",
    "tests/test_local_isolation.py::test_the_warm_pool_hands_out_a_running_kernel": "first output within 0.5 s",
    "tests/test_e2b_settle.py": "the next run must end within a deadline after a cut stream",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.nodeid == key or item.nodeid.startswith(key + "::") or item.nodeid.startswith(key + "[") for key in SERIAL):
            item.add_marker(pytest.mark.serial)
