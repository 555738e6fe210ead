"""A teacher's pages for a big class: 30 students, 5,000 runs, 3 assignments with hand-ins.

    .venv/bin/python bench/classpage.py [--samples 15] [--grid-path /teach/classrooms/{classroom}/grid.json]

Starts its own stack (bench/stack.py: a fresh SQLite database, one real Daphne, the embedded
defaults) and fills it through the ORM: one teacher, a class of 30 students with 3 class sessions
each, 5,000 runs over those sessions (one stdout chunk each, one run in 8 failed), 3 assignments
with each student's session and 1-2 hand-ins (checks done, some graded), and a teacher's comment on
every 10th run. Then each page is fetched over HTTP as the teacher, `--samples` times in turn
(after one warm-up), and the median is reported with its ratio to the floor measured in the same
run: `/sessions/activity.json` for the teacher (no sessions of their own), an authenticated request
that does next to nothing. Also reported: each page's SQL queries (one request in-process, Django's
CaptureQueriesContext) and its size.
Pages: the class page, the live grid's `grid.json` (`--grid-path`, with `{classroom}`), an
assignment's grades.csv, the teacher's assignment page, the
watch view of one student's session (next/previous student), and that student's own page.
Goal (issue 19): each <= 300 ms on the embedded stack.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request

from stack import Stack, median_ms

GOAL_MS = 300
# The live grid's endpoint (views.classroom_grid).
DEFAULT_GRID_PATH = "/teach/classrooms/{classroom}/grid.json"

SEED = r"""
import datetime as dt, json, random
from decimal import Decimal
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from runner.models import Assignment, ChatSession, Classroom, Comment, Execution, OutputChunk, Submission

random.seed(19)
STUDENTS, RUNS, SESSIONS_EACH = {students}, {runs}, 3
User = get_user_model()
teacher = User.objects.create_user("teacher", first_name="Tess", last_name="Teacher")
classroom = Classroom.objects.create(name="Python 101")
classroom.teachers.add(teacher)
students = [User.objects.create_user(f"student{{i:02d}}", first_name=f"Student {{i:02d}}") for i in range(STUDENTS)]
classroom.students.add(*students)
now = timezone.now()
sessions = [
    ChatSession.objects.create(owner=s, title=f"{{s.username}} work {{j}}", classroom=classroom)
    for s in students for j in range(SESSIONS_EACH)
]
runs, seqs = [], {{}}
for n in range(RUNS):
    session = sessions[n % len(sessions)]
    seqs[session.pk] = seqs.get(session.pk, 0) + 1
    failed = n % 8 == 0
    at = now - dt.timedelta(minutes=RUNS - n)
    runs.append(Execution(
        session=session, seq=seqs[session.pk], code=f"x = {{n}}\nprint(x * 2)", language="python", user_id=session.owner_id,
        status="failed" if failed else "succeeded", error_name="NameError" if failed else "",
        error_value="name 'y' is not defined" if failed else "", created_at=at, started_at=at, finished_at=at,
        duration_ms=random.randint(5, 900),
    ))
Execution.objects.bulk_create(runs, batch_size=1000)
runs = list(Execution.objects.order_by("pk"))
OutputChunk.objects.bulk_create(
    [OutputChunk(execution=e, index=0, kind="stdout", text=f"{{2 * int(e.code.split()[2])}}\n") for e in runs], batch_size=1000,
)
Comment.objects.bulk_create(
    [Comment(execution=e, author=teacher, body="Look at this again.", seen_at=None if i % 20 else now)
     for i, e in enumerate(runs[::10])], batch_size=1000,
)
assignments = [
    Assignment.objects.create(classroom=classroom, title=f"Week {{k + 1}}", instructions="Do it.", points=10,
                              due_at=now - dt.timedelta(days=1 - k), checks="def check_x():\n    assert x")
    for k in range(3)
]
for a in assignments:
    for i, s in enumerate(students):
        if i % 6 == 5:
            continue  # not started
        session = ChatSession.objects.create(owner=s, title=a.title, classroom=classroom, assignment=a)
        for h in range(1 + i % 2):
            Submission.objects.create(
                assignment=a, student=s, session=session, late=h == 1, created_at=now - dt.timedelta(hours=2 - h),
                runs=[{{"code": "x = 1", "status": "succeeded", "stdout": "", "stderr": "", "error": ""}}] * 5,
                checks_status="done", checks_passed=i % 4, checks_total=3,
                score=Decimal(i % 11) if i % 3 == 0 else None,
            )
