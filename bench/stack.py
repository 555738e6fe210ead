"""Shared by bench/load.py and bench/soak.py: a throwaway Sandpit stack to drive from outside.

`Stack` migrates a fresh database (a SQLite file in a temp dir, or a new database on a Postgres
server), creates users with sessions and login cookies, and starts one or more real Daphne
processes (bench/ws.py's `Server`) on the embedded defaults or on Postgres + Redis. Traffic goes
only to 127.0.0.1. Process figures (CPU, RSS, children) are read from /proc.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from ws import Server, _cpu_s, _rss_mb  # noqa: E402  (bench/ is on sys.path)


@dataclass
class User:
    name: str
    cookie: str
    session_ids: list[str]


def percentile_ms(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of samples in seconds, in ms; nan when empty."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank] * 1000


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000 if samples else float("nan")


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (kernels, bwrap, setpriv), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Stack:
    """Daphne processes on a fresh database; `stop()` removes everything it made."""

    def __init__(self, *, servers: int, postgres: str = "", redis: str = "", extra_env: dict[str, str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="sandpit-bench-"))
        os.chmod(self.tmp, 0o755)  # the sandbox user reaches its workspace under SANDBOX_STATE_DIR
        self.pg_admin = postgres
        self.db_name = f"sandpit_bench_{os.getpid()}"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CHANNEL_PREFIX")}
        env.update({"DJANGO_SETTINGS_MODULE": "project.settings", "LOG_LEVEL": "WARNING", "WS_MESSAGES_PER_10S": "100000"})
        # Kernels' venv where it is; everything else of the local backend in the temp dir, so what a
        # run leaves behind can be counted.
        env.setdefault("SANDBOX_KERNEL_ENV", self._kernel_env())
        env["SANDBOX_STATE_DIR"] = str(self.tmp / "state")
        if postgres:
            self._admin_sql(f'CREATE DATABASE "{self.db_name}"')
            env["DATABASE_URL"] = f"{postgres.rstrip('/')}/{self.db_name}"
        else:
            env["DATABASE_URL"] = f"sqlite:///{self.tmp / 'bench.sqlite3'}"
        if redis:
            env.update({"REDIS_URL": redis, "CHANNEL_PREFIX": f"bench{os.getpid()}"})
        env.update(extra_env or {})
        self.env = env
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
        self.servers: list[Server] = []
        for n in range(servers):
            (self.tmp / f"server-{n}").mkdir()
            self.servers.append(Server(env, self.tmp / f"server-{n}"))

    def _admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{self.pg_admin.rstrip('/')}/postgres".replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(sql)

    @staticmethod
    def _kernel_env() -> str:
        out = subprocess.run(
            [sys.executable, "-c", "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'project.settings'); "
             "django.setup(); from django.conf import settings; print(settings.SANDBOX_KERNEL_ENV)"],
            cwd=BASE_DIR, capture_output=True, text=True, check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def manage(self, script: str) -> str:
        """Run Python in `manage.py shell` against this stack's database; its stdout."""
        out = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=BASE_DIR, env=self.env,
                             capture_output=True, text=True, check=True)
        return out.stdout

    def make_users(self, n: int, sessions_each: int = 1, prefix: str = "user") -> list[User]:
        script = f"""
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from runner.services import session_create
out = []
for i in range({n}):
    user = get_user_model().objects.create_user(f"{prefix}{{i}}", password="bench-pw-123")
    client = Client()
    client.force_login(user)
    cookie = f"{{settings.SESSION_COOKIE_NAME}}={{client.cookies[settings.SESSION_COOKIE_NAME].value}}"
    out.append([user.username, cookie, [str(session_create(owner=user, title=f"s{{j}}").id) for j in range({sessions_each})]])
print(json.dumps(out))
"""
        return [User(name, cookie, ids) for name, cookie, ids in json.loads(self.manage(script).strip().splitlines()[-1])]

    def cpu_s(self) -> list[float]:
        return [_cpu_s(s.proc.pid) for s in self.servers]

    def rss_mb(self) -> list[float]:
        return [_rss_mb(s.proc.pid) for s in self.servers]

    def commits(self) -> int | None:
        """Transactions committed in this stack's Postgres database so far (Postgres's own
        counter, pg_stat_database, which lags by up to a second); None on SQLite."""
        if not self.pg_admin:
            return None
        import psycopg

        time.sleep(1.5)  # the statistics a backend holds are flushed at most every second
        with psycopg.connect(f"{self.pg_admin.rstrip('/')}/postgres".replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [self.db_name]).fetchone()
        return int(row[0]) if row else None

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.pg_admin:
            self._admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)


async def open_socket(server: Server, session_id: str, cookie: str) -> Any:
    import websockets

    ws = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/sessions/{session_id}/",
        additional_headers=[("Origin", f"http://127.0.0.1:{server.port}"), ("Cookie", cookie)],
        max_size=None, open_timeout=60,
    )
    hello = json.loads(await ws.recv())
    if hello.get("type") != "hello":
        raise RuntimeError(f"no hello: {hello}")
    return ws


async def run_code(ws: Any, code: str, client_id: str, stop_after_s: float | None = None) -> dict[str, Any]:
    """Send `run` (and `stop` that long after it is queued); wait for its end.
    Returns {status, first_output_s, elapsed_s, stdout, other (non-stdout output), execution_id}."""
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "run", "code": code, "language": "python", "client_id": client_id}))
    execution_id = None
    first = None
    stdout: list[str] = []
    other: list[str] = []  # stderr, errors, results: why a run ended as it did
    while True:
        frame = json.loads(await ws.recv())
        kind = frame.get("type")
        if kind == "error":
            raise RuntimeError(f"error frame: {frame}")
        if kind == "execution.queued" and frame.get("client_id") == client_id:
            execution_id = frame["execution_id"]
            if stop_after_s is not None:
                stop = json.dumps({"type": "stop", "execution_id": execution_id})
                asyncio.get_running_loop().call_later(stop_after_s, lambda: asyncio.ensure_future(ws.send(stop)))
        elif frame.get("execution_id") != execution_id or execution_id is None:
            continue
        elif kind == "execution.output":
            if first is None:
                first = time.perf_counter() - t0
            if frame.get("kind") == "stdout":
                stdout.append(frame["text"])
            else:
                other.append(f"{frame.get('kind')}: {frame.get('text') or json.dumps(frame.get('data'))[:200]}")
        elif kind == "execution.finished":
            return {"status": frame["status"], "first_output_s": first, "elapsed_s": time.perf_counter() - t0,
                    "stdout": "".join(stdout), "other": other, "execution_id": execution_id}
