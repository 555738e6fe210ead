"""Soak: mixed load for a while, then count what is left over and how the server's memory moved.

    .venv/bin/python bench/soak.py --minutes 30 [--users 12] [--check]

Starts its own stack (bench/stack.py: embedded defaults with DEBUG off, one Daphne, a fresh SQLite file, local
kernels; or `--postgres`/`--redis` as in bench/load.py), with a short idle timeout
(`--idle-s`, default 15) so the reaper works during the soak. Traffic only to 127.0.0.1.
Each user loops, picking at random: a short run (most), a flood (40k lines, past the output
cap), a run stopped after 0.3 s (it must end `cancelled`), a reconnect (close the socket and
open another), or going idle past the idle timeout (its sandbox is reaped; the next run starts
another). A run must end as expected (succeeded; cancelled after a Stop) or it counts as an
error.

Afterwards every socket is closed and the script waits for the reaper (idle timeout plus a
margin), then reports what the server still holds beyond what it held after warm-up: kernel
processes, cgroups and state dirs of sandboxes, open leases, asyncio tasks (from the server's
`kill -USR1` state line), sandboxes held and runs in flight; goal 0 each. And the server's RSS at
the start (after warm-up), the middle and the end (goal: flat within 10%). `--check` exits 1 if
an error happened or anything was left over (tests/test_soak.py runs a 1-minute soak with it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

from stack import Stack, User, descendants, open_socket, run_code

FLOOD = "for i in range(40000):\n    print('flood line', i)"
SPIN = "print('spinning', flush=True)\nwhile True:\n    pass"
STATE_LINE = re.compile(r"state: (\d+) asyncio tasks, (\d+) sandboxes held, (\d+) runs here")


def _cgroups_of(pid: int) -> int:
    """Sandbox cgroups named after this server process ("<pidns>.<pid>.<start>.<id>")."""
    count = 0
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in list(dirs):
            if f".{pid}." in d:
                count += 1
                dirs.remove(d)
        if root.count("/") > 12:
            dirs.clear()
    return count


def _state_dirs(stack: Stack) -> int:
    sbx = Path(stack.env["SANDBOX_STATE_DIR"]) / "sbx"
    return sum(1 for owner in sbx.iterdir() if owner.is_dir() for d in owner.iterdir() if d.is_dir()) if sbx.exists() else 0


def _server_state(stack: Stack) -> tuple[int, int, int]:
    """(asyncio tasks, sandboxes held, runs here) from the server's SIGUSR1 line."""
    server = stack.servers[0]
    log = Path(server.log)
    before = len(STATE_LINE.findall(log.read_text(errors="replace")))
    os.kill(server.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = STATE_LINE.findall(log.read_text(errors="replace"))
        if len(lines) > before:
            return tuple(int(x) for x in lines[-1])  # type: ignore[return-value]
        time.sleep(0.1)
    raise RuntimeError("the server did not answer SIGUSR1 with its state line")


def census(stack: Stack) -> dict[str, int]:
    pid = stack.servers[0].proc.pid
    tasks, held, running = _server_state(stack)
    leases = int(stack.manage("from runner.models import SandboxLease; print(SandboxLease.objects.open().count())").split()[-1])
    return {"kernel processes": len(descendants(pid)), "cgroups": _cgroups_of(pid), "state dirs": _state_dirs(stack),
            "open leases": leases, "asyncio tasks": tasks, "sandboxes held": held, "runs in flight": running}


class Soaker:
    def __init__(self, stack: Stack, users: list[User], until: float, idle_s: float) -> None:
        self.stack, self.users, self.until, self.idle_s = stack, users, until, idle_s
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}

    async def user(self, n: int, user: User) -> None:
        server = self.stack.servers[n % len(self.stack.servers)]
        ws = await open_socket(server, user.session_ids[0], user.cookie)
        rng = random.Random(n)
        k = 0
        try:
            while time.monotonic() < self.until:
                k += 1
                action = rng.choices(["short", "flood", "stop", "reconnect", "idle"], [60, 8, 12, 12, 3])[0]
                if action == "idle" and time.monotonic() + self.idle_s + 5 > self.until:
                    action = "short"
                self.counts[action] = self.counts.get(action, 0) + 1
                try:
                    ws = await self.act(action, ws, server, user, f"{n}-{k}")
                except Exception as exc:
                    self.errors.append(f"user {n} {action}: {type(exc).__name__}: {exc}")
                    await ws.close()
                    ws = await open_socket(server, user.session_ids[0], user.cookie)
                await asyncio.sleep(rng.uniform(0.05, 0.5))
        finally:
            await ws.close()

    async def act(self, action: str, ws: Any, server: Any, user: User, tag: str) -> Any:
        if action == "short":
            result = await run_code(ws, f"print({len(tag)})", tag)
            self.expect(result, "succeeded", f"{len(tag)}\n")
        elif action == "flood":
            result = await run_code(ws, FLOOD, tag)
            self.expect(result, "succeeded")
        elif action == "stop":
            result = await asyncio.wait_for(run_code(ws, SPIN, tag, stop_after_s=0.3), 60)
            self.expect(result, "cancelled")
        elif action == "reconnect":
            await ws.close()
            ws = await open_socket(server, user.session_ids[0], user.cookie)
        elif action == "idle":
            await asyncio.sleep(self.idle_s + 5)
            result = await run_code(ws, "print('back')", tag)
            self.expect(result, "succeeded", "back\n")
        return ws

    def expect(self, result: dict[str, Any], status: str, stdout: str | None = None) -> None:
        if result["status"] != status or (stdout is not None and result["stdout"] != stdout):
            self.errors.append(f"run {result['execution_id']}: {result['status']} (wanted {status}), stdout {result['stdout'][:60]!r}, "
                               f"other output {' | '.join(result['other'])[:300]!r}")


