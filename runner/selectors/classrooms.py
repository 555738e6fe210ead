"""Reads behind `/teach/` and the join page: a teacher's classrooms with per-student figures, and
the runs of a classroom filtered and searched."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Sum

from runner.models import ChatSession, Classroom, Execution, OutputChunk
from runner.selectors.comments import author_name
from runner.selectors.sessions import (
    LANGUAGE_LABELS,
    SessionListItem,
    StatusParts,
    duration_text,
    execution_status,
    relative_time_text,
    sidebar_items,
    status_parts,
)

RUNS_LIST_MAX = 200
_FAILED = [Execution.Status.FAILED, Execution.Status.TIMED_OUT]
_ACTIVE = Execution.ACTIVE


# The roster's and the run list's sortable columns: the `sort` value -> what it orders by.
ROSTER_SORTS = ("name", "sessions", "runs", "error_rate", "running_time", "last_run")
RUN_SORTS = {
    "when": ("created_at", "pk"),
    "student": ("session__owner__first_name", "session__owner__last_name", "session__owner__username", "created_at", "pk"),
    "session": ("session__title", "created_at", "pk"),
    "language": ("language", "created_at", "pk"),
    "status": ("status", "created_at", "pk"),
}


@dataclass(frozen=True)
class StudentRow:
    id: int
    name: str
    username: str
    sessions: int
    runs: int
    failed: int
    error_rate_text: str  # "25 %" or "–"
    error_rate: float  # -1 when no run finished (sorts before 0 %)
    running_ms: int
    running_time_text: str
    last_run_at: dt.datetime | None
    last_run_text: str
    is_running: bool


@dataclass
class ClassroomSummary:
    classroom: Classroom
    teachers: list[str]
    students: list[StudentRow] = field(default_factory=list)
    join_url: str = ""  # filled in by the view, which knows the host


@dataclass(frozen=True)
class RunRow:
    execution_id: int
    session_id: uuid.UUID
    session_title: str
    student_name: str
    seq: int
    language_label: str
    status_text: str
    status_class: str
    created_at: dt.datetime
    code_excerpt: str

    @property
    def status_parts(self) -> StatusParts:
        return status_parts(self.status_text)


@dataclass(frozen=True)
class RunFilters:
    student_id: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    language: str = ""
    failed_only: bool = False
    query: str = ""


def classroom_for_teacher(*, user: User, classroom_id: int) -> Classroom | None:
    """The classroom if `user` teaches it, else None (callers answer 404 either way)."""
    if not user.is_authenticated:
        return None
    return Classroom.objects.filter(pk=classroom_id, teachers=user).first()


def classroom_for_member(*, user: User, classroom_id: int) -> Classroom | None:
    """The classroom if `user` teaches or attends it, else None."""
    if not user.is_authenticated:
        return None
    return Classroom.objects.filter(Q(teachers=user) | Q(students=user), pk=classroom_id).distinct().first()


def classrooms_joined(*, user: User) -> list[Classroom]:
    return list(Classroom.objects.filter(students=user).prefetch_related("teachers"))


def classrooms_for_sessions(*, user: User) -> list[Classroom]:
    """The classrooms `user` may put a session of theirs in (those they attend or teach), by name."""
    if not user.is_authenticated:
        return []
    return list(Classroom.objects.filter(Q(teachers=user) | Q(students=user)).distinct().order_by("name", "pk"))


def classroom_default_for_new_session(*, user: User) -> Classroom | None:
    """The class a new session of `user` starts in on the page: their class when they are a student of
    exactly one, else None (private: with several classes the student picks, nothing is guessed)."""
    if not user.is_authenticated:
        return None
    joined = list(Classroom.objects.filter(students=user)[:2])
    return joined[0] if len(joined) == 1 else None


def _class_sessions(classroom: Classroom) -> QuerySet[ChatSession]:
    """The sessions the class's teachers see: those in the class whose owner is still its student."""
    return ChatSession.objects.filter(classroom=classroom, owner__in=classroom.students.values("pk"))


