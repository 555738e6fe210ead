"""Reads for assignments: who may see one, a student's list and page, the teacher's grid of
students, a submission read-only, the grades CSV's rows and the class's export (a streamed zip)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import nbformat
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Count, QuerySet
from django.utils import timezone

from runner.models import Assignment, ChatSession, Classroom, Execution, Submission, SubmissionFile
from runner.selectors.comments import author_name
from runner.selectors.exports import session_export_notebook
from runner.selectors.rendering import markdown_to_safe_html
from runner.selectors.spreadsheet import CsvEcho, csv_safe

GRADES_HEADER = ["student", "name", "handed_in_at", "late", "checks_passed", "checks_total", "score", "points", "hand_ins"]


def assignment_for_teacher(*, user: User, assignment_id: int) -> Assignment | None:
    """The assignment if `user` teaches its class, else None (callers answer 404 either way)."""
    return Assignment.objects.select_related("classroom").filter(pk=assignment_id, classroom__teachers=user).first()


def assignment_for_student(*, user: User, assignment_id: int) -> Assignment | None:
    """The assignment if `user` is a student of its class, else None."""
    return Assignment.objects.select_related("classroom").filter(pk=assignment_id, classroom__students=user).first()


def submission_for_teacher(*, user: User, submission_id: int) -> Submission | None:
    """A hand-in of a current student of a class `user` teaches, else None."""
    submission = (
        Submission.objects.select_related("assignment__classroom", "student")
        .filter(pk=submission_id, is_hand_in=True, assignment__classroom__teachers=user).first()
    )
    if submission is None or not submission.assignment.classroom.students.filter(pk=submission.student_id).exists():
        return None
    return submission


def assignment_instructions_html(*, assignment: Assignment) -> str:
    """The instructions' markdown rendered and sanitised, as the page's other markdown is."""
    return markdown_to_safe_html(assignment.instructions) if assignment.instructions.strip() else ""


def due_text(due_at: dt.datetime | None, *, now: dt.datetime | None = None) -> str:
    if due_at is None:
        return "no due date"
    local = timezone.localtime(due_at)
    text = f"due {local:%a %d %b %Y, %H:%M}"
    return text + (" (past)" if due_at < (now or timezone.now()) else "")


@dataclass(frozen=True)
class StudentState:
    """One student's state on one assignment."""

    state: str  # "not_started" | "working" | "handed_in" | "late"
    state_text: str
    session_id: uuid.UUID | None
    hand_in: Submission | None  # the last one: it counts
    hand_ins: int
    last_check: Submission | None  # the newest submission of either kind with finished or pending checks
    graded: Submission | None  # the newest graded hand-in (an earlier one when handed in again since)


_STATE_TEXT = {"not_started": "Not started", "working": "Working", "handed_in": "Handed in", "late": "Handed in late"}


def _state(session_id: uuid.UUID | None, hand_in: Submission | None) -> str:
    if hand_in is not None:
        return "late" if hand_in.late else "handed_in"
    return "working" if session_id is not None else "not_started"


def assignment_student_state(*, assignment: Assignment, student: User) -> StudentState:
    session_id = ChatSession.objects.filter(owner=student, assignment=assignment).values_list("pk", flat=True).first()
    submissions = Submission.objects.filter(assignment=assignment, student=student).defer("runs")
    hand_in = submissions.filter(is_hand_in=True).first()
    state = _state(session_id, hand_in)
    return StudentState(
        state=state, state_text=_STATE_TEXT[state], session_id=session_id, hand_in=hand_in,
        hand_ins=submissions.filter(is_hand_in=True).count(), last_check=submissions.first(),
        graded=submissions.filter(is_hand_in=True, graded_at__isnull=False).first(),
    )


@dataclass(frozen=True)
class StudentAssignmentRow:
    assignment: Assignment
    due_text: str
    status: StudentState


def assignments_for_student(*, user: User) -> list[StudentAssignmentRow]:
    """The assignments of every class `user` attends, soonest due first, each with their own state."""
    assignments = Assignment.objects.filter(classroom__students=user).select_related("classroom")
    return [
        StudentAssignmentRow(a, due_text(a.due_at), assignment_student_state(assignment=a, student=user))
        for a in assignments.order_by("due_at", "pk")
    ]


def student_has_assignments(*, user: User) -> bool:
    return Assignment.objects.filter(classroom__students=user).exists()


@dataclass(frozen=True)
class GridRow:
    student_id: int
    name: str
    username: str
    state: str
    state_text: str
    session_id: uuid.UUID | None
    runs: int
    hand_in: Submission | None
    hand_ins: int


