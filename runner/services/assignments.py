"""Writes for assignments: a teacher creates and edits one (starter code and files, due date,
checks); a student starts it (their session, seeded), hands it in or asks "Check my work" (a
`Submission`: a snapshot of the session's runs and files, whose checks are queued for
`services.checks`); a teacher grades a hand-in (score and feedback)."""

from __future__ import annotations

import ast
import datetime as dt
import posixpath
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from runner.models import LANGUAGE_CHOICES, Assignment, AssignmentFile, ChatSession, Classroom, Execution, OutputChunk, Submission, SubmissionFile
from runner.sandboxes.base import FileTooLarge, SandboxError, SandboxUnavailable, Workspace
from runner.services.ratelimit import ratelimit_hit
from runner.services.runtime import db
from runner.services.sessions import session_create
from runner.services.workspace import NoWorkspace, Upload, workspace_clean_name, workspace_open

TITLE_MAX_CHARS = Assignment._meta.get_field("title").max_length or 200
CODE_MAX_CHARS = 100_000  # starter code and checks: the size cap of a run's code
TEXT_MAX_CHARS = 100_000  # instructions and feedback
RUN_OUTPUT_KEPT_CHARS = 20_000  # per run in a submission's snapshot (the full output stays in the session)
_LANGUAGES = {code for code, _ in LANGUAGE_CHOICES}
_MIB = 1024 * 1024


def workspace_quota_bytes() -> int:
    return int(settings.SANDBOX_WORKSPACE_QUOTA_MB) * _MIB


@dataclass(frozen=True)
class AssignmentFields:
    title: str
    instructions: str = ""
    language: str = "python"
    starter_code: str = ""
    due_at: dt.datetime | None = None
    checks: str = ""
    show_checks: bool = False
    points: int = 10


def _validated(fields: AssignmentFields) -> AssignmentFields:
    problems: list[str] = []
    title = " ".join(fields.title.split())[:TITLE_MAX_CHARS]
    if not title:
        problems.append("An assignment needs a title.")
    if fields.language not in _LANGUAGES:
        problems.append(f"Unknown language {fields.language!r}.")
    for name, text, limit in (("Starter code", fields.starter_code, CODE_MAX_CHARS), ("Checks", fields.checks, CODE_MAX_CHARS),
                              ("Instructions", fields.instructions, TEXT_MAX_CHARS)):
        if len(text) > limit:
            problems.append(f"{name} may be at most {limit:,} characters.")
    if fields.checks.strip():
        try:
            ast.parse(fields.checks)
        except SyntaxError as exc:
            problems.append(f"The checks aren't valid Python: {exc.msg} (line {exc.lineno}).")
    if not 0 <= fields.points <= 100_000:
        problems.append("Points must be between 0 and 100000.")
    if problems:
        raise ValidationError(problems)
    return AssignmentFields(title, fields.instructions, fields.language, fields.starter_code, fields.due_at,
                            fields.checks, fields.show_checks, fields.points)


def assignment_save(
    *, classroom: Classroom, assignment: Assignment | None, fields: AssignmentFields,
    uploads: Sequence[Upload] = (), remove_files: Sequence[str] = (),
) -> Assignment:
    """Create (`assignment` None) or update an assignment of `classroom`, with its starter files:
    `uploads` are added (replacing a file of the same name), `remove_files` are removed. Names are
    checked as uploads' are; each file is at most SANDBOX_FILE_MAX_BYTES and all of them together
    at most the workspace quota. Raises ValidationError (nothing is saved)."""
    fields = _validated(fields)
    for upload in uploads:
        try:
            workspace_clean_name(name=upload.name)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if len(upload.data) > settings.SANDBOX_FILE_MAX_BYTES:
            raise ValidationError(f"{upload.name} is larger than the {settings.SANDBOX_FILE_MAX_BYTES / _MIB:.1f} MiB a file may be.")
    with transaction.atomic():
        if assignment is None:
            assignment = Assignment(classroom=classroom)
        for name in ("title", "instructions", "language", "starter_code", "due_at", "checks", "show_checks", "points"):
            setattr(assignment, name, getattr(fields, name))
        assignment.save()
        if remove_files:
            AssignmentFile.objects.filter(assignment=assignment, name__in=list(remove_files)).delete()
        for upload in uploads:
            AssignmentFile.objects.update_or_create(
                assignment=assignment, name=upload.name, defaults={"data": upload.data, "size_bytes": len(upload.data)}
            )
        total = sum(AssignmentFile.objects.filter(assignment=assignment).values_list("size_bytes", flat=True))
        if total > workspace_quota_bytes():
            transaction.set_rollback(True)
            raise ValidationError(
                f"The starter files add up to {total / _MIB:.1f} MiB; a workspace holds {settings.SANDBOX_WORKSPACE_QUOTA_MB} MiB."
            )
    return assignment


