"""Search over a user's own runs (runner.selectors.runs_search) for a user with 10,000 runs.

    .venv/bin/python bench/search.py [--runs 10000] [--others 2] [--n 30]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<scratch db> .venv/bin/python bench/search.py

Without DATABASE_URL it builds a fresh SQLite file in /tmp (WAL, as the server runs it) and
deletes it afterwards; with one, it migrates that database, adds its rows under users named
bench-search-*, and deletes them afterwards. The user searched has --runs runs (100 per session,
code plus three output chunks each); --others more users have as many runs over the same
vocabulary, so every query must skip their matches. Last, what the search triggers add to
storing runs (ms per row, bulk inserts, with and without them: the latter in a transaction rolled back). Each query is timed --n times (medians and p95
in ms), against a floor measured in the same run: one session's newest 50 runs by index, what the
chat page reads to show a session anyway. The user searched is created first, so every other
user's matches are newer than theirs (the worst case for "newest first").
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
_scratch = None
if not os.environ.get("DATABASE_URL"):
    _scratch = Path(tempfile.mkdtemp(prefix="sandpit-bench-search-")) / "db.sqlite3"
    os.environ["DATABASE_URL"] = f"sqlite:///{_scratch}"

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from runner.models import ChatSession, Execution, OutputChunk  # noqa: E402
from runner.selectors import runs_search  # noqa: E402

RUNS_PER_SESSION = 100
QUERIES = {
    "rare word (5 runs)": "zebra",
    "common word (every run)": "dataframe",
    "two words": "mean temperature",
    "no match": "xylophone",
    "prefix of the common word": "datafr",
    "two-letter prefix (many words)": "ka",
}


def vocabulary(rng: random.Random) -> list[str]:
    syllables = ["ka", "lo", "mi", "ra", "to", "ve", "su", "ne", "pi", "da", "go", "fu", "te", "bo"]
    return sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(3000)})


def populate(user, runs: int, rng: random.Random, words: list[str], *, rare: int) -> None:
    """`runs` runs of `user`: code and three chunks of output each, a few with the rare word."""
    rare_at = set(rng.sample(range(runs), rare))
    now = timezone.now()
    for first in range(0, runs, RUNS_PER_SESSION):
        with transaction.atomic():
            session = ChatSession.objects.create(owner=user, title=f"Analysis {first // RUNS_PER_SESSION} {rng.choice(words)}")
            executions = []
            for seq in range(1, min(RUNS_PER_SESSION, runs - first) + 1):
                i = first + seq - 1
                code = (f"df = dataframe_load('{rng.choice(words)}.csv')\n"
                        f"result_{i} = df['{rng.choice(words)}'].{rng.choice(['mean', 'sum', 'max'])}()\nprint(result_{i})")
                executions.append(Execution(session=session, seq=seq, code=code, language="python", user=user,
                                            status="succeeded", created_at=now, duration_ms=12))
            Execution.objects.bulk_create(executions)
            chunks = []
            for execution in Execution.objects.filter(session=session).only("id", "seq"):
                i = first + execution.seq - 1
                for index in range(3):
                    text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))
                    if index == 0:
                        text = f"dataframe with {rng.randint(10, 9999)} rows\n" + text
                    if index == 1 and rng.random() < 0.3:
                        text += "\nmean temperature 21.4\n"
                    if index == 2 and i in rare_at:
                        text += "\na zebra appeared\n"
                    chunks.append(OutputChunk(execution=execution, index=index, kind="stdout", text=text + "\n"))
            OutputChunk.objects.bulk_create(chunks)


def timed(fn, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]


class _Rollback(Exception):
    pass


_search_migration = importlib.import_module("runner.migrations.0007_search")
# The migration's own statements that drop its triggers (not its table).
TRIGGERS = {
    vendor: [statement for statement in statements if statement.startswith("DROP TRIGGER")]
    for vendor, statements in (("sqlite", _search_migration.SQLITE_DROP), ("postgresql", _search_migration.POSTGRES_DROP))
}


def write_cost(user, rng: random.Random, words: list[str], runs: int = 200, rounds: int = 5) -> None:
    """What the search triggers add to storing runs: the same rows written with them and (in a
    transaction rolled back at the end) with them dropped."""
    timings: dict[str, list[float]] = {"with": [], "without": []}
    try:
        with transaction.atomic():
            for kind in ("with", "without"):
                if kind == "without":
                    with connection.cursor() as cursor:
                        for statement in TRIGGERS[connection.vendor]:
                            cursor.execute(statement)
                for _ in range(rounds):
                    timings[kind].append(_timed_write(user, rng, words, runs))
            raise _Rollback
    except _Rollback:
        pass
    with_ms, without_ms = statistics.median(timings["with"]), statistics.median(timings["without"])
    print(f"{'storing a row (run or chunk)':32s} with triggers {with_ms:.3f} ms, without {without_ms:.3f} ms "
          f"({with_ms / without_ms:.2f}x)")


def _timed_write(user, rng: random.Random, words: list[str], runs: int) -> float:
    """ms per row to bulk-insert `runs` runs and three 1 KiB-ish chunks each (rows built untimed)."""
    session = ChatSession.objects.create(owner=user, title="write cost")
    executions = [Execution(session=session, seq=seq, code=f"print(df['{rng.choice(words)}'].mean())",
                            language="python", user=user, status="succeeded") for seq in range(1, runs + 1)]
    started = time.perf_counter()
    Execution.objects.bulk_create(executions)
    elapsed = time.perf_counter() - started
    chunks = [OutputChunk(execution=e, index=i, kind="stdout", text=" ".join(rng.choice(words) for _ in range(150)))
              for e in Execution.objects.filter(session=session) for i in range(3)]
    started = time.perf_counter()
    OutputChunk.objects.bulk_create(chunks)
    elapsed += time.perf_counter() - started
    return elapsed * 1000 / (runs + len(chunks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=2)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the rows afterwards (to EXPLAIN queries)")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    User = get_user_model()
    User.objects.filter(username__startswith="bench-search-").delete()
    rng = random.Random(7)
    words = vocabulary(rng)
    started = time.perf_counter()
    user = User.objects.create_user("bench-search-me")
    populate(user, args.runs, rng, words, rare=5)
    for k in range(args.others):
        populate(User.objects.create_user(f"bench-search-other-{k}"), args.runs, rng, words, rare=50)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    total = Execution.objects.count()
    print(f"database: {connection.vendor}; {args.runs} runs for the user searched, {total} runs and "
          f"{OutputChunk.objects.count()} output chunks in all; built in {time.perf_counter() - started:.1f} s")

    try:
        newest_session = ChatSession.objects.filter(owner=user).order_by("-created_at").first()

        def floor() -> None:
            list(Execution.objects.filter(session=newest_session).order_by("-seq")[:50])

        floor_ms = timed(floor, args.n)
        floor_median = statistics.median(floor_ms)
        print(f"{'floor: one session, 50 runs':32s} median {floor_median:7.2f} ms   p95 {p95(floor_ms):7.2f} ms")
        for label, query in QUERIES.items():
            hits = runs_search(user=user, query=query)
            assert all(h.session_title.startswith("Analysis") for h in hits)
            samples = timed(lambda q=query: runs_search(user=user, query=q), args.n)
            median = statistics.median(samples)
            print(f"{label:32s} median {median:7.2f} ms   p95 {p95(samples):7.2f} ms   "
                  f"{median / floor_median:6.1f}x floor   {len(hits)} hits")
        write_cost(user, rng, words)
    finally:
        if not args.keep:
            User.objects.filter(username__startswith="bench-search-").delete()
        if _scratch is not None:
            connection.close()
            for leftover in _scratch.parent.iterdir():
                leftover.unlink()
            _scratch.parent.rmdir()


if __name__ == "__main__":
    main()
