"""The local sandbox backend against raw jupyter_client, on the same kernel in bwrap, in one run.

    .venv/bin/python bench/sandbox.py [--n 30]

- round trip of `1`: raw `AsyncKernelClient.execute` (until execute_reply and idle) vs `Sandbox.run`;
- 10 MB of stdout (one `print`): raw vs `Sandbox.run`, every byte received;
- a new sandbox's first output (`create` + `run("print(1)")` until the first Stdout), with the
  warm pool (SANDBOX_POOL_SIZE=1, refilled between samples) and without (SANDBOX_POOL_SIZE=0).

The raw client talks to a kernel the backend started exactly like the one `run` uses (same
bwrap, same limits, ipc sockets), with the backend's own client closed; raw and `run` samples
alternate, so both see the same machine state.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from rawkernel import raw_client_for, raw_execute  # noqa: E402  (bench/ is on sys.path)
from runner.sandboxes.base import Stdout, get_backend  # noqa: E402

TEN_MB = "print('x' * 10_000_000)"


async def sandbox_execute(sandbox, code: str) -> int:
    got = [0]

    def on_event(event) -> None:
        if isinstance(event, Stdout):
            got[0] += len(event.text)

    outcome = await sandbox.run(code, language="python", on_event=on_event, timeout_s=60)
    assert outcome.status == "ok", outcome
    return got[0]


async def alternate(n: int, raw, ours) -> tuple[list[float], list[float]]:
    raw_s, ours_s = [], []
    for _ in range(n):
        for fn, out in ((raw, raw_s), (ours, ours_s)):
            t = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t)
    return raw_s, ours_s


async def first_output_s(backend) -> float:
    started = time.perf_counter()
    first = asyncio.get_running_loop().create_future()

    def on_event(event) -> None:
        if isinstance(event, Stdout) and not first.done():
            first.set_result(time.perf_counter() - started)

    sandbox = await backend.create(owner_id=0, session_id=str(uuid.uuid4()))
    try:
        await sandbox.run("print(1)", language="python", on_event=on_event, timeout_s=60)
        return first.result()
    finally:
        await sandbox.close()


async def wait_for_pool(backend, size: int) -> None:
    for _ in range(600):
        if backend.warm_count >= size:
            await asyncio.sleep(0.2)  # let the fresh kernel settle, as a pool that waited would
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the warm pool did not fill")


def med_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def main(n: int) -> None:
    backend = get_backend("local")
    health = await backend.health()
    if not health.ok:
        sys.exit(f"the local sandbox can't run here: {health.detail}")
    print(f"isolation: {health.isolation}; n={n}; {os.cpu_count()} CPUs")
    settings.SANDBOX_POOL_SIZE = 0
    sandbox = await backend.create(owner_id=0, session_id=str(uuid.uuid4()))
    await sandbox_execute(sandbox, "1")
    # The raw client gets a kernel of its own, started the same way (a second client on one kernel
    # would receive, and pay for, the other's output too).
    raw_sandbox = await backend.create(owner_id=0, session_id=str(uuid.uuid4()))
    raw_kernel = await raw_sandbox.kernel("python")
    raw_kernel.close_client()
    client = raw_client_for(raw_kernel)
    try:
        for _ in range(5):  # warm both paths
            await raw_execute(client, "1")
            await sandbox_execute(sandbox, "1")
        raw_rt, ours_rt = await alternate(n, lambda: raw_execute(client, "1"), lambda: sandbox_execute(sandbox, "1"))
        assert await raw_execute(client, TEN_MB) == 10_000_001
        assert await sandbox_execute(sandbox, TEN_MB) == 10_000_001
        raw_big, ours_big = await alternate(n, lambda: raw_execute(client, TEN_MB),
                                            lambda: sandbox_execute(sandbox, TEN_MB))
    finally:
        client.stop_channels()
        await sandbox.close()
        await raw_sandbox.close()

    cold = []
    for _ in range(max(n // 6, 3)):
        cold.append(await first_output_s(backend))
    settings.SANDBOX_POOL_SIZE = 1
    backend.fill_pool()
    warm = []
    for _ in range(max(n // 3, 5)):
        await wait_for_pool(backend, 1)
        warm.append(await first_output_s(backend))
    settings.SANDBOX_POOL_SIZE = 0
    await wait_for_pool(backend, 1)

    rows = [
        ("round trip of `1`", med_ms(raw_rt), med_ms(ours_rt)),
        ("10 MB of stdout", med_ms(raw_big), med_ms(ours_big)),
    ]
    print(f"\n{'':28}{'raw p50':>12}{'run p50':>12}{'ratio':>8}")
    for name, raw_ms, ours_ms in rows:
        print(f"{name:28}{raw_ms:>10.2f}ms{ours_ms:>10.2f}ms{ours_ms / raw_ms:>7.2f}x")
    print(f"\n{'first output, new sandbox':28}{'p50':>12}{'max':>12}")
    print(f"{'  without the pool':28}{med_ms(cold):>10.1f}ms{max(cold) * 1000:>10.1f}ms")
    print(f"{'  with the pool':28}{med_ms(warm):>10.1f}ms{max(warm) * 1000:>10.1f}ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30)
    asyncio.run(main(parser.parse_args().n))
