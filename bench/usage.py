"""The admin usage report and its CSV over 1,000 users, 100,000 runs and 20,000 leases.

    .venv/bin/python bench/usage.py [--n 15] [--database-url postgres://…/sandpit_bench] [--redis-url redis://…]

Without --database-url: a SQLite file in a temp dir (the embedded default, WAL as in settings).
With it: that database (created and migrated if needed; seeded once, reused on later runs).
Seeds 1,000 users with 2 sessions each (in 40 classes of 25, every fifth user in two), 100,000 runs and 20,000 leases (50 still open, live in
the last two hours; many crossing midnight) spread over the last 30 days, then times, as a logged-in staff user through
Django's full request stack (middleware, templates):
- the usage page over those 30 days (`/admin/usage/?start=…&end=…`), sorted by cost, and again
  sorted by last activity (the table shows 100 users a page; the query covers all 1,000);
- the CSV of the same range, streamed to the end; the page filtered to one class (its students,
  with the class's total); every page includes the per-class breakdown;
- the floor, measured in the same run: the stock admin changelist of runs (`/admin/runner/execution/`,
  a count and a page of the same 100,000 rows), so the ratio says what the report costs
  beyond a plain admin page. Samples alternate. Goal: report and CSV under 300 ms p50.
Then what a per-user rate limit costs each websocket frame: `ratelimit_hit` against an empty hop
to the database thread (the database cache, or Redis with --redis-url).
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

USERS = 1_000
RUNS = 100_000
LEASES = 20_000
OPEN_LEASES = 50
DAYS = 30


def _setup(database_url: str | None, redis_url: str | None) -> str:
    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='sandpit-bench-usage-')}/db.sqlite3"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.pop("REDIS_URL", None)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
        os.environ["CHANNEL_PREFIX"] = "sandpit-bench-usage"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return database_url


def _seed() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from runner.models import ChatSession, Execution, SandboxLease

    User = get_user_model()
    if Execution.objects.count() >= RUNS:
        return
    rng = random.Random(8)
    now = timezone.now()
    began = time.monotonic()
    with transaction.atomic():
        users = User.objects.bulk_create([User(username=f"bench{i:04d}", password="!") for i in range(USERS)], batch_size=500)
        if users[0].pk is None:  # backends that don't return ids
            users = list(User.objects.filter(username__startswith="bench").order_by("username"))
        sessions = ChatSession.objects.bulk_create(
            [ChatSession(owner=u, title=f"s{j}", backend="e2b" if j == 0 else "local") for u in users for j in range(2)], batch_size=1000
        )
        seq: dict[object, int] = {}
        runs = []
        statuses = ["succeeded"] * 16 + ["failed"] * 3 + ["timed_out"]
        for _ in range(RUNS):
            session = sessions[rng.randrange(len(sessions))]
            seq[session.pk] = seq.get(session.pk, 0) + 1
            created = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
            duration_ms = rng.randint(5, 20_000)
            runs.append(Execution(
                session=session, seq=seq[session.pk], code="print(1)", language="python", user_id=session.owner_id,
                status=rng.choice(statuses), created_at=created, started_at=created,
                finished_at=created + timedelta(milliseconds=duration_ms), duration_ms=duration_ms,
            ))
        Execution.objects.bulk_create(runs, batch_size=2000)
        leases = []
        for i in range(LEASES):
            session = sessions[rng.randrange(len(sessions))]
            # Open leases are the live sandboxes: started in the last two hours.
            started = now - timedelta(seconds=rng.uniform(0, 2 * 3600 if i < OPEN_LEASES else DAYS * 86400))
            ended = None if i < OPEN_LEASES else min(now, started + timedelta(seconds=rng.uniform(30, 3 * 3600)))
            leases.append(SandboxLease(
                user_id=session.owner_id, session=session, backend=session.backend, sandbox_id=f"bench-{i}",
                vcpus=2.0 if session.backend == "e2b" else 1.0, memory_mb=512, started_at=started, ended_at=ended,
                end_reason="" if ended is None else "idle",
            ))
        SandboxLease.objects.bulk_create(leases, batch_size=2000)
    _seed_classes()
    if connection.vendor == "postgresql":
        # What autovacuum does to a table this size within a minute: statistics and the visibility
        # map (without it Postgres can't use the covering indexes as index-only scans).
        with connection.cursor() as cursor:
            for table in ("runner_execution", "runner_sandboxlease", "auth_user", "runner_chatsession"):
                cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"seeded {USERS} users, {RUNS} runs, {LEASES} leases in {time.monotonic() - began:.1f} s")


CLASSES = 40  # of 25 students each; every fifth student is in a second class as well


def _seed_classes() -> None:
    """The per-class breakdown's data: 40 classes over the 1,000 users (idempotent)."""
    from django.contrib.auth import get_user_model

    from runner.models import Classroom

    if Classroom.objects.filter(name__startswith="bench class").exists():
        return
    users = list(get_user_model().objects.filter(username__startswith="bench0").order_by("username").values_list("pk", flat=True))
    classes = Classroom.objects.bulk_create([Classroom(name=f"bench class {i:02d}", join_code=f"bench-{i:02d}") for i in range(CLASSES)])
    classes = list(Classroom.objects.filter(name__startswith="bench class").order_by("name"))
    through = Classroom.students.through
    links = [through(classroom_id=classes[i % CLASSES].pk, user_id=pk) for i, pk in enumerate(users)]
    links += [through(classroom_id=classes[(i + 1) % CLASSES].pk, user_id=pk) for i, pk in enumerate(users) if i % 5 == 0]
    through.objects.bulk_create(links, batch_size=2000)


