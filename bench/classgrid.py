"""The class page's live grid (`/teach/classrooms/<id>/grid.json`, polled every 4 s by each open
class page) and the class page that renders it, for a class of 30 students with 5,000 runs.

    .venv/bin/python bench/classgrid.py [--n 21] [--database-url postgres://…/sandpit_bench]

Without --database-url: a SQLite file in a temp dir (the embedded default). With it: that database
(migrated if needed; seeded once, reused on later runs).
Seeds one class of 30 students, 3 class sessions each, 5,000 runs over the last 7 days (a fifth
failed, the newest ones of some students failing in a row), an open lease for 10 of them, 3
assignments with hand-ins from most students; and, as noise the queries must skip, a second class
of 30 with 20,000 runs of its own. Then times, as the class's teacher through Django's full request
stack, alternating samples:
- the floor, in the same run: `live.json` (the roster's live dots: one small query, same middleware);
- `grid.json`; the class page (grid, roster, runs list and assignments).
Reported: p50 and p90, and p50 as a ratio of the floor. Goal (issue 19): <= 300 ms p50 each.
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

STUDENTS = 30
SESSIONS_EACH = 3
RUNS = 5_000
NOISE_RUNS = 20_000
DAYS = 7


def _setup(database_url: str | None) -> str:
    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='sandpit-bench-grid-')}/db.sqlite3"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return database_url


def _seed_class(name: str, runs: int, rng: random.Random) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from runner.models import Assignment, ChatSession, Classroom, Execution, SandboxLease, Submission

    User = get_user_model()
    now = timezone.now()
    classroom = Classroom.objects.create(name=name, join_code=f"bench-{name}")
    teacher = User.objects.create_user(f"{name}-teacher")
    classroom.teachers.add(teacher)
    students = [User.objects.create_user(f"{name}-s{i:02d}", first_name=f"Student {i:02d}") for i in range(STUDENTS)]
    classroom.students.add(*students)
    sessions = ChatSession.objects.bulk_create(
        [ChatSession(owner=s, title=f"work {j}", classroom=classroom) for s in students for j in range(SESSIONS_EACH)]
    )
    seq: dict[object, int] = {}
    rows = []
    moments = sorted(now - timedelta(seconds=rng.uniform(60, DAYS * 86400)) for _ in range(runs))
    for created in moments:
        session = sessions[rng.randrange(len(sessions))]
        seq[session.pk] = seq.get(session.pk, 0) + 1
        failed = rng.random() < 0.2 or (created > now - timedelta(hours=1) and session.owner_id % 4 == 0)
        rows.append(Execution(
            session=session, seq=seq[session.pk], code="print(1)", language="python", user_id=session.owner_id,
            status="failed" if failed else "succeeded", error_name="NameError" if failed else "",
            created_at=created, started_at=created, finished_at=created + timedelta(milliseconds=40), duration_ms=40,
        ))
    Execution.objects.bulk_create(rows, batch_size=2000)
    SandboxLease.objects.bulk_create([
        SandboxLease(user=s, session=sessions[i * SESSIONS_EACH], backend="local", sandbox_id=f"{name}-{i}")
        for i, s in enumerate(students[:10])
    ])
    for k in range(3):
        assignment = Assignment.objects.create(classroom=classroom, title=f"Assignment {k}")
        Submission.objects.bulk_create([
            Submission(assignment=assignment, student=s, checks_status="done") for s in students if rng.random() < 0.8
        ])


def _seed() -> str:
    from django.db import connection, transaction

    from runner.models import Classroom

    if not Classroom.objects.filter(name="grid").exists():
        began = time.monotonic()
        rng = random.Random(19)
        with transaction.atomic():
            _seed_class("grid", RUNS, rng)
            _seed_class("noise", NOISE_RUNS, rng)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")
        print(f"seeded 2 classes of {STUDENTS} ({RUNS} + {NOISE_RUNS} runs) in {time.monotonic() - began:.1f} s")
    return "grid"


def _time(client: object, url: str) -> float:
    began = time.perf_counter()
    response = client.get(url)  # type: ignore[attr-defined]
    body = response.content
    elapsed_ms = (time.perf_counter() - began) * 1000
    assert response.status_code == 200 and body, (url, response.status_code)
    return elapsed_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=21, help="samples per measurement")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    url = _setup(args.database_url)
    name = _seed()

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from runner.models import Classroom

    classroom = Classroom.objects.get(name=name)
    client = Client()
    client.force_login(get_user_model().objects.get(username=f"{name}-teacher"))
    base = f"/teach/classrooms/{classroom.pk}/"
    targets = {"floor: live.json": base + "live.json", "grid.json": base + "grid.json", "class page": base}
    for path in targets.values():  # warm: templates, query plans
        _time(client, path)
    samples: dict[str, list[float]] = {label: [] for label in targets}
    for _ in range(args.n):
        for label, path in targets.items():
            samples[label].append(_time(client, path))
    print(f"database: {connection.vendor} ({url.split('@')[-1]}); {STUDENTS} students, {RUNS} runs in the class; n={args.n}")
    floor = statistics.median(samples["floor: live.json"])
    for label, values in samples.items():
        p50 = statistics.median(values)
        p90 = sorted(values)[int(len(values) * 0.9) - 1]
        verdict = "" if label.startswith("floor") else ("  (goal <= 300 ms: met)" if p50 <= 300 else "  (goal <= 300 ms: MISSED)")
        print(f"{label:18s} p50 {p50:7.1f} ms  p90 {p90:7.1f} ms  {p50 / floor:5.2f}x floor{verdict}")


if __name__ == "__main__":
    main()
