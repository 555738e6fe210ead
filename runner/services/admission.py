"""Admission: check a run, store its row, and start its task (`lifecycle.RunTask`).

`execution_start` validates, stores the row and starts the run's task, then returns at once.
When nothing runs ahead here, the row's insert is pipelined with fetching the sandbox, or (this
process's own local sandbox) with running the code itself (`RunTask.pipeline`).
"""

from __future__ import annotations

import asyncio
import uuid

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from runner import events
from runner.models import ChatSession, Execution
from runner.sandboxes.base import LANGUAGES, get_backend
from runner.services.lifecycle import RunTask
from runner.services.output import human_bytes, publish
from runner.services.quotas import Limits, QuotaExceeded, quota_admit_sync, quota_check_sync
from runner.services.runs import ACTIVE, Command, RunRejected
from runner.services.runtime import BOOT_ID, db, runtime_ensure_started

CLIENT_ID_MAX_CHARS = Execution._meta.get_field("client_id").max_length or 64


async def execution_quota_check(*, user: AbstractBaseUser) -> tuple[str | None, Limits]:
    """A message when `user` may not start another run now (naming the limit, its value and when
    it resets), else None; and the user's limits. One database hop; the insert re-checks under a
    lock (`quota_admit_sync`), so concurrent starts can't all slip past it."""
    return await db(quota_check_sync)(user_id=user.pk)


def _validated(code: object, language: object, client_id: object) -> tuple[str, str, str]:
    if not isinstance(code, str):
        raise RunRejected("bad_request", "`code` must be a string.")
    if not code.strip():
        raise RunRejected("bad_request", "There is no code to run.")
    size = len(code.encode("utf-8", "surrogatepass"))
    if size > settings.RUN_CODE_MAX_BYTES:
        raise RunRejected(
            "bad_request", f"The code is {human_bytes(size)}; the limit is {human_bytes(settings.RUN_CODE_MAX_BYTES)}."
        )
    if not isinstance(language, str):
        raise RunRejected("bad_request", "`language` must be a string.")
    if language not in LANGUAGES:
        raise RunRejected("bad_request", f"Unknown language {language[:40]!r}; use one of {', '.join(sorted(LANGUAGES))}.")
    try:
        available = get_backend().languages
    except Exception:
        available = LANGUAGES  # degraded mode: the run is refused later with the reason
    if language not in available:
        raise RunRejected("bad_request", f"{language} is not available on this server; use one of {', '.join(sorted(available))}.")
    if client_id is None:
        client_id = ""
    if not isinstance(client_id, str):
        raise RunRejected("bad_request", "`client_id` must be a string.")
    if len(client_id) > CLIENT_ID_MAX_CHARS:
        raise RunRejected("bad_request", f"`client_id` is longer than {CLIENT_ID_MAX_CHARS} characters.")
    return code, language, client_id


async def execution_start(
    *, session: ChatSession, user: AbstractBaseUser, code: object, language: object, client_id: object = "",
    command: Command | None = None, prelude: str = "", kernel: str = "", stdin: bool = True,
) -> Execution:
    """Store a run and start it in the background; return at once with the row.

    Only the session's owner may run. The run starts when the session's earlier runs are done,
    continues with no socket connected, and publishes everything to the session's group.
    With `command`, the run is that command (`code` is its command line, stored as the run's code)
    instead of `code` for a kernel: it counts against the same limits and is stored the same way.
    `prelude` runs before `code` in the same cell and is never stored (the E2B API's environment
    variables, whose values are often secrets, and its contexts' cwd). `kernel` names a kernel of
    the language's of its own (an E2B API context's), "" the language's one.
    With `stdin` False the code gets no stdin (E2B's `allow_stdin: False`): Python's input() raises
    `StdinNotImplementedError` at once instead of asking the page for a line.
    Raises `RunRejected` (bad_request, forbidden, quota, rate_limited) without storing anything.
    """
    code, language, client_id = _validated(code, language, client_id)
    if session.owner_id != user.pk:
        raise RunRejected("forbidden", "Only the session's owner can run code in it.")
    over, limits = await execution_quota_check(user=user)
    if over is not None:
        raise RunRejected("quota", over)
    await runtime_ensure_started()

    task = RunTask(session=session, code=code, language=language, command=command, prelude=prelude, kernel=kernel,
                   stdin=stdin)  # joins the line
    # A user with limits doesn't get the code started before the row: the insert may refuse it.
    if task.pipeline(may_run_code=not limits.any):
        await asyncio.sleep(0)  # let it send its first request before the database thread takes the GIL
    try:
        execution, remote_ahead = await db(_insert_sync)(
            session_id=session.id, user_id=user.pk, code=code, language=language, client_id=client_id,
            may_start=task.first_in_line, running_already=task.running_early, limits=limits,
        )
    except BaseException:
        await task.withdraw()
        raise

    task.admit(execution)
    queued: events.QueuedMessage = {
        "type": "execution.queued",
        "frame": {
            "type": "execution.queued", "execution_id": execution.pk, "seq": execution.seq,
            "client_id": client_id, "code": code, "language": language,
        },
    }
    if execution.seq == 1 and (title := await db(_title_from_first_run)(session_id=session.id, code=code)):
        queued["frame"]["session_title"] = title
    try:
        await publish(task.run.group, dict(queued))  # before the task runs, so `queued` precedes `started`
    finally:
        task.start(remote_ahead=remote_ahead)
    return execution


