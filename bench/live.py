"""The admin's live view (`/admin/live/` and `/admin/live.json`) with 200 live sandboxes.

    .venv/bin/python bench/live.py [--n 30] [--database-url postgres://…/sandpit_bench_live]

Without --database-url: a SQLite file in a temp dir (the embedded default, WAL as in settings).
Seeds a school's Monday morning: 500 students in 20 classes, 200 open leases (150 local, 50 E2B)
spread over 4 server processes on 2 hosts, each process's row carrying the figures it would
publish (CPU, memory per sandbox, capacity, 3 sessions waiting for room), 60 runs running and 20
queued on those sessions, and 20,000 ended leases and 50,000 finished runs behind them. Then times,
as a logged-in staff user through Django's full request stack (middleware, templates):
- the page, sorted by start (the default) and by CPU; the JSON the page polls;
- the floor, measured in the same run: the stock admin changelist of leases
  (`/admin/runner/sandboxlease/`, a count and a page of the same rows).
Samples alternate. Goal: the page under 200 ms p50.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

STUDENTS = 500
CLASSES = 20
LIVE = 200
E2B_LIVE = 50
PROCESSES = 4
RUNNING = 60
QUEUED = 20
ENDED_LEASES = 20_000
FINISHED_RUNS = 50_000
MIB = 1024 * 1024


def _setup(database_url: str | None) -> str:
    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='sandpit-bench-live-')}/db.sqlite3"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return database_url


def _seed() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from runner.models import ChatSession, Classroom, Execution, SandboxLease, ServerProcess

    User = get_user_model()
    if SandboxLease.objects.filter(sandbox_id__startswith="live-").exists():
        return
    rng = random.Random(20)
    now = timezone.now()
    began = time.monotonic()
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(username=f"pupil{i:03d}", first_name="Pupil", last_name=f"{i:03d}", email=f"pupil{i:03d}@school.example", password="!")
             for i in range(STUDENTS)], batch_size=500,
        )
        if users[0].pk is None:
            users = list(User.objects.filter(username__startswith="pupil").order_by("username"))
        classes = Classroom.objects.bulk_create([Classroom(name=f"Year {7 + i % 5} group {i}", join_code=f"live-{i:02d}") for i in range(CLASSES)])
        classes = list(Classroom.objects.filter(join_code__startswith="live-").order_by("join_code"))
        through = Classroom.students.through
        through.objects.bulk_create([through(classroom_id=classes[i % CLASSES].pk, user_id=u.pk) for i, u in enumerate(users)])
        sessions = ChatSession.objects.bulk_create([
            ChatSession(owner=u, title=f"Lesson {j}: loops and lists", classroom=classes[i % CLASSES], backend="local",
                        last_activity_at=now - timedelta(seconds=rng.uniform(0, 3600)))
            for i, u in enumerate(users) for j in range(2)
        ], batch_size=1000)
        boots = [f"bench-live-{p}" for p in range(PROCESSES)]
        live_sessions = rng.sample(sessions, LIVE)
        leases = []
        for i, session in enumerate(live_sessions):
            backend = "e2b" if i < E2B_LIVE else "local"
            leases.append(SandboxLease(
                user_id=session.owner_id, session=session, backend=backend, sandbox_id=f"live-{i}",
                vcpus=2.0 if backend == "e2b" else 1.0, memory_mb=512, owner_boot_id=boots[i % PROCESSES],
                started_at=now - timedelta(seconds=rng.uniform(10, 3 * 3600)),
            ))
        for i in range(ENDED_LEASES):
            session = sessions[rng.randrange(len(sessions))]
            started = now - timedelta(seconds=rng.uniform(3600, 30 * 86400))
            leases.append(SandboxLease(
                user_id=session.owner_id, session=session, backend="local", sandbox_id=f"old-{i}", owner_boot_id="gone",
                started_at=started, ended_at=started + timedelta(seconds=rng.uniform(30, 3600)), end_reason="idle",
            ))
        SandboxLease.objects.bulk_create(leases, batch_size=2000)
        seq: dict[object, int] = {}
        runs = []
        for _ in range(FINISHED_RUNS):
            session = sessions[rng.randrange(len(sessions))]
            seq[session.pk] = seq.get(session.pk, 0) + 1
            created = now - timedelta(seconds=rng.uniform(3600, 30 * 86400))
            runs.append(Execution(session=session, seq=seq[session.pk], code="print(1)", language="python", user_id=session.owner_id,
                                  status="succeeded", created_at=created, started_at=created, duration_ms=120))
        for i, session in enumerate(live_sessions[:RUNNING + QUEUED]):
            seq[session.pk] = seq.get(session.pk, 0) + 1
            status = "running" if i < RUNNING else "queued"
            runs.append(Execution(session=session, seq=seq[session.pk], code="while True: pass", language="python",
                                  user_id=session.owner_id, status=status, created_at=now - timedelta(seconds=40),
                                  started_at=now - timedelta(seconds=30) if status == "running" else None,
                                  owner_boot_id=boots[i % PROCESSES]))
        Execution.objects.bulk_create(runs, batch_size=2000)
        for p, boot in enumerate(boots):
            mine = [(i, s) for i, s in enumerate(live_sessions) if i % PROCESSES == p]
            figures = {
                f"live-{i}": {"session_id": str(s.pk), "lease_id": 0, "backend": "e2b" if i < E2B_LIVE else "local",
                              "cpu_percent": round(rng.uniform(0, 100), 1), "memory_bytes": rng.randint(60, 500) * MIB,
                              "memory_limit_bytes": 512 * MIB}
                for i, s in mine
            }
            waiting = [{"session_id": str(sessions[-1 - p].pk), "since": (now - timedelta(seconds=8)).isoformat()}] if p < 3 else []
            ServerProcess.objects.create(
                boot_id=boot, hostname=f"web-{p // 2 + 1}", pid=1000 + p, started_at=now - timedelta(hours=5), seen_at=now,
                live_stats={"backend": "local", "queue": waiting, "sandboxes": figures, "capacity": {
                    "live": len(mine), "max_live": None, "ceiling": 1024, "cap_text": "memory", "sandboxes_memory_bytes": 12_000 * MIB,
                    "available_bytes": 20_000 * MIB, "headroom_bytes": 512 * MIB, "left_bytes": 19_488 * MIB, "warm": 1,
                    "warming": 0, "has_room": True,
                }},
                live_stats_at=now,
            )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table in ("runner_execution", "runner_sandboxlease", "auth_user", "runner_chatsession"):
                cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"seeded {LIVE} live sandboxes on {PROCESSES} processes, {ENDED_LEASES} ended leases, {FINISHED_RUNS} runs "
          f"in {time.monotonic() - began:.1f} s")


def _keep_fresh() -> None:
    """The processes' heartbeats, as their housekeeping would write them (the bench outlives SERVER_STALE_S)."""
    from django.utils import timezone

    from runner.models import ServerProcess

    ServerProcess.objects.filter(boot_id__startswith="bench-live-").update(seen_at=timezone.now(), live_stats_at=timezone.now())


