"""A class starts together: N students, each with a new session and its socket open, press Run
within 1 s of each other, and the first cell imports pandas.

    .venv/bin/python bench/classroom.py [--students 30]                                 # embedded defaults
    .venv/bin/python bench/classroom.py --students 30 --postgres postgres://postgres@127.0.0.1:5432 \\
        --redis redis://127.0.0.1:6379/0 --servers 2                                    # scale-out stack

Starts its own stack (bench/stack.py: a fresh database, real Daphne processes, local kernels in
bwrap) with the README's defaults and nothing tuned (no SANDBOX_MAX_LIVE, pool or queue setting is
passed); traffic only to 127.0.0.1.
1. The floor, in the same run: one student alone presses Run in a new session on the idle stack
   (Run -> first output and Run -> finished, 3 students one after another; the median).
2. The class: N more students open their sockets (not measured), then all press Run, the presses
   spread uniformly over 1 s. Students go round robin over the servers.
Reported: refused (an `error` frame, e.g. `unavailable`, or a run that did not succeed), Run ->
first output and Run -> finished (p50, p90, max) with p90 as a ratio of the floor, and, once the
class is idle, the kernels' memory: PSS of every process below the servers, per student.
Goals (issue 18) on the 2-core machine: N = 30, p90 first output <= 1 s, max <= 2 s, 0 refused;
N = 60, 0 refused, max <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from stack import Stack, User, descendants, median_ms, open_socket, percentile_ms

FIRST_CELL = "import pandas as pd; print(len(pd.DataFrame({'a': [1, 2, 3]})))"
WANT = "3\n"
FLOOR_STUDENTS = 3


async def press_run(ws: Any, client_id: str, at: float) -> dict[str, Any]:
    """Wait until `at` (perf_counter), send the first cell, wait for its end.

    Returns {refused: reason or "", first_output_s, finished_s}; never raises for the server's answers."""
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "run", "code": FIRST_CELL, "language": "python", "client_id": client_id}))
    execution_id, first, stdout = None, None, []
    async with asyncio.timeout(120):
        while True:
            frame = json.loads(await ws.recv())
            kind = frame.get("type")
            if kind == "error":
                return {"refused": f"{frame.get('code')}: {frame.get('message')}", "first_output_s": None, "finished_s": None}
            if kind == "execution.queued" and frame.get("client_id") == client_id:
                execution_id = frame["execution_id"]
            elif execution_id is None or frame.get("execution_id") != execution_id:
                continue
            elif kind == "execution.output":
                if first is None:
                    first = time.perf_counter() - t0
                if frame.get("kind") == "stdout":
                    stdout.append(frame.get("text", ""))
            elif kind == "execution.finished":
                finished = time.perf_counter() - t0
                if frame["status"] != "succeeded" or "".join(stdout) != WANT:
                    return {"refused": f"run {frame['status']}: {''.join(stdout)[:200]!r}", "first_output_s": first,
                            "finished_s": finished}
                return {"refused": "", "first_output_s": first, "finished_s": finished}


def pss_mb(pids: list[int]) -> float:
    """The summed proportional set size of `pids`, in MB (from smaps_rollup)."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kb / 1024


async def bench(stack: Stack, floor_users: list[User], class_users: list[User]) -> dict[str, Any]:
    servers = stack.servers
    floor = []
    for n, user in enumerate(floor_users):
        ws = await open_socket(servers[n % len(servers)], user.session_ids[0], user.cookie)
        floor.append(await press_run(ws, f"floor-{n}", time.perf_counter()))
        await ws.close()
    refused_floor = [r["refused"] for r in floor if r["refused"]]
    if refused_floor:
        raise SystemExit(f"the floor itself failed: {refused_floor}")
    idle_pids = [pid for s in servers for pid in descendants(s.proc.pid)]
    pss_before = pss_mb(idle_pids)

    sockets = await asyncio.gather(*(open_socket(servers[n % len(servers)], u.session_ids[0], u.cookie)
                                     for n, u in enumerate(class_users)))
    gate = time.perf_counter() + 0.5
    results = await asyncio.gather(*(press_run(ws, f"class-{n}", gate + random.uniform(0, 1))
                                     for n, ws in enumerate(sockets)), return_exceptions=True)
    await asyncio.sleep(2)  # let the kernels go idle before measuring their memory
    kernel_pids = [pid for s in servers for pid in descendants(s.proc.pid)]
    pss_after = pss_mb(kernel_pids)
    for ws in sockets:
        await ws.close()
    out = []
    for r in results:
        if isinstance(r, BaseException):
            out.append({"refused": f"{type(r).__name__}: {r}", "first_output_s": None, "finished_s": None})
        else:
            out.append(r)
    return {"floor": floor, "class": out, "pss_before": pss_before, "pss_after": pss_after,
            "processes_after": len(kernel_pids)}


def _stats(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    return (f"p50 {median_ms(samples):7.0f} ms  p90 {percentile_ms(samples, 90):7.0f} ms  "
            f"max {max(samples) * 1000:7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--servers", type=int, default=1, help="Daphne processes (more than 1 needs --redis)")
    parser.add_argument("--postgres", default="", help="a Postgres server URL without database name; a fresh database is made and dropped")
    parser.add_argument("--redis", default="", help="a Redis URL for the channel layer (a private key prefix is used)")
    args = parser.parse_args()
    if args.servers > 1 and not args.redis:
        parser.error("--servers > 1 needs --redis (the in-memory channel layer is one process)")

    stack = Stack(servers=args.servers, postgres=args.postgres, redis=args.redis)
    try:
        users = stack.make_users(FLOOR_STUDENTS + args.students, prefix="student")
        label = f"{args.servers} Daphne on {'Postgres' if args.postgres else 'SQLite'} + {'Redis' if args.redis else 'in-memory layer'}"
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {label}; {args.students} students; README defaults")
        r = asyncio.run(bench(stack, users[:FLOOR_STUDENTS], users[FLOOR_STUDENTS:]))
    finally:
        stack.stop()

    floor_first = [x["first_output_s"] for x in r["floor"]]
    floor_done = [x["finished_s"] for x in r["floor"]]
    ok = [x for x in r["class"] if not x["refused"]]
    refused = [x["refused"] for x in r["class"] if x["refused"]]
    first = [x["first_output_s"] for x in ok if x["first_output_s"] is not None]
    done = [x["finished_s"] for x in ok]
    print(f"floor, one student alone in a new session: first output {median_ms(floor_first):.0f} ms, "
          f"finished {median_ms(floor_done):.0f} ms (median of {len(floor_first)})")
    print(f"refused or failed: {len(refused)} of {len(r['class'])}  (goal 0)")
    for reason in sorted(set(refused))[:5]:
        print(f"  {refused.count(reason)} x {reason}")
    print(f"Run -> first output: {_stats(first)}  (p90 {percentile_ms(first, 90) / median_ms(floor_first):.1f}x the floor)")
    print(f"Run -> finished:     {_stats(done)}")
    extra = (r["pss_after"] - r["pss_before"]) / max(1, len(ok))
    print(f"kernels' memory once idle: {r['pss_after']:.0f} MB PSS over {r['processes_after']} processes "
          f"({extra:.0f} MB per student who ran; goal <= 30 MB)")


if __name__ == "__main__":
    main()
