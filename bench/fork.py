"""Python kernels forked from the template vs started afresh in bwrap, in one run.

    .venv/bin/python bench/fork.py [--n 10] [--k 5]

- cold start of a Python kernel (a new sandbox, `kernel("python")` until it answers), with
  SANDBOX_KERNEL_FORK off and on, against the floor of `python -c pass` in the same bwrap;
- the extra PSS of an idle Python sandbox after `import pandas, numpy, matplotlib.pyplot`: K
  sandboxes are started, the PSS (/proc/<pid>/smaps_rollup) of every process they add is summed
  (forked: the template with its kernels minus the template alone) and divided by K;
- first output of a bash and a JavaScript kernel in a new sandbox (they keep today's start).

Starts alternate between the two modes, so both see the same machine state. Run as root (forking
needs the cgroups and mounts only root has).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
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

from runner.sandboxes.base import Stdout, get_backend  # noqa: E402
from runner.sandboxes.local import jail, processes  # noqa: E402

IMPORTS = "import pandas, numpy, matplotlib.pyplot; print('ok')"


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def tree(pid: int) -> list[int]:
    return [pid, *(p for p, _ in processes.process_tree(pid, with_zombies=False))]


def floor_s(backend) -> float:
    sandbox = backend._new_sandbox()
    try:
        argv = backend.confined_argv(sandbox, command=[f"{jail.VENV}/bin/python", "-c", "pass"],
                                     language="python", control=None)
        with jail.hidden_options(argv) as (argv, fds):
            started = time.perf_counter()
            subprocess.run(argv, env=jail.OUTER_ENV, check=True, pass_fds=fds, cwd="/")
            return time.perf_counter() - started
    finally:
        sandbox.destroy()


async def cold_start_s(backend, mode: str) -> float:
    settings.SANDBOX_KERNEL_FORK = mode
    sandbox = backend._new_sandbox()
    try:
        started = time.perf_counter()
        await sandbox.kernel("python")
        return time.perf_counter() - started
    finally:
        await sandbox.close()


async def first_output_s(backend, language: str, code: str) -> float:
    sandbox = backend._new_sandbox()
    first: list[float] = []
    started = time.perf_counter()

    def on_event(event) -> None:
        if isinstance(event, Stdout) and not first:
            first.append(time.perf_counter() - started)

    try:
        outcome = await sandbox.run(code, language=language, on_event=on_event, timeout_s=60)
        assert outcome.status == "ok", outcome
        return first[0]
    finally:
        await sandbox.close()


async def extra_pss_mib(backend, mode: str, k: int) -> float:
    settings.SANDBOX_KERNEL_FORK = mode
    base = 0
    if mode == "on":
        warm = backend._new_sandbox()
        await warm.kernel("python")  # the template is up
        await warm.close()
        template = backend.forkserver()._template
        base = pss_kib(tree(template.pid))
    sandboxes = [backend._new_sandbox() for _ in range(k)]
    try:
        for sandbox in sandboxes:
            outcome = await sandbox.run(IMPORTS, language="python", on_event=lambda e: None, timeout_s=120)
            assert outcome.status == "ok", outcome
        await asyncio.sleep(1.0)
        if mode == "on":
            total = pss_kib(tree(backend.forkserver()._template.pid)) - base
        else:
            total = sum(pss_kib(tree(s.kernels[next(iter(s.kernels))].proc.pid)) for s in sandboxes)
        return total / k / 1024
    finally:
        for sandbox in sandboxes:
            await sandbox.close()


async def main(n: int, k: int) -> None:
    backend = get_backend("local")
    health = await backend.health()
    if not health.ok:
        sys.exit(f"the local sandbox can't run here: {health.detail}")
    settings.SANDBOX_POOL_SIZE = 0
    print(f"isolation: {health.isolation}; n={n}, k={k}; {os.cpu_count()} CPUs")
    await cold_start_s(backend, "on")  # the template's own start is not a kernel's
    floors, fresh, forked = [], [], []
    for _ in range(n):
        floors.append(await asyncio.to_thread(floor_s, backend))
        fresh.append(await cold_start_s(backend, "off"))
        forked.append(await cold_start_s(backend, "on"))
    floor = statistics.median(floors)
    print(f"\n{'cold Python kernel start':34}{'p50':>10}{'max':>10}{'vs floor':>10}")
    for name, samples in (("python -c pass in bwrap (floor)", floors), ("afresh in bwrap (off)", fresh),
                          ("forked from the template (on)", forked)):
        p50 = statistics.median(samples)
        print(f"{name:34}{p50 * 1000:>8.0f}ms{max(samples) * 1000:>8.0f}ms{p50 / floor:>9.2f}x")
    print("\nextra PSS of an idle Python sandbox after `import pandas, numpy, matplotlib.pyplot`:")
    for mode in ("off", "on"):
        print(f"  SANDBOX_KERNEL_FORK={mode:4} {await extra_pss_mib(backend, mode, k):7.1f} MiB")
    settings.SANDBOX_KERNEL_FORK = "on"
    for language, code in (("bash", "echo 1"), ("javascript", "console.log(1)")):
        samples = [await first_output_s(backend, language, code) for _ in range(max(n // 2, 3))]
        print(f"first output, new {language} kernel: p50 {statistics.median(samples) * 1000:.0f} ms, "
              f"max {max(samples) * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.k))