def _students(classroom: Classroom) -> list[User]:
    return list(get_user_model().objects.filter(classrooms_joined=classroom).order_by("first_name", "last_name", "username"))


def assignment_grid(*, assignment: Assignment) -> list[GridRow]:
    """One row per current student of the class: their state, runs, last hand-in (checks, score)."""
    students = _students(assignment.classroom)
    sessions = dict(
        ChatSession.objects.filter(assignment=assignment, owner__in=students).values_list("owner_id", "pk")
    )
    runs: dict[uuid.UUID, int] = dict(
        Execution.objects.filter(session_id__in=list(sessions.values())).values("session_id")
        .annotate(n=Count("pk")).values_list("session_id", "n")
    )
    latest: dict[int, Submission] = {}
    counts: dict[int, int] = {}
    for submission in Submission.objects.handed_in().filter(assignment=assignment).defer("runs").order_by("created_at", "pk"):
        latest[submission.student_id] = submission
        counts[submission.student_id] = counts.get(submission.student_id, 0) + 1
    rows = []
    for student in students:
        session_id: uuid.UUID | None = sessions.get(student.pk)
        hand_in = latest.get(student.pk)
        state = _state(session_id, hand_in)
        rows.append(GridRow(
            student.pk, author_name(student), student.get_username(), state, _STATE_TEXT[state], session_id,
            runs.get(session_id, 0) if session_id else 0, hand_in, counts.get(student.pk, 0),
        ))
    return rows


def assignments_for_classroom(*, classroom: Classroom) -> list[tuple[Assignment, dict[str, int]]]:
    """The class's assignments with how many current students are in each state (`assignment_grid`'s
    states, counted in four queries whatever the number of assignments)."""
    assignments = list(Assignment.objects.filter(classroom=classroom).order_by("due_at", "pk"))
    students = set(get_user_model().objects.filter(classrooms_joined=classroom).values_list("pk", flat=True))
    started = set(
        ChatSession.objects.filter(assignment__in=assignments, owner__in=students).values_list("assignment_id", "owner_id")
    )
    late: dict[tuple[int, int], bool] = {}  # (assignment, student) -> whether the last hand-in was late
    hand_ins = Submission.objects.handed_in().filter(assignment__in=assignments, student__in=students)
    for assignment_id, student_id, was_late in hand_ins.order_by("created_at", "pk").values_list("assignment_id", "student_id", "late"):
        late[(assignment_id, student_id)] = was_late
    result = []
    for assignment in assignments:
        counts = {"not_started": 0, "working": 0, "handed_in": 0, "late": 0}
        for student_id in students:
            key = (assignment.pk, student_id)
            state = ("late" if late[key] else "handed_in") if key in late else "working" if key in started else "not_started"
            counts[state] += 1
        result.append((assignment, counts))
    return result


@dataclass(frozen=True)
class CheckRow:
    label: str
    passed: bool
    message: str


def check_rows(*, submission: Submission | None, reveal: bool) -> list[CheckRow]:
    """A submission's check results for display. Without `reveal` (a student, checks hidden) an
    assert block's check shows as "check N" and a bare assert's failure as "Failed." (its source
    would show the hidden check's code); the teacher's own messages and docstrings always show."""
    if submission is None:
        return []
    rows = []
    for result in submission.check_results:
        name, description = str(result.get("name", "")), str(result.get("description", ""))
        message = str(result.get("message", ""))
        is_block = not name.startswith("check_")
        if is_block and not reveal:
            label = name
            message = "Failed." if message.startswith("Failed: ") else message
        else:
            label = description or name
        rows.append(CheckRow(label, bool(result.get("passed")), message))
    return rows


@dataclass(frozen=True)
class SubmittedFile:
    id: int
    path: str
    size_bytes: int
    text: str | None  # the file as text when it is small UTF-8, else None


PREVIEW_MAX_BYTES = 64 * 1024


def submission_files(*, submission: Submission) -> list[SubmittedFile]:
    files = []
    for f in SubmissionFile.objects.filter(submission=submission).order_by("path"):
        text = None
        if f.size_bytes <= PREVIEW_MAX_BYTES:
            try:
                text = bytes(f.data).decode("utf-8")
            except UnicodeDecodeError:
                text = None
        files.append(SubmittedFile(f.pk, f.path, f.size_bytes, text))
    return files


# --- grades.csv and the class's export --------------------------------------------------------------