ChatSession.objects.update(last_activity_at=now)
watched = ChatSession.objects.filter(owner=students[STUDENTS // 2], classroom=classroom, assignment=None).first()
client = Client()
client.force_login(teacher)
cookie = f"{{settings.SESSION_COOKIE_NAME}}={{client.cookies[settings.SESSION_COOKIE_NAME].value}}"
student = Client()
student.force_login(watched.owner)
student_cookie = f"{{settings.SESSION_COOKIE_NAME}}={{student.cookies[settings.SESSION_COOKIE_NAME].value}}"
print(json.dumps({{"classroom": classroom.pk, "assignment": assignments[0].pk, "session": str(watched.pk),
                  "cookie": cookie, "student_cookie": student_cookie, "runs": Execution.objects.count(),
                  "submissions": Submission.objects.count()}}))
"""

QUERIES = r"""
import json
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
out = []
for who, path in {pages!r}:
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=who))
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    out.append([response.status_code, len(queries)])
print(json.dumps(out))
"""


def fetch(port: int, path: str, cookie: str) -> tuple[float, int]:
    """One GET; (seconds to the last byte, body bytes). Raises on a non-200."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Cookie": cookie})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: HTTP {response.status}")
    return time.perf_counter() - t0, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--grid-path", default=DEFAULT_GRID_PATH, help="the class grid's URL, with {classroom}")
    args = parser.parse_args()

    stack = Stack(servers=1)
    try:
        t0 = time.perf_counter()
        seed = json.loads(stack.manage(SEED.format(students=args.students, runs=args.runs)).strip().splitlines()[-1])
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; 1 Daphne on SQLite, in-memory layer")
        print(f"class: {args.students} students, {seed['runs']} runs, 3 assignments, {seed['submissions']} hand-ins "
              f"(seeded in {time.perf_counter() - t0:.0f} s); {args.samples} samples each, medians")
        classroom, assignment, session = seed["classroom"], seed["assignment"], seed["session"]
        teacher, student = seed["cookie"], seed["student_cookie"]
        pages = [
            ("floor: activity.json", "/sessions/activity.json", teacher, "teacher"),
            ("class page", f"/teach/classrooms/{classroom}/", teacher, "teacher"),
            ("grid.json", args.grid_path.format(classroom=classroom), teacher, "teacher"),
            ("grades.csv", f"/teach/assignments/{assignment}/grades.csv", teacher, "teacher"),
            ("assignment page", f"/teach/assignments/{assignment}/", teacher, "teacher"),
            ("watch view", f"/sessions/{session}/", teacher, "teacher"),
            ("student's page", f"/sessions/{session}/", student, "student"),
        ]
        watched_owner = stack.manage(
            f"from runner.models import ChatSession; print(ChatSession.objects.get(pk='{session}').owner.username)"
        ).strip().splitlines()[-1]
        who = [("teacher" if role == "teacher" else watched_owner, path) for _, path, _, role in pages]
        queries = json.loads(stack.manage(QUERIES.format(pages=who)).strip().splitlines()[-1])
        port = stack.servers[0].port
        samples: dict[str, list[float]] = {label: [] for label, *_ in pages}
        sizes: dict[str, int] = {}
        for label, path, cookie, _ in pages:
            fetch(port, path, cookie)  # warm-up
        for _ in range(args.samples):
            for label, path, cookie, _ in pages:
                elapsed, size = fetch(port, path, cookie)
                samples[label].append(elapsed)
                sizes[label] = size
    finally:
        stack.stop()

    floor = median_ms(samples[pages[0][0]])
    print(f"{'page':28} {'median':>9} {'x floor':>8} {'queries':>8} {'KiB':>7}   goal <= {GOAL_MS} ms")
    for (label, path, _, role), (status, n_queries) in zip(pages, queries):
        if status != 200:
            raise SystemExit(f"{label}: HTTP {status} in-process")
        ms = median_ms(samples[label])
        verdict = "" if label.startswith("floor") else ("ok" if ms <= GOAL_MS else "OVER")
        print(f"{label:28} {ms:7.1f} ms {ms / floor:7.1f}x {n_queries:8d} {sizes[label] / 1024:7.1f}   {verdict}")


if __name__ == "__main__":
    main()
