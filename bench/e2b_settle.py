"""The run after a cut on E2B: how long from the cut to the next run's end, against a normal run.

    .venv/bin/python bench/e2b_settle.py [--n 20]

The real SDK talks to the local E2B-protocol server (tests/e2b_server, real ipykernel behind it,
faithful to E2B's server after a cut: see KernelContext.execute). On one sandbox, alternating:
- a normal run of `print(x)` (the floor);
- timeout: `x = i; time.sleep(30)` under a 0.3 s deadline, then `print(x)`; measured from the
  deadline to the end of `print(x)`, so it includes the settle the timed-out run does before it
  returns and the next run itself;
- Stop: the same code, `interrupt()` after 0.2 s, measured from the Stop to the end of `print(x)`.
Each cut sample also checks that `print(x)` printed the kept value.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from runner.sandboxes.base import Event, Stdout  # noqa: E402
from runner.sandboxes.e2b import E2BBackend, E2BConfig, E2BSandbox  # noqa: E402
from tests.e2b_server import start_server  # noqa: E402

DEADLINE_S = 0.3
STOP_AFTER_S = 0.2
SLEEPER = "import time\ntime.sleep(30)"


async def print_x(sandbox: E2BSandbox, expected: int) -> None:
    events: list[Event] = []
    outcome = await sandbox.run("print(x)", language="python", on_event=events.append, timeout_s=15)
    printed = "".join(e.text for e in events if isinstance(e, Stdout))
    if outcome.status != "ok" or printed != f"{expected}\n":
        raise SystemExit(f"the run after a cut went wrong: {outcome}, {printed!r}")


async def after_timeout(sandbox: E2BSandbox, i: int) -> float:
    started = time.perf_counter()
    outcome = await sandbox.run(f"x = {i}\n{SLEEPER}", language="python", on_event=lambda e: None, timeout_s=DEADLINE_S)
    assert outcome.status == "timeout", outcome
    await print_x(sandbox, i)
    return time.perf_counter() - (started + DEADLINE_S)


async def after_stop(sandbox: E2BSandbox, i: int) -> float:
    running = asyncio.ensure_future(sandbox.run(f"x = {i}\n{SLEEPER}", language="python", on_event=lambda e: None, timeout_s=15))
    await asyncio.sleep(STOP_AFTER_S)
    stopped = time.perf_counter()
    await sandbox.interrupt()
    assert (await running).status == "interrupted"
    await print_x(sandbox, i)
    return time.perf_counter() - stopped


async def normal(sandbox: E2BSandbox, i: int) -> float:
    await sandbox.run(f"x = {i}", language="python", on_event=lambda e: None, timeout_s=15)
    started = time.perf_counter()
    await print_x(sandbox, i)
    return time.perf_counter() - started


async def main(n: int) -> None:
    server = start_server(api_key="e2b_bench", kernel_env=settings.SANDBOX_KERNEL_ENV)
    try:
        config = E2BConfig(api_key="e2b_bench", api_url=server.url, sandbox_url=server.url, idle_timeout_s=300)
        sandbox = await E2BBackend(config).create(owner_id=0, session_id="bench")
        samples: dict[str, list[float]] = {"normal": [], "timeout": [], "stop": []}
        for i in range(n + 3):
            for name, measure in (("normal", normal), ("timeout", after_timeout), ("stop", after_stop)):
                took_s = await measure(sandbox, i)
                if i >= 3:  # warm-up
                    samples[name].append(took_s)
        await sandbox.close()
    finally:
        server.stop()
    floor_ms = statistics.median(samples["normal"]) * 1000
    print(f"normal run of print(x), p50 of {n}: {floor_ms:.1f} ms")
    for name, label in (("timeout", "deadline"), ("stop", "Stop")):
        ms = sorted(s * 1000 for s in samples[name])
        p50 = statistics.median(ms)
        print(
            f"after a {name}: from the {label} to the end of print(x), p50 {p50:.0f} ms "
            f"(min {ms[0]:.0f}, max {ms[-1]:.0f}), {p50 / floor_ms:.1f}x a normal run"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    asyncio.run(main(parser.parse_args().n))