# --- the student's side -----------------------------------------------------------------------------


def _session_for_sync(*, assignment: Assignment, student: User) -> tuple[ChatSession, bool]:
    existing = ChatSession.objects.filter(owner=student, assignment=assignment).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            session = session_create(owner=student, language=assignment.language, title=assignment.title,
                                     classroom=assignment.classroom)
            session.assignment = assignment
            session.save(update_fields=["assignment", "updated_at"])
    except IntegrityError:  # a second Start at the same moment made it first
        return ChatSession.objects.get(owner=student, assignment=assignment), False
    return session, True


def _starter_files_sync(*, assignment_id: int) -> list[tuple[str, bytes]]:
    return [(f.name, bytes(f.data)) for f in AssignmentFile.objects.filter(assignment_id=assignment_id)]


async def assignment_start(*, assignment: Assignment, student: User) -> tuple[ChatSession, str]:
    """The student's session for `assignment` (the caller checked they are in its class), made on
    the first call: in the class, named after the assignment, with the starter files in its
    workspace (the page puts the starter code in the composer). Later calls return it, and put back
    any starter file missing while it has no runs. Returns the session and a problem to show
    ("" when none): files that couldn't be copied (the session is made anyway)."""
    session, made = await db(_session_for_sync)(assignment=assignment, student=student)
    if not made and await Execution.objects.filter(session=session).aexists():
        return session, ""
    files = await db(_starter_files_sync)(assignment_id=assignment.pk)
    if not files:
        return session, ""
    try:
        workspace = await workspace_open(session=session, start=True)
        try:
            present = {entry.name for entry in await workspace.list_files(".")}
        except FileNotFoundError:
            present = set()
        for name, data in files:
            if name not in present:
                await workspace.write_file(name, data)
    except (SandboxUnavailable, SandboxError, FileTooLarge, OSError, ValueError) as exc:
        return session, f"The starter files couldn't be copied into your workspace ({exc}); press Start again later."
    return session, ""