DEFAULT_TITLE = ChatSession._meta.get_field("title").default
TITLE_FROM_CODE_MAX_CHARS = 60
_COMMENT_MARKS = ("#", "//", "--")
_DULL_LINE_STARTS = ("import ", "from ", "%", "!", "'use strict'", '"use strict"', "set -", "#!")


def session_title_from_code(*, code: str) -> str:
    """A session title from its first run: a leading comment's text, else the first line that isn't an
    import, magic or shebang (else the first line), shortened to TITLE_FROM_CODE_MAX_CHARS with "…"."""
    lines = [line.strip() for line in code.splitlines() if line.strip()]
    title = ""
    for line in lines:
        if line.startswith("#!"):
            continue
        mark = next((m for m in _COMMENT_MARKS if line.startswith(m)), None)
        if mark is not None:
            title = line.lstrip(mark[0]).strip(" -*/")
            if title:
                break
            continue
        if not line.startswith(_DULL_LINE_STARTS):
            title = line
            break
    title = " ".join((title or (lines[0] if lines else "")).split())
    if len(title) > TITLE_FROM_CODE_MAX_CHARS:
        title = title[: TITLE_FROM_CODE_MAX_CHARS - 1].rstrip() + "…"
    return title


def _title_from_first_run(*, session_id: uuid.UUID, code: str) -> str:
    """Name a session still called the default after its first run's code; "" if it keeps its name."""
    title = session_title_from_code(code=code)
    if not title or not ChatSession.objects.filter(pk=session_id, title=DEFAULT_TITLE).update(title=title):
        return ""
    return title


def _insert_sync(
    *, session_id: uuid.UUID, user_id: int, code: str, language: str, client_id: str, may_start: bool,
    running_already: bool = False, limits: Limits | None = None,
) -> tuple[Execution, bool]:
    now = timezone.now()
    with transaction.atomic():
        if limits is not None and limits.any:
            try:
                quota_admit_sync(user_id=user_id, limits=limits)
            except QuotaExceeded as exceeded:
                raise RunRejected("quota", exceeded.message) from exceeded
        # Updating the session row first serialises concurrent starts in one session (row lock).
        ChatSession.objects.filter(pk=session_id).update(status=ChatSession.Status.RUNNING, last_activity_at=now)
        # Both reads use an index (session+seq; status), so they stay cheap however long the session.
        max_seq = Execution.objects.filter(session_id=session_id).order_by("-seq").values_list("seq", flat=True).first()
        owners = list(
            Execution.objects.filter(session_id=session_id, status__in=ACTIVE).values_list("owner_boot_id", flat=True)[
                : settings.RUN_QUEUE_MAX + 1
            ]
        )
        if len(owners) > settings.RUN_QUEUE_MAX:
            raise RunRejected(
                "rate_limited", f"{len(owners) - 1} runs are already waiting in this session; wait for them or stop one."
            )
        # running_already: the code started in this process's own sandbox while this row was
        # written. Only this process can run code in that sandbox, so nothing else can be ahead.
        start_now = running_already or (may_start and not owners)
        execution = Execution.objects.create(
            session_id=session_id, seq=(max_seq or 0) + 1, code=code, language=language, user_id=user_id,
            client_id=client_id, owner_boot_id=BOOT_ID, created_at=now,
            status=Execution.Status.RUNNING if start_now else Execution.Status.QUEUED,
            started_at=now if start_now else None,
        )
    return execution, any(owner != BOOT_ID for owner in owners)
