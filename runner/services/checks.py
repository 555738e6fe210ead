"""An assignment's checks, as nbgrader runs its tests: in a FRESH sandbox, never the student's live
kernel (which the student could have patched).

For one queued `Submission` (a hand-in, or a "Check my work"), the sandbox:
1. gets the submission's files (its snapshot of the workspace);
2. replays the submission's successful runs, in order;
3. runs the teacher's checks: each top-level `def check_*` is one check (called after the whole
   checks source ran, so the teacher's definitions replace any of the student's), or, when there is
   none, each block of top-level statements (blocks are separated by blank lines) that contains an
   `assert` is one check, with the blocks without one run in order as setup.
A check passes when its cell ends without an error; the message is the error's (the assert's
message, or the assert's source when it has none). The sandbox is billed to the student (a lease of
their own, so it counts against their sandbox-time and $ limits) and closed at the end.

The work is queued in the rows (`checks_status`): any process's housekeeping claims queued
submissions (`submission_checks_work`), so checks survive a restart and never run in a request.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import logging
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from runner.models import SandboxLease, Submission, SubmissionFile
from runner.pricing import sandbox_size
from runner.sandboxes.base import Error, Event, Outcome, Sandbox, SandboxError, SandboxUnavailable, get_backend
from runner.services.quotas import quota_check_sync
from runner.services.runtime import BOOT_ID, db, live_boot_ids_sync

log = logging.getLogger(__name__)

MESSAGE_MAX_CHARS = 500


@dataclass(frozen=True)
class Check:
    name: str
    code: str  # the cell that runs it
    description: str  # the docstring, or the block's first assert


@dataclass(frozen=True)
class CheckPlan:
    steps: list[str | Check]  # every cell, in order: a str is setup, a Check is a check
    # `def check_*` checks: the first step defines them all, so if it fails every check fails.
    functions: bool

    @property
    def checks(self) -> list[Check]:
        return [step for step in self.steps if isinstance(step, Check)]


def checks_plan(*, source: str) -> CheckPlan:
    """The teacher's checks split into cells. Raises SyntaxError for source that isn't Python."""
    tree = ast.parse(source)
    functions = [
        node for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("check_")
    ]
    if functions:
        steps: list[str | Check] = [source]
        for fn in functions:
            doc = (ast.get_docstring(fn) or "").strip().splitlines()
            steps.append(Check(name=fn.name, code=f"{fn.name}()", description=doc[0] if doc else fn.name))
        return CheckPlan(steps=steps, functions=True)
    lines = source.splitlines()
    blocks: list[list[ast.stmt]] = []
    for node in tree.body:
        previous_end = blocks[-1][-1].end_lineno if blocks else None
        gap = lines[previous_end:_first_line(node) - 1] if previous_end is not None else []
        if blocks and all(line.strip() for line in gap):
            blocks[-1].append(node)  # no blank line since the last statement: the same block
        else:
            blocks.append([node])
    steps = []
    number = 0
    for block in blocks:
        code = "\n".join(lines[_first_line(block[0]) - 1:block[-1].end_lineno])
        asserts = [n for stmt in block for n in ast.walk(stmt) if isinstance(n, ast.Assert)]
        if not asserts:
            steps.append(code)
            continue
        number += 1
        first_assert = (ast.get_source_segment(source, asserts[0]) or "assert").splitlines()[0]
        steps.append(Check(name=f"check {number}", code=code, description=first_assert[:200]))
    return CheckPlan(steps=steps, functions=False)


def _first_line(node: ast.stmt) -> int:
    """The statement's first line, its decorators included."""
    decorators = getattr(node, "decorator_list", None) or []
    return min([node.lineno, *(d.lineno for d in decorators)])


def checks_count(*, source: str) -> int:
    """How many checks `source` holds (0 when it is empty or doesn't parse)."""
    if not source.strip():
        return 0
    try:
        return len(checks_plan(source=source).checks)
    except SyntaxError:
        return 0


# --- claiming queued work ---------------------------------------------------------------------------


