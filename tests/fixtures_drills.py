"""Private Redis and Postgres servers for the fault drills (tests/test_drills.py).

The machine's own Postgres (5432) and Redis (6379) are shared with other test runs, so a drill
never stops them: it starts its own on a free port, points Daphne at it, and restarts that one.
Both are skipped, with the reason, only when the server binaries are not installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_daphne import BASE_DIR, _free_port, server_env


def _wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


class PrivateRedis:
    """A throwaway redis-server (no persistence) on a free port; `stop()` then `start()` restarts it."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # as a crash: nothing saved, every connection cut
            self.proc.wait()


def _pg_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    return None


class PrivatePostgres:
    """A throwaway Postgres cluster (fsync off) on a free port, with a `sandpit` database migrated.

    As root, the cluster belongs to the `postgres` system user (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sandpit-drill-pg-"))
        self.data = self.dir / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "sandpit")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/sandpit"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bindir / tool), *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        """Immediate shutdown, as a crash: every connection is cut, recovery runs on the next start."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    redis = PrivateRedis(tmp_path)
    yield redis
    redis.stop()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("Postgres server binaries are not installed (apt-get install postgresql)")
    pg = PrivatePostgres(bindir)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"], cwd=BASE_DIR, check=True, capture_output=True,
            env=server_env(DATABASE_URL=pg.url, REDIS_URL=""), timeout=300,
        )
        yield pg
    finally:
        pg.destroy()


LOGIN_SCRIPT = """
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
user, _ = get_user_model().objects.get_or_create(username=USERNAME)
store = SessionStore()
store[SESSION_KEY] = str(user.pk)
store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
store[HASH_SESSION_KEY] = user.get_session_auth_hash()
store.create()
from runner import services
chat = services.session_create(owner=user, title="drill")
print(store.session_key, chat.id)
"""


def login_cookie(env: dict[str, str], username: str) -> tuple[bytes, str]:
    """A logged-in session cookie for `username` (created if absent) in the database `env` names,
    and the id of a new chat session of theirs."""
    script = f"USERNAME = {username!r}\n" + LOGIN_SCRIPT
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script], cwd=BASE_DIR, env=env, check=True,
        capture_output=True, text=True, timeout=120,
    )
    key, chat_id = out.stdout.strip().splitlines()[-1].split()
    return f"sessionid={key}".encode(), chat_id