class HandInRefused(Exception):
    """A hand-in or check that can't be made now (too many, one still running, no session yet)."""

    def __init__(self, message: str, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.rate_limited = rate_limited


def _runs_snapshot_sync(*, session_id: uuid.UUID) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = []
    executions = list(Execution.objects.filter(session_id=session_id).exclude(status__in=Execution.ACTIVE).order_by("seq"))
    texts: dict[int, list[str]] = {e.pk: [] for e in executions}
    kept: dict[int, int] = {e.pk: 0 for e in executions}
    for execution_id, text in (
        OutputChunk.objects.filter(execution__in=executions, kind__in=["stdout", "stderr"]).order_by("execution", "index")
        .values_list("execution_id", "text").iterator()
    ):
        room = RUN_OUTPUT_KEPT_CHARS - kept[execution_id]
        if room > 0 and text:
            texts[execution_id].append(text[:room])
            kept[execution_id] += min(room, len(text))
    for e in executions:
        runs.append({
            "seq": e.seq, "language": e.language, "code": e.code, "status": e.status,
            "error_name": e.error_name, "error_value": e.error_value[:2000], "duration_ms": e.duration_ms,
            "output": "".join(texts[e.pk]),
        })
    return runs


async def _files_snapshot(session: ChatSession) -> tuple[list[tuple[str, bytes]], str]:
    """The workspace's regular files (top-level dot folders such as `.local`, where packages go,
    left out), up to the workspace quota in all; the note says what was left out."""
    try:
        workspace: Workspace = await workspace_open(session=session)
    except NoWorkspace:
        return [], ""
    budget = workspace_quota_bytes()
    files: list[tuple[str, bytes]] = []
    skipped: list[str] = []
    folders = [""]
    total = 0
    while folders:
        folder = folders.pop(0)
        try:
            entries = await workspace.list_files(folder or ".")
        except FileNotFoundError:
            continue
        for entry in entries:
            path = posixpath.join(folder, entry.name) if folder else entry.name
            if entry.type == "dir":
                if not (folder == "" and entry.name.startswith(".")):
                    folders.append(path)
                continue
            if entry.type != "file":
                continue
            if total + entry.size > budget:
                skipped.append(path)
                continue
            try:
                data = await workspace.read_file(path)
            except (FileTooLarge, ValueError, OSError):
                skipped.append(path)
                continue
            total += len(data)
            files.append((path, data))
    note = f"Left out (past the workspace quota or unreadable): {', '.join(skipped[:10])}{'…' if len(skipped) > 10 else ''}" if skipped else ""
    return files, note[:300]


def _submission_insert_sync(
    *, assignment: Assignment, student: User, session: ChatSession, is_hand_in: bool,
    runs: list[dict[str, object]], files: list[tuple[str, bytes]], note: str,
) -> Submission:
    now = timezone.now()
    with transaction.atomic():
        pending = Submission.objects.filter(
            assignment=assignment, student=student, is_hand_in=False,
            checks_status__in=[Submission.ChecksStatus.QUEUED, Submission.ChecksStatus.RUNNING],
        )
        if not is_hand_in and pending.exists():
            raise HandInRefused("Your work is being checked already; the result appears here when it's ready.")
        submission = Submission.objects.create(
            assignment=assignment, student=student, session=session, is_hand_in=is_hand_in, created_at=now,
            late=is_hand_in and assignment.is_late_at(now), runs=runs, files_bytes=sum(len(d) for _, d in files),
            files_note=note,
            checks_status=Submission.ChecksStatus.QUEUED if assignment.checks.strip() else Submission.ChecksStatus.NONE,
        )
        SubmissionFile.objects.bulk_create(
            [SubmissionFile(submission=submission, path=path, data=data, size_bytes=len(data)) for path, data in files]
        )
    return submission


async def assignment_hand_in(*, assignment: Assignment, student: User, is_hand_in: bool = True) -> Submission:
    """Snapshot the student's session for `assignment` (its finished runs, and its workspace files
    up to the quota) as a Submission, `late` when handed in past `due_at`, its checks queued (they
    run in a fresh sandbox, services.checks). With `is_hand_in` false it is a "Check my work": the
    same snapshot and checks, not handed in. Raises HandInRefused: no session yet, too many checks
    (ASSIGNMENT_CHECKS_PER_10MIN), or a "Check my work" while one is still being checked."""
    session = await ChatSession.objects.filter(owner=student, assignment=assignment).afirst()
    if session is None:
        raise HandInRefused("Start the assignment first: there is nothing to hand in yet.")
    verdict = await ratelimit_hit(
        scope="checks", user_id=student.pk, limit=settings.ASSIGNMENT_CHECKS_PER_10MIN, window_s=600
    )
    if not verdict.allowed:
        raise HandInRefused(f"Too many hand-ins and checks: {verdict.message}.", rate_limited=True)
    runs = await db(_runs_snapshot_sync)(session_id=session.pk)
    try:
        files, note = await _files_snapshot(session)
    except (SandboxUnavailable, SandboxError) as exc:
        files, note = [], f"The workspace's files couldn't be read ({exc})."[:300]
    return await db(_submission_insert_sync)(
        assignment=assignment, student=student, session=session, is_hand_in=is_hand_in, runs=runs, files=files, note=note,
    )


# --- the teacher's side -----------------------------------------------------------------------------


def submission_grade(*, submission: Submission, score: str, feedback: str) -> Submission:
    """Set a hand-in's score ("" clears it; 0 to the assignment's points) and feedback, which the
    student sees on the assignment's page. Raises ValidationError."""
    value: Decimal | None = None
    if score.strip():
        try:
            value = Decimal(score.strip())
        except InvalidOperation:
            raise ValidationError("The score must be a number.") from None
        if not value.is_finite() or value < 0 or value > submission.assignment.points:
            raise ValidationError(f"The score must be between 0 and {submission.assignment.points}.")
    if len(feedback) > TEXT_MAX_CHARS:
        raise ValidationError(f"Feedback may be at most {TEXT_MAX_CHARS:,} characters.")
    submission.score = value.quantize(Decimal("0.01")) if value is not None else None
    submission.feedback = feedback.strip()
    submission.graded_at = timezone.now()
    submission.save(update_fields=["score", "feedback", "graded_at"])
    return submission