def _time(client: object, url: str) -> float:
    began = time.perf_counter()
    response = client.get(url)  # type: ignore[attr-defined]
    body = response.content
    elapsed_ms = (time.perf_counter() - began) * 1000
    assert response.status_code == 200 and body, (url, response.status_code)
    return elapsed_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="samples per measurement")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    url = _setup(args.database_url)
    _seed()
    _keep_fresh()

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    staff, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(staff)
    targets = {
        "floor: leases changelist": "/admin/runner/sandboxlease/",
        "live page (by start)": "/admin/live/",
        "live page (by CPU)": "/admin/live/?sort=cpu&dir=desc",
        "live.json (the poll)": "/admin/live.json",
    }
    for path in targets.values():  # warm: templates, query plans, page cache
        _time(client, path)
    body = client.get("/admin/live/").content.decode()
    shown = body.count('<tr data-lease="')
    assert shown == LIVE, shown
    assert body.count("live-stop") >= RUNNING, "every running run has its Stop"
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for i in range(args.n):
        if i % 10 == 0:
            _keep_fresh()
        for name, path in targets.items():
            samples[name].append(_time(client, path))
    print(f"database: {connection.vendor} ({url.split('@')[-1]}); {shown} live sandboxes on the page; n={args.n}")
    floor = statistics.median(samples["floor: leases changelist"])
    for name, values in samples.items():
        p50 = statistics.median(values)
        p90 = sorted(values)[int(len(values) * 0.9) - 1]
        verdict = "" if name.startswith("floor") else ("  (goal <= 200 ms: met)" if p50 <= 200 else "  (goal <= 200 ms: MISSED)")
        print(f"{name:28s} p50 {p50:7.1f} ms  p90 {p90:7.1f} ms  {p50 / floor:5.2f}x floor{verdict}")


if __name__ == "__main__":
    main()
