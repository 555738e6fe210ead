"""The class page's live grid: one row per current student of a class, from what the server stores.

- **State.** `running`: a run of theirs is queued or running in one of the class's sessions.
  `idle`: no run going, but a live sandbox (an open lease) on one of those sessions; the idle
  reaper closes it after SANDBOX_IDLE_TIMEOUT_S without a run. `offline`: neither.
- **Failures in a row**: their class runs that failed or timed out since their last succeeded
  one, newest first across sessions; runs that are neither (stopped, killed, interrupted,
  rejected, still going) neither count nor break the row.
- **Stuck**: CLASS_STUCK_FAILURES failures in a row, or the last decided run failed and no run
  has started or finished for CLASS_STUCK_IDLE_S (and none is going); neither once the newest run
  is older than CLASS_STUCK_WITHIN_S (an earlier lesson's failures are not "stuck now").

A grid is eight queries whatever the class's size or its number of runs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass
from functools import reduce
from operator import or_
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Max, Q
from django.utils import timezone

from runner.models import Assignment, ChatSession, Classroom, Execution, SandboxLease, Submission
from runner.selectors.comments import author_name
from runner.selectors.sessions import relative_time_text

_FAILED = [Execution.Status.FAILED, Execution.Status.TIMED_OUT]
_ACTIVE = [Execution.Status.QUEUED, Execution.Status.RUNNING]
STATE_TEXT = {"running": "Running now", "idle": "Idle", "offline": "Offline"}


@dataclass(frozen=True)
class GridTile:
    student_id: int
    name: str
    username: str
    state: str  # "running" | "idle" | "offline"
    state_text: str
    last_run_at: dt.datetime | None
    last_run_text: str  # "3 min ago", or "never"
    failures_in_row: int
    last_error: str  # the newest failure's error name ("NameError"), "" when the row is 0
    stuck: bool
    stuck_reason: str  # "3 failures in a row" / "failed, idle 6 min" / ""
    handed_in: int  # assignments of the class with a hand-in from them
    assignments: int
    session_id: uuid.UUID | None  # their class session with the newest activity (the watch link)

    @property
    def progress_text(self) -> str:
        return f"{self.handed_in} of {self.assignments} handed in" if self.assignments else "no assignments"

    def as_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["last_run_at"] = self.last_run_at.isoformat() if self.last_run_at else None
        row["session_id"] = str(self.session_id) if self.session_id else None
        row["progress_text"] = self.progress_text
        return row


def _run_figures(sessions: Any) -> dict[int, dict[str, Any]]:
    """Per owner: the newest run's start, the newest finish, the last success, runs going now."""
    rows = (
        Execution.objects.filter(session__in=sessions).values("session__owner")
        .annotate(
            last=Max("created_at"), last_finished=Max("finished_at"),
            last_ok=Max("created_at", filter=Q(status=Execution.Status.SUCCEEDED)),
            active=Count("pk", filter=Q(status__in=_ACTIVE)),
        )
    )
    return {row["session__owner"]: row for row in rows}


def _failure_rows(sessions: Any, figures: dict[int, dict[str, Any]]) -> dict[int, tuple[int, str]]:
    """Per owner with failures since their last success: (how many, the newest one's error name)."""
    if not figures:
        return {}
    since_ok = reduce(or_, [
        Q(session__owner=owner) & (Q(created_at__gt=row["last_ok"]) if row["last_ok"] else Q())
        for owner, row in figures.items()
    ])
    failures = Execution.objects.filter(since_ok, session__in=sessions, status__in=_FAILED)
    counts = {
        row["session__owner"]: (row["n"], row["newest"])
        for row in failures.values("session__owner").annotate(n=Count("pk"), newest=Max("created_at"))
    }
    if not counts:
        return {}
    newest = reduce(or_, [Q(session__owner=owner, created_at=at) for owner, (_, at) in counts.items()])
    names = dict(failures.filter(newest).order_by("pk").values_list("session__owner", "error_name"))
    return {owner: (n, names.get(owner, "") or "error") for owner, (n, _) in counts.items()}


def _stuck(*, failures: int, running: bool, last_moment: dt.datetime | None, now: dt.datetime) -> str:
    """Why the student counts as stuck, or "" (the module's docstring gives the two rules)."""
    if not failures or last_moment is None:
        return ""
    idle_s = (now - last_moment).total_seconds()
    if idle_s > settings.CLASS_STUCK_WITHIN_S and not running:
        return ""  # an earlier lesson's failures: not stuck now
    if failures >= settings.CLASS_STUCK_FAILURES:
        return f"{failures} failures in a row"
    if not running and idle_s >= settings.CLASS_STUCK_IDLE_S:
        return f"failed, idle {max(1, round(idle_s / 60))} min"
    return ""


def _latest_sessions(sessions: Any) -> dict[int, uuid.UUID]:
    latest: dict[int, uuid.UUID] = {}
    for owner, pk in sessions.order_by("last_activity_at").values_list("owner", "pk"):
        latest[owner] = pk  # the newest activity comes last
    return latest


def classroom_grid(*, classroom: Classroom, now: dt.datetime | None = None) -> list[GridTile]:
    """One tile per current student of `classroom` (by name), from the class's sessions only."""
    now = now or timezone.now()
    students = list(get_user_model().objects.filter(classrooms_joined=classroom).order_by("first_name", "last_name", "username"))
    sessions = ChatSession.objects.filter(classroom=classroom, owner__in=[s.pk for s in students])
    figures = _run_figures(sessions)
    failures = _failure_rows(sessions, figures)
    live = set(
        SandboxLease.objects.filter(ended_at__isnull=True, session__in=sessions).values_list("session__owner", flat=True)
    )
    assignments = Assignment.objects.filter(classroom=classroom).count()
    handed_in = dict(
        Submission.objects.handed_in().filter(assignment__classroom=classroom).values("student")
        .annotate(n=Count("assignment", distinct=True)).values_list("student", "n")
    )
    latest = _latest_sessions(sessions)
    tiles = []
    for student in students:
        row = figures.get(student.pk, {})
        running = row.get("active", 0) > 0
        state = "running" if running else "idle" if student.pk in live else "offline"
        count, error = failures.get(student.pk, (0, ""))
        moments = [m for m in (row.get("last"), row.get("last_finished")) if m is not None]
        reason = _stuck(failures=count, running=running, last_moment=max(moments) if moments else None, now=now)
        last = row.get("last")
        tiles.append(GridTile(
            student_id=student.pk, name=author_name(student), username=student.get_username(), state=state,
            state_text=STATE_TEXT[state], last_run_at=last, last_run_text=relative_time_text(last, now=now) if last else "never",
            failures_in_row=count, last_error=error, stuck=bool(reason), stuck_reason=reason,
            handed_in=handed_in.get(student.pk, 0), assignments=assignments, session_id=latest.get(student.pk),
        ))
    return tiles