def _grade_cells(row: GridRow, points: int) -> list[str]:
    hand_in = row.hand_in
    return [
        row.username,
        row.name,
        timezone.localtime(hand_in.created_at).isoformat(timespec="seconds") if hand_in else "",
        ("yes" if hand_in.late else "no") if hand_in else "",
        str(hand_in.checks_passed) if hand_in and hand_in.checks_status == Submission.ChecksStatus.DONE else "",
        str(hand_in.checks_total) if hand_in and hand_in.checks_status == Submission.ChecksStatus.DONE else "",
        str(hand_in.score) if hand_in and hand_in.score is not None else "",
        str(points),
        str(row.hand_ins),
    ]


def assignment_grades_lines(*, assignment: Assignment) -> Iterator[str]:
    """grades.csv, line by line: the header row first, then one row per current student (their
    last hand-in counts); cells a spreadsheet would run as a formula are escaped (csv_safe)."""
    writer = csv.writer(CsvEcho())
    yield writer.writerow(GRADES_HEADER)
    for row in assignment_grid(assignment=assignment):
        yield writer.writerow(csv_safe(_grade_cells(row, assignment.points)))


_UNSAFE = re.compile(r"[^\w.\- ]+")


def _safe_name(text: str, fallback: str) -> str:
    """A zip member's path component: no slashes, dots-only names or control characters."""
    name = _UNSAFE.sub("_", text).strip(" ._")[:80]
    return name or fallback


def _safe_path(path: str) -> str:
    parts = [_safe_name(part, "_") for part in path.split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "_"


class _ZipStream(io.RawIOBase):
    """zipfile's file: keeps what was written until `take()` (zipfile streams with data
    descriptors on an unseekable file, so nothing is ever rewritten)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def _class_sessions(classroom: Classroom) -> QuerySet[ChatSession]:
    return ChatSession.objects.filter(classroom=classroom, owner__in=classroom.students.values("pk"))


def classroom_export_chunks(*, classroom: Classroom) -> Iterator[bytes]:
    """The class's work as a zip, produced piece by piece (one member at a time, never the whole
    archive in memory): per current student, `<student>/sessions/<title>.ipynb` for each of their
    class sessions, `<student>/submissions/<assignment>/<n>-<time>/` (runs.json, checks.json and
    the files) for each hand-in; `grades/<assignment>.csv` per assignment."""
    stream = _ZipStream()
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        students = _students(classroom)
        for student in students:
            folder = _safe_name(student.get_username(), f"student-{student.pk}")
            sessions = _class_sessions(classroom).filter(owner=student).order_by("created_at", "pk")
            for session in sessions.iterator():
                notebook = nbformat.writes(session_export_notebook(session=session))
                name = f"{_safe_name(session.title, 'session')}-{session.id.hex[:8]}.ipynb"
                archive.writestr(f"{folder}/sessions/{name}", notebook)
                yield stream.take()
            hand_ins = Submission.objects.handed_in().filter(assignment__classroom=classroom, student=student).select_related("assignment")
            numbers: dict[int, int] = {}
            for submission in hand_ins.order_by("created_at", "pk").iterator():
                numbers[submission.assignment_id] = numbers.get(submission.assignment_id, 0) + 1
                stamp = timezone.localtime(submission.created_at).strftime("%Y-%m-%d_%H%M%S")
                base = (f"{folder}/submissions/{_safe_name(submission.assignment.title, f'assignment-{submission.assignment_id}')}"
                        f"/{numbers[submission.assignment_id]}-{stamp}{'-late' if submission.late else ''}")
                archive.writestr(f"{base}/runs.json", json.dumps(submission.runs, indent=1, ensure_ascii=False))
                archive.writestr(f"{base}/checks.json", json.dumps({
                    "status": submission.checks_status, "passed": submission.checks_passed, "total": submission.checks_total,
                    "results": submission.check_results, "score": str(submission.score) if submission.score is not None else None,
                    "feedback": submission.feedback,
                }, indent=1, ensure_ascii=False))
                yield stream.take()
                for pk in SubmissionFile.objects.filter(submission=submission).order_by("path").values_list("pk", flat=True):
                    f = SubmissionFile.objects.get(pk=pk)  # one file's bytes in memory at a time
                    archive.writestr(f"{base}/files/{_safe_path(f.path)}", bytes(f.data))
                    yield stream.take()
        for assignment in Assignment.objects.filter(classroom=classroom).order_by("pk"):
            name = f"grades/{_safe_name(assignment.title, 'assignment')}-{assignment.pk}.csv"
            archive.writestr(name, "".join(assignment_grades_lines(assignment=assignment)))
            yield stream.take()
    yield stream.take()
