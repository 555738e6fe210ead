"""Load: N concurrent users on one machine, each a websocket session streaming printing runs.

    .venv/bin/python bench/load.py [--users 100] [--rounds 2]                    # embedded defaults
    .venv/bin/python bench/load.py --postgres postgres://postgres@127.0.0.1:5432 \\
        --redis redis://127.0.0.1:6379/0 --servers 2                             # scale-out stack

Starts its own stack (bench/stack.py: a fresh database, real Daphne processes, local kernels in
bwrap); traffic only to 127.0.0.1. Each user is a user account with one session and one socket:
1. warm-up, not measured: open the socket, run `x = 1` (its kernel starts), at most 8 at a time;
2. the floor: one user's round trip of `1` on the otherwise idle stack (20 samples);
3. the load: every user at once (starts spread over the first 5 s), `--rounds` times: a 5-second
   printing run (`print(i)` every 0.1 s, 50 lines; checked complete), then 3 round trips of `1`
   while the others stream. Users go round robin over the servers.
Reported: errors (any exception, error frame, incomplete or failed run; goal 0), first output of
the printing run (send → first chunk) and the round trip of `1` (send → `execution.finished`),
p50 and p99, the round trip's p50 against the floor, and each server's CPU (share of one core
over the load) and RSS (before and peak).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import threading
import time
from typing import Any

from stack import Stack, User, descendants, median_ms, open_socket, percentile_ms, run_code


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds used so far by those of `pids` still alive."""
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total

STREAM_LINES = 50
STREAM = f"import time\nfor i in range({STREAM_LINES}):\n    print(i, flush=True)\n    time.sleep(0.1)"
STREAM_TEXT = "".join(f"{i}\n" for i in range(STREAM_LINES))
ROUND_TRIPS = 3
WARM_AT_ONCE = 8


async def _user(stack: Stack, n: int, user: User, sockets: dict[int, Any], warm: asyncio.Semaphore) -> None:
    async with warm:
        server = stack.servers[n % len(stack.servers)]
        ws = sockets[n] = await open_socket(server, user.session_ids[0], user.cookie)
        result = await run_code(ws, "x = 1", f"warm-{n}")
        if result["status"] != "succeeded":
            raise RuntimeError(f"warm-up of {user.name}: {result}")


async def _load(ws: Any, n: int, rounds: int, stats: dict[str, list], start_at: float) -> None:
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    for r in range(rounds):
        try:
            result = await run_code(ws, STREAM, f"stream-{n}-{r}")
            if result["status"] != "succeeded" or result["stdout"] != STREAM_TEXT:
                stats["errors"].append(f"user {n}: stream {result['status']}, {len(result['stdout'])} chars")
            else:
                stats["first_output"].append(result["first_output_s"])
            for k in range(ROUND_TRIPS):
                result = await run_code(ws, "1", f"rt-{n}-{r}-{k}")
                if result["status"] != "succeeded":
                    stats["errors"].append(f"user {n}: round trip {result['status']}")
                else:
                    stats["round_trip"].append(result["elapsed_s"])
        except Exception as exc:  # counted, not fatal: the figure is how many
            stats["errors"].append(f"user {n}: {type(exc).__name__}: {exc}")
            return


