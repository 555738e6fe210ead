"""Loaded with `-p` (pyproject's addopts), before pytest-django reads the settings: under
pytest-xdist, each worker gets a CHANNEL_PREFIX of its own, so workers sharing one Redis never
share channel-layer or cache keys (rate-limit counters are keyed by user id, and each worker's
database numbers its users from the same start). Daphnes started by a worker inherit it
(fixtures_daphne.server_env). The SQLite test database is per process already (settings), and
pytest-django gives each worker its own Postgres test database."""

from __future__ import annotations

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker:
    os.environ["CHANNEL_PREFIX"] = f"{os.environ.get('CHANNEL_PREFIX') or 'sandpit'}-{_worker}"
