"""The E2B SDK against Sandpit's E2B-compatible API, beside the same SDK against the stdlib test
server (tests/e2b_server) and raw jupyter_client, in one run on this machine.

    .venv/bin/python bench/e2b_api.py [--n 30] [--floods 3]

Starts a real Daphne (project.asgi, embedded defaults: SQLite in a temp dir, in-memory channel
layer, local sandbox) and tests/e2b_server, makes one sandbox on each with `AsyncSandbox.create`
(e2b-code-interpreter, async), and measures, sample by sample in turn:
- `run_code("1")` round trip (request → the stream's end);
- 10 MB of stdout (one `print`), every byte received through `on_stdout`;
against raw `jupyter_client` on a kernel the local backend started (the floor; bench/rawkernel.py).
Sandpit's path stores every run and chunk (an Execution in a session), the test server's doesn't.
Goal: Sandpit's round trip <= 1.5x the SDK against tests/e2b_server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from ws import TEN_MB, TEN_MB_CODE, RawKernel, Server, _median_ms  # noqa: E402  (bench/ is on sys.path)

TEST_SERVER_KEY = "e2b_" + "0" * 40
SETTLE_S = 0.3


class SdkClient:
    """One sandbox made with the E2B SDK on a server (Sandpit or tests/e2b_server)."""

    def __init__(self, url: str, api_key: str) -> None:
        self.options = {"api_key": api_key, "api_url": url, "sandbox_url": url}

    async def start(self) -> None:
        from e2b_code_interpreter import AsyncSandbox

        self.sandbox = await AsyncSandbox.create(timeout=1800, request_timeout=60, **self.options)

    async def run(self, code: str) -> tuple[float, int]:
        got = [0]

        def on_stdout(message: Any) -> None:
            got[0] += len(message.line)

        t0 = time.perf_counter()
        execution = await self.sandbox.run_code(code, on_stdout=on_stdout, timeout=120)
        elapsed = time.perf_counter() - t0
        assert execution.error is None, execution.error
        return elapsed, got[0]

    async def close(self) -> None:
        await self.sandbox.kill()


async def bench(raw: RawKernel, sandpit: SdkClient, test_server: SdkClient, n: int, floods: int) -> dict[str, float]:
    await raw.start()
    await sandpit.start()
    await test_server.start()
    clients = {"raw": raw, "sandpit": sandpit, "testserver": test_server}
    results: dict[str, list[float]] = {f"{name}_{what}": [] for name in clients for what in ("rtt", "flood")}
    for i in range(n + 5):
        for name, client in clients.items():
            elapsed, _ = await client.run("1")
            if i >= 5:  # the first five warm up
                results[f"{name}_rtt"].append(elapsed)
    for _ in range(floods):
        for name, client in clients.items():
            await asyncio.sleep(SETTLE_S)  # the server's work after the last flood stays out of this sample
            elapsed, got = await client.run(TEN_MB_CODE)
            assert got == TEN_MB, (name, got)
            results[f"{name}_flood"].append(elapsed)
    for client in clients.values():
        await client.close()
    return {key: _median_ms(values) for key, values in results.items()}


def _prepare(env: dict[str, str]) -> str:
    """Migrate the temp database, create a user and an API key; return the key."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from runner.services import api_key_create

    user = get_user_model().objects.create_user("bench", password="bench-pw-123")
    return api_key_create(owner=user, name="bench")[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="round trips per client (median reported)")
    parser.add_argument("--floods", type=int, default=3, help="10 MB runs per client")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sandpit-bench-e2b-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("E2B_")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "SANDBOX_BACKEND": "local",
        "RUN_OUTPUT_MAX_BYTES": str(16 * 1024 * 1024),  # let all 10 MB through (the default cap is 2 MiB)
        "LOG_LEVEL": "WARNING",
    })
    server = test_server = None
    try:
        key = _prepare(env)
        from django.conf import settings

        from tests.e2b_server import start_server

        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.n} round trips, {args.floods} floods per client")
        server = Server(env, tmp)
        test_server = start_server(api_key=TEST_SERVER_KEY, kernel_env=settings.SANDBOX_KERNEL_ENV)
        sandpit = SdkClient(f"http://127.0.0.1:{server.port}", key)
        r = asyncio.run(bench(RawKernel(), sandpit, SdkClient(test_server.url, TEST_SERVER_KEY), args.n, args.floods))
    finally:
        if server is not None:
            server.stop()
        if test_server is not None:
            test_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"{'median of each':48} {'time':>9} {'vs raw':>7} {'vs test server':>15}")
    for what, label, unit in (("rtt", 'run_code("1") round trip', "7.2f"), ("flood", "10 MB of stdout", "7.0f")):
        raw_ms, test_ms, ours_ms = r[f"raw_{what}"], r[f"testserver_{what}"], r[f"sandpit_{what}"]
        print(f"{label + ': raw jupyter_client':48} {raw_ms:{unit}}ms")
        print(f"{label + ': SDK vs tests/e2b_server':48} {test_ms:{unit}}ms {test_ms / raw_ms:6.2f}x")
        goal = "  (goal <= 1.5x)" if what == "rtt" else ""
        print(f"{label + ': SDK vs Sandpit':48} {ours_ms:{unit}}ms {ours_ms / raw_ms:6.2f}x {ours_ms / test_ms:14.2f}x{goal}")


if __name__ == "__main__":
    main()
