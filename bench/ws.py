"""Websocket end to end vs raw jupyter_client, in one run on this machine.

    .venv/bin/python bench/ws.py [--n 30] [--sessions 10]

Starts a real Daphne (project.asgi, embedded defaults: SQLite in a temp dir, in-memory channel
layer, local sandbox) and drives it with a `websockets` client, exactly as a browser would:
- warm round trip of `1`: send `run` → receive `execution.finished`;
- 10 MB of stdout (one `print`): send `run` → `execution.finished`, with every byte received;
  the server's RSS is sampled during the runs;
- first output of a new session: a new session, a new socket, `run print(1)` → first
  `execution.output` (the warm pool hides the kernel start).
The same measurements run, sample for sample in turn, against raw `jupyter_client` on a kernel
the local backend started (same bwrap, kernel venv and ipc sockets; no server), and against the
local backend's `Sandbox.run` in-process (no server, no database), so each layer's cost shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from rawkernel import raw_client_for, raw_execute  # noqa: E402  (bench/ is on sys.path; no Django)

TEN_MB_CODE = "print('x' * 10_000_000)"  # as in bench/sandbox.py
TEN_MB = 10_000_001
SETTLE_S = 0.3  # a pause before each 10 MB sample (see bench())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


# --- the three clients ----------------------------------------------------------------------------


class RawKernel:
    """Stock jupyter_client (`AsyncKernelClient`) on a kernel the local backend started exactly like
    the ones runs use (same bwrap, limits, kernel venv, ipc sockets), with the backend's own client
    closed: the floor any server could reach on this kernel. (As in bench/sandbox.py.)"""

    async def start(self) -> None:
        from runner.sandboxes.base import get_backend

        # A session id is a UUID (the workspace's directory is named by it).
        self.sandbox = await get_backend("local").create(owner_id=0, session_id=str(uuid.uuid4()))
        kernel = await self.sandbox.kernel("python")
        kernel.close_client()
        self.client = raw_client_for(kernel)

    async def run(self, code: str) -> tuple[float, int]:
        """execute → execute_reply and idle, as a careful raw client does."""
        t0 = time.perf_counter()
        got = await raw_execute(self.client, code)
        return time.perf_counter() - t0, got

    async def close(self) -> None:
        self.client.stop_channels()
        await self.sandbox.close()


class Backend:
    """The local backend called in-process: a bwrap'd kernel, no server, no database."""

    async def start(self) -> bool:
        from runner.sandboxes.base import get_backend

        backend = get_backend("local")
        health = await backend.health()
        if not health.ok:
            print(f"  (local backend unavailable: {health.detail})")
            return False
        self.sandbox = await backend.create(owner_id=0, session_id=str(uuid.uuid4()))
        return True

    async def run(self, code: str) -> tuple[float, int]:
        got = [0]

        def on_event(event: Any) -> None:
            got[0] += len(getattr(event, "text", ""))

        t0 = time.perf_counter()
        await self.sandbox.run(code, language="python", on_event=on_event, timeout_s=120)
        return time.perf_counter() - t0, got[0]