def _time(client: object, url: str, *, stream: bool = False) -> float:
    began = time.perf_counter()
    response = client.get(url)  # type: ignore[attr-defined]
    if stream:
        body = b"".join(response.streaming_content)
    else:
        body = response.content
    elapsed_ms = (time.perf_counter() - began) * 1000
    assert response.status_code == 200 and body, (url, response.status_code)
    return elapsed_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=15, help="samples per measurement")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default=None, help="count rate limits in Redis (else the database cache)")
    args = parser.parse_args()
    url = _setup(args.database_url, args.redis_url)
    _seed()
    _seed_classes()  # also into a database seeded before the classes were

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from runner.accounting import today_local

    staff, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(staff)
    end = today_local(now=timezone.now())
    start = end - timedelta(days=DAYS - 1)
    query = f"start={start}&end={end}"
    targets = {
        "floor: runs changelist": ("/admin/runner/execution/", False),
        "usage page (by cost)": (f"/admin/usage/?{query}", False),
        "usage page (by last active)": (f"/admin/usage/?{query}&sort=last_active&dir=desc", False),
        "usage CSV": (f"/admin/usage.csv?{query}", True),
        "usage page (one class)": (f"/admin/usage/?{query}&classroom=__class__", False),
    }
    from runner.models import Classroom

    one_class = Classroom.objects.filter(name__startswith="bench class").order_by("name").first()
    targets["usage page (one class)"] = (f"/admin/usage/?{query}&classroom={one_class.pk if one_class else 0}", False)
    for path, stream in targets.values():  # warm: templates, query plans, page cache
        _time(client, path, stream=stream)
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(args.n):
        for name, (path, stream) in targets.items():
            samples[name].append(_time(client, path, stream=stream))
    from runner.selectors.usage import usage_report

    rows = usage_report(start=start, end=end).rows
    print(f"database: {connection.vendor} ({url.split('@')[-1]}); {len(rows)} users in the 30-day report; n={args.n}")
    floor = statistics.median(samples["floor: runs changelist"])
    for name, values in samples.items():
        p50 = statistics.median(values)
        p90 = sorted(values)[int(len(values) * 0.9) - 1]
        verdict = "" if name.startswith("floor") else ("  (goal < 300 ms: met)" if p50 < 300 else "  (goal < 300 ms: MISSED)")
        print(f"{name:30s} p50 {p50:7.1f} ms  p90 {p90:7.1f} ms  {p50 / floor:5.2f}x floor{verdict}")
    _rate_limit_cost()


def _rate_limit_cost(n: int = 300) -> None:
    """What a per-user rate limit adds to each websocket frame: one `ratelimit_hit` (a thread hop
    plus the cache's increment) against an empty hop to the database thread, alternating."""
    import asyncio

    from django.conf import settings

    from runner.services.ratelimit import ratelimit_hit
    from runner.services.runtime import db

    def nothing() -> None:
        return None

    async def measure() -> tuple[list[float], list[float]]:
        empty: list[float] = []
        hit: list[float] = []
        for _ in range(n):
            began = time.perf_counter()
            await db(nothing)()
            empty.append((time.perf_counter() - began) * 1000)
            began = time.perf_counter()
            await ratelimit_hit(scope="bench", user_id=0, limit=10**9, window_s=10)
            hit.append((time.perf_counter() - began) * 1000)
        return empty, hit

    empty, hit = asyncio.run(measure())
    where = "Redis" if settings.REDIS_URL else "the database cache"
    print(f"rate limit per frame ({where}): p50 {statistics.median(hit):.3f} ms; empty hop p50 {statistics.median(empty):.3f} ms")


if __name__ == "__main__":
    main()