def _claim_sync() -> int | None:
    """Claim the oldest queued submission for this process (taking back any a dead process held).
    Reads first and writes only when there is work: this runs every poll, and on SQLite any write
    takes the database's one write lock."""
    running = Submission.objects.filter(checks_status=Submission.ChecksStatus.RUNNING)
    if running.exists():
        running.exclude(checks_owner_boot_id__in=live_boot_ids_sync()).update(
            checks_status=Submission.ChecksStatus.QUEUED, checks_owner_boot_id=""
        )
    queued = Submission.objects.filter(checks_status=Submission.ChecksStatus.QUEUED)
    pk = queued.order_by("created_at", "pk").values_list("pk", flat=True).first()
    if pk is None:
        return None
    # Conditional: of processes racing for the same row, exactly one updates it.
    claimed = queued.filter(pk=pk).update(checks_status=Submission.ChecksStatus.RUNNING, checks_owner_boot_id=BOOT_ID)
    return pk if claimed else None


_running: set[int] = set()


def _forget(pk: int, _task: object) -> None:
    _running.discard(pk)


async def submission_checks_work(*, limit: int | None = None) -> int:
    """Start checks for queued submissions (`submission_checks_start`) and wait for the ones
    started here. Returns how many ran."""
    started = await submission_checks_start(limit=limit)
    if started:
        await asyncio.gather(*started, return_exceptions=True)
    return len(started)


async def submission_checks_start(*, limit: int | None = None) -> list[asyncio.Task[None]]:
    """Claim queued submissions, up to ASSIGNMENT_CHECKS_CONCURRENCY at once in this process, and
    start their checks; the tasks started (none, and no task left behind, when nothing is queued)."""
    room = (limit if limit is not None else settings.ASSIGNMENT_CHECKS_CONCURRENCY) - len(_running)
    started: list[asyncio.Task[None]] = []
    while room > 0:
        pk = await db(_claim_sync)()
        if pk is None:
            break
        _running.add(pk)
        task = asyncio.ensure_future(_run_claimed(pk))
        task.add_done_callback(functools.partial(_forget, pk))
        started.append(task)
        room -= 1
    return started


def _unclaim_sync(*, pk: int) -> None:
    Submission.objects.filter(pk=pk, checks_status=Submission.ChecksStatus.RUNNING).update(
        checks_status=Submission.ChecksStatus.QUEUED, checks_owner_boot_id=""
    )


async def _run_claimed(pk: int) -> None:
    try:
        await submission_checks_run(submission_id=pk)
    except asyncio.CancelledError:  # this process is stopping: another (or the next) one runs it
        await asyncio.shield(db(_unclaim_sync)(pk=pk))
        raise
    except Exception as exc:  # never leave a claim running: the student would wait forever
        log.exception("checks of submission %s failed", pk)
        await db(_finish_sync)(pk=pk, status=Submission.ChecksStatus.ERROR, results=[],
                               message=f"The checks could not run ({type(exc).__name__}). Try again.")


# --- running ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Work:
    student_id: int
    checks: str
    runs: list[dict[str, object]]
    files: list[tuple[str, bytes]]


def _work_sync(*, pk: int) -> _Work | None:
    submission = Submission.objects.select_related("assignment").filter(pk=pk).first()
    if submission is None:
        return None
    files = [(f.path, bytes(f.data)) for f in SubmissionFile.objects.filter(submission_id=pk).order_by("path")]
    return _Work(submission.student_id, submission.assignment.checks, list(submission.runs), files)


def _finish_sync(*, pk: int, status: str, results: list[dict[str, object]], message: str) -> None:
    Submission.objects.filter(pk=pk).update(
        checks_status=status,
        check_results=results,
        checks_passed=sum(1 for r in results if r["passed"]),
        checks_total=len(results),
        checks_message=message[:MESSAGE_MAX_CHARS],
        checks_finished_at=timezone.now(),
        checks_owner_boot_id="",
    )


def _lease_open_sync(*, user_id: int, backend: str, sandbox_id: str) -> int:
    vcpus, memory_mb = sandbox_size(backend)
    return SandboxLease.objects.create(
        user_id=user_id, session=None, backend=backend, sandbox_id=sandbox_id,
        vcpus=vcpus, memory_mb=memory_mb, owner_boot_id=BOOT_ID,
    ).pk


def _lease_close_sync(*, lease_id: int) -> None:
    SandboxLease.objects.filter(pk=lease_id, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=SandboxLease.EndReason.CLOSED
    )


class _Errors:
    """on_event for a cell: keeps its first error."""

    def __init__(self) -> None:
        self.error: Error | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Error) and self.error is None:
            self.error = event


def _message(outcome: Outcome, errors: _Errors, description: str) -> str:
    if outcome.status == "timeout":
        return "Timed out."
    if outcome.status == "gone":
        return "The sandbox stopped (out of memory?)."
    error = errors.error
    if error is None:
        return "Failed." if outcome.status != "ok" else ""
    if error.ename == "AssertionError" and not error.evalue.strip():
        return f"Failed: {description}"
    return f"{error.ename}: {error.evalue}"[:MESSAGE_MAX_CHARS]