class Server:
    """A real Daphne serving project.asgi (a subprocess)."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        self.port = _free_port()
        self.log = tmp / "daphne.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BASE_DIR / ".venv" / "bin" / "python"), "-m", "project.serve", "-b", "127.0.0.1", "-p", str(self.port),
                 "--websocket-max-message-size", "1048576", "project.asgi:application"],
                cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5)
                break
            except urllib.error.HTTPError as exc:
                raise SystemExit(f"the server is in degraded mode: {exc.read().decode()}") from None
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"daphne did not start:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _socket(server: Server, session_id: str, cookie: str) -> Any:
    import websockets

    ws = await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/sessions/{session_id}/",
        additional_headers=[("Origin", f"http://127.0.0.1:{server.port}"), ("Cookie", cookie)],
        max_size=None,
    )
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello" and hello["can_run"], hello
    return ws


async def _ws_run(ws: Any, code: str) -> tuple[float, int]:
    """send `run` → `execution.finished`: (seconds, stdout characters received)."""
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "run", "code": code, "language": "python", "client_id": "bench"}))
    stdout = 0
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "execution.output" and frame["kind"] == "stdout":
            stdout += len(frame["text"])
        elif frame["type"] == "execution.finished":
            assert frame["status"] == "succeeded" and not frame["truncated"], frame
            return time.perf_counter() - t0, stdout
        elif frame["type"] == "error":
            raise RuntimeError(frame)


async def bench(raw: RawKernel, server: Server, cookie: str, session_ids: list[str], n: int, floods: int) -> dict[str, Any]:
    """Interleave the clients sample by sample, so load from elsewhere on the machine hits all alike."""
    await raw.start()
    direct = Backend()
    has_direct = await direct.start()
    ws = await _socket(server, session_ids[0], cookie)
    results: dict[str, list[float]] = {
        k: [] for k in ("raw_rtt", "direct_rtt", "ws_rtt", "raw_flood", "direct_flood", "ws_flood", "raw_client_cpu", "ws_client_cpu", "ws_server_cpu")
    }
    for i in range(n + 5):
        samples = [("raw_rtt", (await raw.run("1"))[0]), ("ws_rtt", (await _ws_run(ws, "1"))[0])]
        if has_direct:
            samples.append(("direct_rtt", (await direct.run("1"))[0]))
        if i >= 5:  # the first five warm up
            for key, value in samples:
                results[key].append(value)

    rss_before = _rss_mb(server.proc.pid)
    peak = [rss_before]
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], _rss_mb(server.proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    for _ in range(floods):
        # Each 10 MB sample starts from a settled machine: the server's background work after a
        # flood (the WAL checkpoint, ~0.1 s after the last write) would otherwise land in the next
        # client's sample (raw or in-process), slowing the floor. The server CPU below includes it.
        await asyncio.sleep(SETTLE_S)
        cpu0 = time.process_time()
        elapsed, got = await raw.run(TEN_MB_CODE)
        results["raw_client_cpu"].append(time.process_time() - cpu0)
        assert got == TEN_MB, got
        results["raw_flood"].append(elapsed)
        await asyncio.sleep(SETTLE_S)
        cpu0, server_cpu0 = time.process_time(), _cpu_s(server.proc.pid)
        elapsed, got = await _ws_run(ws, TEN_MB_CODE)
        results["ws_client_cpu"].append(time.process_time() - cpu0)
        assert got == TEN_MB, got
        results["ws_flood"].append(elapsed)
        await asyncio.sleep(SETTLE_S)
        results["ws_server_cpu"].append(_cpu_s(server.proc.pid) - server_cpu0)
        if has_direct:
            elapsed, got = await direct.run(TEN_MB_CODE)
            assert got == TEN_MB, got
            results["direct_flood"].append(elapsed)
    sampling.set()
    sampler.join()
    await ws.close()
    await raw.close()
    if has_direct:
        await direct.sandbox.close()

    first_from_run, first_from_connect = [], []
    for session_id in session_ids[1:]:
        await asyncio.sleep(1.5)  # let the warm pool refill, as between two users' first runs
        t_connect = time.perf_counter()
        ws = await _socket(server, session_id, cookie)
        t_run = time.perf_counter()
        await ws.send(json.dumps({"type": "run", "code": "print(1)", "language": "python", "client_id": "first"}))
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "execution.output":
                now = time.perf_counter()
                first_from_run.append(now - t_run)
                first_from_connect.append(now - t_connect)
                break
            if frame["type"] in ("error", "execution.finished"):
                raise RuntimeError(frame)
        await ws.close()
    out: dict[str, Any] = {k: _median_ms(v) for k, v in results.items() if v}
    out.update(rss_before_mb=rss_before, rss_peak_mb=peak[0], first_output_ms=_median_ms(first_from_run),
               first_output_from_connect_ms=_median_ms(first_from_connect))
    return out


def _prepare_database(env: dict[str, str], sessions: int) -> tuple[str, list[str]]:
    """Migrate the temp database; create a user and sessions; return (cookie header, session ids)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from runner.services import session_create

    user = get_user_model().objects.create_user("bench", password="bench-pw-123")
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return cookie, [str(session_create(owner=user, title=f"bench {i}").id) for i in range(sessions + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="round trips per measurement (median reported)")
    parser.add_argument("--sessions", type=int, default=10, help="new sessions for the first-output measurement")
    parser.add_argument("--floods", type=int, default=3, help="10 MB runs per client")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sandpit-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "RUN_OUTPUT_MAX_BYTES": str(16 * 1024 * 1024),  # let all 10 MB through (the default cap is 2 MiB)
        "WS_MESSAGES_PER_10S": "100000",
        "SANDBOX_MAX_LIVE": str(args.sessions + 5),
        "QUOTA_LIVE_SANDBOXES": "0",  # one bench user opens every session: no per-user limit
        "LOG_LEVEL": "WARNING",
    })
    server = raw = None
    try:
        cookie, session_ids = _prepare_database(env, args.sessions)
        from django.conf import settings

        kernel_python = Path(settings.SANDBOX_KERNEL_ENV) / "bin" / "python"
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; kernel env {kernel_python}; "
              f"pool size {settings.SANDBOX_POOL_SIZE}; {args.n} round trips, {args.floods} floods, {args.sessions} new sessions")
        raw = RawKernel()
        server = Server(env, tmp)
        r = asyncio.run(bench(raw, server, cookie, session_ids, args.n, args.floods))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"{'median of each':46} {'time':>9} {'vs raw':>7}")
    print(f"{'round trip of 1: raw jupyter_client':46} {r['raw_rtt']:7.2f}ms")
    if "direct_rtt" in r:
        print(f"{'round trip of 1: local backend in-process':46} {r['direct_rtt']:7.2f}ms {r['direct_rtt'] / r['raw_rtt']:6.2f}x")
    print(f"{'round trip of 1: websocket end to end':46} {r['ws_rtt']:7.2f}ms {r['ws_rtt'] / r['raw_rtt']:6.2f}x  (target <= 2x)")
    print(f"{'10 MB of stdout: raw jupyter_client':46} {r['raw_flood']:7.0f}ms")
    if "direct_flood" in r:
        print(f"{'10 MB of stdout: local backend in-process':46} {r['direct_flood']:7.0f}ms {r['direct_flood'] / r['raw_flood']:6.2f}x")
    print(f"{'10 MB of stdout: websocket end to end':46} {r['ws_flood']:7.0f}ms {r['ws_flood'] / r['raw_flood']:6.2f}x  (target <= 1.5x)")
    if "direct_flood" in r:
        print(f"{'  … vs the local backend in-process':46} {'':9} {r['ws_flood'] / r['direct_flood']:6.2f}x")
    print(f"{'  CPU of the client: raw, websocket':46} {r['raw_client_cpu']:7.0f}ms {r['ws_client_cpu']:6.0f}ms")
    print(f"{'  CPU of the server per 10 MB run':46} {r['ws_server_cpu']:7.0f}ms  (with its background work; 10 ms ticks)")
    print(f"{'server RSS during the 10 MB runs':46} {r['rss_before_mb']:.0f} MB before, {r['rss_peak_mb']:.0f} MB peak")
    print(f"{'first output of a new session (run → output)':46} {r['first_output_ms']:7.1f}ms  (target <= 100 ms p50)")
    print(f"{'  … from opening the socket':46} {r['first_output_from_connect_ms']:7.1f}ms")


if __name__ == "__main__":
    main()