async def bench(stack: Stack, users: list[User], rounds: int) -> dict[str, Any]:
    sockets: dict[int, Any] = {}
    warm = asyncio.Semaphore(WARM_AT_ONCE)
    t0 = time.perf_counter()
    await asyncio.gather(*(_user(stack, n, u, sockets, warm) for n, u in enumerate(users)))
    warm_s = time.perf_counter() - t0

    floor = []
    for k in range(25):
        result = await run_code(sockets[0], "1", f"floor-{k}")
        if k >= 5:
            floor.append(result["elapsed_s"])

    rss_before = stack.rss_mb()
    peak = list(rss_before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[:] = [max(a, b) for a, b in zip(peak, stack.rss_mb())]
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stats: dict[str, list] = {"errors": [], "first_output": [], "round_trip": []}
    kernels = [pid for server in stack.servers for pid in descendants(server.proc.pid)]
    commits0 = await asyncio.to_thread(stack.commits)
    cpu0, t0, client0, kernels0 = stack.cpu_s(), time.perf_counter(), time.process_time(), _cpu_of(kernels)
    gate = t0 + 0.1
    await asyncio.gather(*(_load(ws, n, rounds, stats, gate + random.uniform(0, 5)) for n, ws in sockets.items()))
    wall_s = time.perf_counter() - t0
    cpu = [(b - a) / wall_s for a, b in zip(cpu0, stack.cpu_s())]
    client_cpu = (time.process_time() - client0) / wall_s
    kernels_cpu = (_cpu_of(kernels) - kernels0) / wall_s
    commits1 = await asyncio.to_thread(stack.commits)
    commits = None if commits0 is None or commits1 is None else commits1 - commits0
    done.set()
    sampler.join()
    for ws in sockets.values():
        await ws.close()
    return {"warm_s": warm_s, "floor": floor, "wall_s": wall_s, "cpu": cpu, "client_cpu": client_cpu, "kernels_cpu": kernels_cpu,
            "load_avg": os.getloadavg()[0], "commits": commits, "rss_before": rss_before, "rss_peak": peak, **stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="printing runs per user (each followed by 3 round trips)")
    parser.add_argument("--servers", type=int, default=1, help="Daphne processes (more than 1 needs --redis)")
    parser.add_argument("--postgres", default="", help="a Postgres server URL without database name; a fresh database is made and dropped")
    parser.add_argument("--redis", default="", help="a Redis URL for the channel layer (a private key prefix is used)")
    args = parser.parse_args()
    if args.servers > 1 and not args.redis:
        parser.error("--servers > 1 needs --redis (the in-memory channel layer is one process)")

    per_server = args.users // args.servers + 5
    stack = Stack(servers=args.servers, postgres=args.postgres, redis=args.redis,
                  extra_env={"SANDBOX_MAX_LIVE": str(per_server), "SANDBOX_IDLE_TIMEOUT_S": "900", "RUN_QUEUE_MAX": "100"})
    try:
        users = stack.make_users(args.users, prefix="load")
        label = f"{args.servers} Daphne on {'Postgres' if args.postgres else 'SQLite'} + {'Redis' if args.redis else 'in-memory layer'}"
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {label}; {args.users} users x {args.rounds} rounds")
        r = asyncio.run(bench(stack, users, args.rounds))
    finally:
        stack.stop()

    rt, fo = r["round_trip"], r["first_output"]
    print(f"warm-up (every user's kernel started, {WARM_AT_ONCE} at a time): {r['warm_s']:.1f} s")
    print(f"load phase: {r['wall_s']:.1f} s wall")
    print(f"errors: {len(r['errors'])}  (goal 0)")
    for error in r["errors"][:10]:
        print(f"  {error}")
    print(f"round trip of 1, idle floor:    p50 {median_ms(r['floor']):7.1f} ms")
    print(f"round trip of 1, under load:    p50 {median_ms(rt):7.1f} ms  p99 {percentile_ms(rt, 99):7.1f} ms  "
          f"({len(rt)} samples; p50 {median_ms(rt) / median_ms(r['floor']):.1f}x the floor; goal p99 <= 250 ms)")
    print(f"first output of a printing run: p50 {median_ms(fo):7.1f} ms  p99 {percentile_ms(fo, 99):7.1f} ms  ({len(fo)} samples)")
    for n, (cpu, before, peak) in enumerate(zip(r["cpu"], r["rss_before"], r["rss_peak"])):
        print(f"server {n}: CPU {cpu * 100:.0f}% of one core over the load; RSS {before:.0f} MB before, {peak:.0f} MB peak")
    if r["commits"] is not None:
        print(f"database commits over the load: {r['commits']} ({r['commits'] / r['wall_s']:.0f}/s; Postgres's pg_stat_database)")
    print(f"elsewhere over the load: kernels (and their bwrap) {r['kernels_cpu'] * 100:.0f}% of one core, this client "
          f"{r['client_cpu'] * 100:.0f}%; machine load average {r['load_avg']:.1f} at the end")


if __name__ == "__main__":
    main()