async def submission_checks_run(*, submission_id: int) -> None:
    """Run one claimed submission's checks in a fresh sandbox and store the results ("k of n",
    a message per check). A submission whose checks can't run ends `error` with the reason."""
    work = await db(_work_sync)(pk=submission_id)
    if work is None:
        return
    try:
        plan = checks_plan(source=work.checks)
    except SyntaxError as exc:
        await db(_finish_sync)(pk=submission_id, status=Submission.ChecksStatus.ERROR, results=[],
                               message=f"The teacher's checks don't parse: {exc.msg} (line {exc.lineno}).")
        return
    if not plan.checks:
        await db(_finish_sync)(pk=submission_id, status=Submission.ChecksStatus.NONE, results=[], message="")
        return
    problem, _limits = await db(quota_check_sync)(user_id=work.student_id)
    if problem is not None:
        await db(_finish_sync)(pk=submission_id, status=Submission.ChecksStatus.ERROR, results=[],
                               message=f"The checks could not run: {problem}")
        return
    try:
        results, message = await _in_fresh_sandbox(work, plan)
    except SandboxUnavailable as exc:
        await db(_finish_sync)(pk=submission_id, status=Submission.ChecksStatus.ERROR, results=[],
                               message=f"The checks could not run now: {exc.reason}. Try again in a minute.")
        return
    except SandboxError as exc:
        await db(_finish_sync)(pk=submission_id, status=Submission.ChecksStatus.ERROR, results=[],
                               message=f"The checks' sandbox failed ({exc}). Try again.")
        return
    await db(_finish_sync)(pk=submission_id, status=Submission.ChecksStatus.DONE, results=results, message=message)


async def _in_fresh_sandbox(work: _Work, plan: CheckPlan) -> tuple[list[dict[str, object]], str]:
    backend = get_backend()
    # A workspace of its own: nothing of the student's session (files, kernel) is reused.
    scratch_id = str(uuid.uuid4())
    sandbox: Sandbox = await backend.create(owner_id=work.student_id, session_id=scratch_id)
    lease_id: int | None = None
    try:
        lease_id = await db(_lease_open_sync)(user_id=work.student_id, backend=backend.name, sandbox_id=sandbox.id)
        return await _checks_in(sandbox, work, plan)
    finally:
        try:
            await sandbox.close()
        finally:
            if lease_id is not None:
                await db(_lease_close_sync)(lease_id=lease_id)
            discard = getattr(backend, "discard_workspace", None)
            if discard is not None:
                await asyncio.to_thread(discard, scratch_id)


async def _checks_in(sandbox: Sandbox, work: _Work, plan: CheckPlan) -> tuple[list[dict[str, object]], str]:
    deadline_s = time.monotonic() + settings.ASSIGNMENT_CHECKS_TIMEOUT_S

    def left_s() -> float:
        return max(1.0, min(float(settings.RUN_TIMEOUT_S), deadline_s - time.monotonic()))

    for path, data in work.files:
        await sandbox.write_file(path, data)
    replay_failed = 0
    for run in work.runs:
        if run.get("status") != "succeeded":
            continue
        outcome = await sandbox.run(str(run["code"]), language=str(run["language"]), on_event=lambda _e: None, timeout_s=left_s())
        if outcome.status != "ok":
            replay_failed += 1
        if outcome.status == "gone":
            break
    results: list[dict[str, object]] = []
    setup_error = ""
    for step in plan.steps:
        errors = _Errors()
        if isinstance(step, str):
            outcome = await sandbox.run(step, language="python", on_event=errors, timeout_s=left_s())
            if outcome.status != "ok" and not setup_error:
                setup_error = _message(outcome, errors, "setup")
            continue
        if setup_error and plan.functions:
            results.append({"name": step.name, "description": step.description, "passed": False,
                            "message": f"The checks' setup failed: {setup_error}"})
            continue
        outcome = await sandbox.run(step.code, language="python", on_event=errors, timeout_s=left_s())
        passed = outcome.status == "ok" and errors.error is None
        results.append({"name": step.name, "description": step.description, "passed": passed,
                        "message": "" if passed else _message(outcome, errors, step.description)})
    note = f"{replay_failed} of the replayed runs failed in the fresh sandbox." if replay_failed else ""
    return results, note
