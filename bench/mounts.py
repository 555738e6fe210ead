"""What the mounts that hide host paths from a sandbox's mountinfo cost (runner/sandboxes/local/mounts.py).

    sudo .venv/bin/python bench/mounts.py [--rounds 15]

As root (nothing is mounted otherwise). Measures, alternating rounds:
1. the mounts alone: a kernel control dir's tmpfs (mount + unmount), a workspace overlay (mount +
   unmount), the two read-only overlays a server mounts once at start;
2. a confined process from nothing, as LocalBackend's self-test does: a new sandbox dir, its
   mounts, bwrap + setpriv running `python -c "print('ok')"` from the kernels' venv, teardown;
3. kernel memory per mount: Slab + Shmem in /proc/meminfo around 200 workspace overlays and 200
   control tmpfs mounts (noisy on a shared machine: read it as an order of magnitude).
Uses a scratch SANDBOX_STATE_DIR-like folder under the real state dir, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from runner.sandboxes.local import mounts  # noqa: E402
from runner.sandboxes.local.backend import LocalBackend  # noqa: E402


def _ms(fn: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _meminfo_kb() -> int:
    fields = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0])
    return fields["Slab"] + fields["Shmem"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: nothing is mounted otherwise")
    scratch = Path(settings.SANDBOX_STATE_DIR) / f"bench-mounts-{os.getpid()}"
    empty, upper, work = scratch / "empty", scratch / "upper", scratch / "work"
    for d in (empty, upper, work):
        d.mkdir(parents=True)
    try:
        target = scratch / "t"
        target.mkdir()

        def tmpfs() -> None:
            mounts.mount_tmpfs(target, size_bytes=256 * 1024)
            mounts.unmount_under(target)

        def workspace() -> None:
            mounts.mount_workspace(target, upper, work, empty)
            mounts.unmount_under(target)

        def read_only() -> None:
            mounts.mount_read_only(target, Path(settings.SANDBOX_KERNEL_ENV), empty)
            mounts.unmount_under(target)

        print(f"control tmpfs, mount + unmount: {_ms(tmpfs, args.rounds * 4):.2f} ms (median)")
        print(f"workspace overlay, mount + unmount: {_ms(workspace, args.rounds * 4):.2f} ms (median)")
        print(f"read-only overlay (kenv), mount + unmount: {_ms(read_only, args.rounds * 4):.2f} ms (median)")

        backend = LocalBackend()
        assert not backend.isolation.problem, backend.isolation.problem
        print(f"confined python -c print, new sandbox to teardown: "
              f"{_ms(lambda: backend._try_a_sandbox(['-c', 'print(1)']) and None, args.rounds):.0f} ms (median)")
        backend.close_all()

        n = 200
        before = _meminfo_kb()
        points = []
        for i in range(n):
            ws, up, wk, ctl = (scratch / f"{kind}{i}" for kind in ("ws", "up", "wk", "ctl"))
            for d in (ws, up, wk, ctl):
                d.mkdir()
            (up / "f").write_text(str(uuid.uuid4()))
            mounts.mount_workspace(ws, up, wk, empty)
            mounts.mount_tmpfs(ctl, size_bytes=256 * 1024)
            (ctl / "kernel.json").write_text("{}" * 100)
            points += [ws, ctl]
        after = _meminfo_kb()
        print(f"Slab+Shmem for {n} workspace overlays + {n} control tmpfs: {after - before} KiB "
              f"({(after - before) / n:.1f} KiB per sandbox)")
    finally:
        mounts.unmount_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
