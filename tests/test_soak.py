"""A 1-minute soak (bench/soak.py --minutes 1 --check): mixed load of short runs, floods, Stops,
reconnects and sessions left idle until reaped, on its own stack. Fails on any run that ends
wrongly, and on anything left over once the reaper has run: kernel processes, cgroups and state
dirs of sandboxes, open leases, asyncio tasks, sandboxes held, runs in flight. (The 30-minute
soak's figures, RSS included, are in docs/benchmarks.md.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(400)


def _stack_args() -> list[str]:
    """On CI's Postgres + Redis pass, soak that stack (a fresh database on the same server)."""
    d = settings.DATABASES["default"]
    if d["ENGINE"] != "django.db.backends.postgresql":
        return []
    server = f"postgres://{d.get('USER') or 'postgres'}@{d.get('HOST') or '127.0.0.1'}:{d.get('PORT') or 5432}"
    return ["--postgres", server] + (["--redis", settings.REDIS_URL] if settings.REDIS_URL else [])


def test_a_one_minute_soak_leaves_nothing_behind() -> None:
    done = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "1", "--users", "6", "--idle-s", "10", "--check", *_stack_args()],
        cwd=BASE_DIR, capture_output=True, text=True, timeout=360,
    )
    report = done.stdout + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "errors: 0" in done.stdout, report
    assert "left over after the reaper" in done.stdout, report