async def soak(stack: Stack, users: list[User], minutes: float, idle_s: float) -> dict[str, Any]:
    # Warm-up: every user's sandbox once, then let the reaper close them all, so the baseline is
    # the idle server (its warm pool included).
    for n, user in enumerate(users):
        ws = await open_socket(stack.servers[0], user.session_ids[0], user.cookie)
        await run_code(ws, "x = 1", f"warm-{n}")
        await ws.close()
    await _settle(stack, idle_s)
    baseline = census(stack)
    rss: list[float] = [stack.rss_mb()[0]]
    started = time.monotonic()
    until = started + minutes * 60
    soaker = Soaker(stack, users, until, idle_s)

    async def sample_middle() -> None:
        await asyncio.sleep(minutes * 30)
        rss.append(stack.rss_mb()[0])

    middle = asyncio.ensure_future(sample_middle())
    await asyncio.gather(*(soaker.user(n, u) for n, u in enumerate(users)))
    await middle
    await _settle(stack, idle_s)
    rss.append(stack.rss_mb()[0])
    after = census(stack)
    return {"baseline": baseline, "after": after, "rss": rss, "errors": soaker.errors, "counts": soaker.counts,
            "wall_s": time.monotonic() - started}


async def _settle(stack: Stack, idle_s: float) -> None:
    """Wait until the reaper has closed every sandbox (idle timeout plus housekeeping's period)."""
    deadline = time.monotonic() + idle_s + 30
    await asyncio.sleep(idle_s + 3)
    while time.monotonic() < deadline and _server_state(stack)[1] > 0:
        await asyncio.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--idle-s", type=int, default=15, help="SANDBOX_IDLE_TIMEOUT_S for the soak")
    parser.add_argument("--postgres", default="")
    parser.add_argument("--redis", default="")
    parser.add_argument("--check", action="store_true", help="exit 1 on any error or leftover")
    args = parser.parse_args()

    stack = Stack(servers=1, postgres=args.postgres, redis=args.redis, extra_env={
        "SANDBOX_IDLE_TIMEOUT_S": str(args.idle_s), "SERVER_HEARTBEAT_S": "2", "SANDBOX_MAX_LIVE": str(args.users + 5),
        "LOG_LEVEL": "WARNING",
        # As in production: with DEBUG on, Django keeps the last 9000 queries per connection.
        "DEBUG": "false", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    })
    try:
        users = stack.make_users(args.users, prefix="soak")
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.users} users for {args.minutes:g} min, "
              f"idle timeout {args.idle_s} s; {'Postgres' if args.postgres else 'SQLite'} + {'Redis' if args.redis else 'in-memory layer'}",
              flush=True)
        r = asyncio.run(soak(stack, users, args.minutes, args.idle_s))
    finally:
        stack.stop()

    print(f"soaked {r['wall_s'] / 60:.1f} min; actions: " + ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())))
    print(f"errors: {len(r['errors'])}  (goal 0)")
    for error in r["errors"][:10]:
        print(f"  {error}")
    leftovers = {k: r["after"][k] - r["baseline"][k] for k in r["after"]}
    print("left over after the reaper, beyond the idle baseline (goal 0 each):")
    for key, extra in leftovers.items():
        print(f"  {key:18} {extra:+d}  (baseline {r['baseline'][key]}, after {r['after'][key]})")
    start, middle, end = (r["rss"] + [float("nan")] * 3)[:3]
    print(f"server RSS: start {start:.0f} MB, middle {middle:.0f} MB, end {end:.0f} MB "
          f"({(end / start - 1) * 100:+.1f}% end vs start; goal within 10%)")
    if args.check and (r["errors"] or any(leftovers.values())):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