def _student_rows(classroom: Classroom, filters: RunFilters | None = None) -> list[StudentRow]:
    students = list(get_user_model().objects.filter(classrooms_joined=classroom).order_by("first_name", "last_name", "username"))
    sessions = dict(
        _class_sessions(classroom).values("owner").annotate(n=Count("pk")).values_list("owner", "n")
    )
    executions = Execution.objects.filter(session__in=_class_sessions(classroom))
    if filters is not None and filters.date_from is not None:
        executions = executions.filter(created_at__date__gte=filters.date_from)
    if filters is not None and filters.date_to is not None:
        executions = executions.filter(created_at__date__lte=filters.date_to)
    runs = {
        row["session__owner"]: row
        for row in executions
        .values("session__owner")
        .annotate(
            n=Count("pk"),
            failed=Count("pk", filter=Q(status__in=_FAILED)),
            # A run an admin or a budget stopped (killed) is neither the student's error nor a try.
            finished=Count("pk", filter=~Q(status__in=[*_ACTIVE, Execution.Status.KILLED])),
            running_ms=Sum("duration_ms"),
            last=Max("created_at"),
            active=Count("pk", filter=Q(status__in=_ACTIVE)),
        )
    }
    rows = []
    for student in students:
        figures: Mapping[str, Any] = runs.get(student.pk, {})
        finished = figures.get("finished", 0)
        last = figures.get("last")
        rows.append(
            StudentRow(
                id=student.pk,
                name=author_name(student),
                username=student.get_username(),
                sessions=sessions.get(student.pk, 0),
                runs=figures.get("n", 0),
                failed=figures.get("failed", 0),
                error_rate_text=f"{round(100 * figures.get('failed', 0) / finished)} %" if finished else "–",
                error_rate=figures.get("failed", 0) / finished if finished else -1.0,
                running_ms=figures.get("running_ms") or 0,
                running_time_text=duration_text(figures.get("running_ms") or 0),
                last_run_at=last,
                last_run_text=relative_time_text(last) if last else "never",
                is_running=figures.get("active", 0) > 0,
            )
        )
    return rows


def classrooms_for_teacher(*, user: User) -> list[ClassroomSummary]:
    """The classrooms `user` teaches, each with its roster and per-student figures."""
    classrooms = Classroom.objects.filter(teachers=user).prefetch_related("teachers")
    return [classroom_summary(classroom=classroom) for classroom in classrooms]


def _roster_key(sort: str) -> Any:
    epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    keys: dict[str, Any] = {
        "name": lambda r: (r.name.casefold(), r.username),
        "sessions": lambda r: (r.sessions, r.name.casefold()),
        "runs": lambda r: (r.runs, r.name.casefold()),
        "error_rate": lambda r: (r.error_rate, r.runs, r.name.casefold()),
        "running_time": lambda r: (r.running_ms, r.name.casefold()),
        "last_run": lambda r: (r.last_run_at or epoch, r.name.casefold()),
    }
    return keys[sort]


def classroom_summary(*, classroom: Classroom, filters: RunFilters | None = None, sort: str = "name") -> ClassroomSummary:
    """One classroom's teachers and roster with per-student figures (over `filters`' dates, when
    given), ordered by a ROSTER_SORTS column; "-column" is descending."""
    rows = _student_rows(classroom, filters)
    column = sort.lstrip("-")
    if column in ROSTER_SORTS:
        rows.sort(key=_roster_key(column), reverse=sort.startswith("-"))
    return ClassroomSummary(
        classroom=classroom,
        teachers=[author_name(t) for t in classroom.teachers.all()],
        students=rows,
    )


@dataclass(frozen=True)
class ClassroomOverview:
    """One line of `/teach/`: a class and its counts (the roster is on the class page)."""

    classroom: Classroom
    teachers: list[str]
    students: int
    sessions: int
    runs: int
    running_now: int
    assignments: int
    last_run_at: dt.datetime | None
    last_run_text: str


def classrooms_overview(*, user: User) -> list[ClassroomOverview]:
    """The classrooms `user` teaches, by name, each with its counts (a few queries per class)."""
    rows = []
    for classroom in Classroom.objects.filter(teachers=user).prefetch_related("teachers").annotate(
        n_students=Count("students", distinct=True), n_assignments=Count("assignments", distinct=True),
    ).order_by("name", "pk"):
        sessions = _class_sessions(classroom)
        figures = Execution.objects.filter(session__in=sessions).aggregate(n=Count("pk"), last=Max("created_at"))
        last = figures["last"]
        rows.append(ClassroomOverview(
            classroom=classroom,
            teachers=[author_name(t) for t in classroom.teachers.all()],
            students=classroom.n_students,  # type: ignore[attr-defined]
            sessions=sessions.count(),
            runs=figures["n"],
            running_now=len(classroom_live_students(classroom=classroom)),
            assignments=classroom.n_assignments,  # type: ignore[attr-defined]
            last_run_at=last,
            last_run_text=relative_time_text(last) if last else "never",
        ))
    return rows


def classroom_live_students(*, classroom: Classroom) -> list[int]:
    """Ids of the classroom's students with a run queued or running now (the roster's live dots)."""
    active = Execution.objects.filter(session__owner=OuterRef("pk"), session__classroom=classroom, status__in=_ACTIVE)
    return list(
        get_user_model().objects.filter(classrooms_joined=classroom).filter(Exists(active)).values_list("pk", flat=True)
    )


def classroom_student_sessions(*, classroom: Classroom, student_id: int) -> list[ChatSession]:
    """One student's sessions in the classroom (newest activity first), if they are still in it; else []."""
    return list(_class_sessions(classroom).filter(owner_id=student_id).order_by("-last_activity_at")[:100])


def classroom_sessions_for_sidebar(*, classroom: Classroom, query: str = "") -> list[SessionListItem]:
    """The class's sessions (of its current students) as a watching teacher's sidebar, newest first."""
    return sidebar_items(_class_sessions(classroom), query=query, with_owner=True)


def classroom_runs_count(*, classroom: Classroom, filters: RunFilters) -> int:
    """How many runs `classroom_runs` pages through ("200 of 516")."""
    return _filtered_runs(classroom, filters).count()


def classroom_runs(
    *, classroom: Classroom, filters: RunFilters, limit: int = RUNS_LIST_MAX, offset: int = 0, sort: str = "-when",
) -> list[RunRow]:
    """Runs in the classroom's sessions (of its current students), narrowed by `filters`, ordered by
    a RUN_SORTS column ("-column" descending; newest first by default), `limit` of them from `offset`;
    `query` searches the code and the output text (case-insensitive)."""
    fields = RUN_SORTS.get(sort.lstrip("-"), RUN_SORTS["when"])
    descending = sort.startswith("-") or sort.lstrip("-") not in RUN_SORTS
    order = [f"-{f}" if descending else f for f in fields]
    rows = []
    page = (
        _filtered_runs(classroom, filters).select_related("session", "session__owner").only(*_RUN_ROW_FIELDS)
        .order_by(*order)[offset:offset + limit]
    )
    for execution in page:
        text, cls = execution_status(execution)
        first_line = execution.code.strip().splitlines()[0] if execution.code.strip() else ""
        rows.append(
            RunRow(
                execution_id=execution.pk,
                session_id=execution.session_id,
                session_title=execution.session.title,
                student_name=author_name(execution.session.owner),
                seq=execution.seq,
                language_label=LANGUAGE_LABELS.get(execution.language, execution.language),
                status_text=text,
                status_class=cls,
                created_at=execution.created_at,
                code_excerpt=first_line[:120],
            )
        )
    return rows


# What a RunRow reads (execution_status included): the rest of each run (its traceback) stays in the database.
_RUN_ROW_FIELDS = (
    "session_id", "seq", "code", "language", "status", "error_name", "error_value", "duration_ms", "created_at",
    "session__title", "session__owner__first_name", "session__owner__last_name", "session__owner__username",
)


def _filtered_runs(classroom: Classroom, filters: RunFilters) -> QuerySet[Execution]:
    runs = Execution.objects.filter(session__in=_class_sessions(classroom))
    if filters.student_id is not None:
        runs = runs.filter(session__owner_id=filters.student_id)
    if filters.date_from is not None:
        runs = runs.filter(created_at__date__gte=filters.date_from)
    if filters.date_to is not None:
        runs = runs.filter(created_at__date__lte=filters.date_to)
    if filters.language:
        runs = runs.filter(language=filters.language)
    if filters.failed_only:
        runs = runs.filter(status__in=_FAILED)
    if filters.query:
        in_output = OutputChunk.objects.filter(execution=OuterRef("pk"), text__icontains=filters.query)
        runs = runs.filter(Q(code__icontains=filters.query) | Q(error_value__icontains=filters.query) | Exists(in_output))
    return runs



def user_teaches(*, user: User) -> bool:
    """Whether `user` teaches at least one classroom (a teacher, as far as the page is concerned)."""
    return bool(user.is_authenticated and Classroom.objects.filter(teachers=user).exists())
