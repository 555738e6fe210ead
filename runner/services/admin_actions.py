"""Admin actions on a user's spending, each recorded (who, when, why) in `AdminAction`:
kill all of a user's sandboxes (the usage drill-down) or one session's (the live view), and stop
one run. Both pages go through these functions: one Kill and one Stop."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User

from runner.models import AdminAction, ChatSession, Execution, SandboxLease
from runner.services import sandboxes
from runner.services.cancel import execution_cancel
from runner.services.runs import RunRejected
from runner.services.runtime import db


class ActionRefused(Exception):
    """The action can't be done as asked (`message` says why); nothing was recorded."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _clean_reason(reason: object) -> str:
    text = str(reason or "").strip()
    if not text:
        raise ActionRefused("Say why: the reason is recorded with the action.")
    return text[:2000]


def _sessions_with_open_leases_sync(*, user_id: int) -> list[ChatSession]:
    ids = SandboxLease.objects.open().filter(user_id=user_id, session__isnull=False).values_list("session_id", flat=True)
    named = ChatSession.objects.filter(owner_id=user_id).exclude(sandbox_id="").values_list("pk", flat=True)
    return list(ChatSession.objects.filter(pk__in={*ids, *named}))


def _record_sync(*, actor_id: int, target_user_id: int, kind: str, reason: str, outcome: str, execution_id: int | None = None) -> AdminAction:
    return AdminAction.objects.create(
        actor_id=actor_id, target_user_id=target_user_id, kind=kind, reason=reason, outcome=outcome[:300], execution_id=execution_id,
    )


def _session_sync(*, session_id: uuid.UUID) -> ChatSession | None:
    return ChatSession.objects.filter(pk=session_id).first()


async def admin_sandboxes_kill(*, actor: User, user_id: int, reason: object, session_id: uuid.UUID | None = None) -> AdminAction:
    """Close every sandbox of `user_id` (or only session `session_id`'s, which must be theirs),
    wherever it is held (an E2B one is killed by id), end the leases, and record who did it and
    why. Running runs in them end as the sandbox goes, with status "killed" and the notice "An
    administrator stopped this sandbox: <reason>." Raises `ActionRefused` for a session that
    isn't the user's."""
    why = _clean_reason(reason)
    if session_id is None:
        sessions = await db(_sessions_with_open_leases_sync)(user_id=user_id)
    else:
        one = await db(_session_sync)(session_id=session_id)
        if one is None or one.owner_id != user_id:
            raise ActionRefused("That session is not this user's (or no longer exists).")
        sessions = [one]
    for session in sessions:
        await sandboxes.sandbox_restart(session_id=session.id, reason=SandboxLease.EndReason.ADMIN, note=why)
    if session_id is None:
        outcome = f"closed the sandboxes of {len(sessions)} session{'s' if len(sessions) != 1 else ''}"
    else:
        outcome = f"closed the sandbox of session “{sessions[0].title}” ({sessions[0].pk})"
    return await db(_record_sync)(actor_id=actor.pk, target_user_id=user_id, kind=AdminAction.Kind.KILL_SANDBOXES, reason=why, outcome=outcome)


def _run_and_session_sync(*, execution_id: int) -> tuple[Execution, ChatSession] | None:
    execution = Execution.objects.select_related("session", "session__owner").filter(pk=execution_id).first()
    return None if execution is None else (execution, execution.session)


async def admin_run_stop(*, actor: User, execution_id: int, reason: object) -> AdminAction:
    """Stop a run (queued or running) on its owner's behalf, wherever it runs, and record it.
    Raises `ActionRefused` for an unknown run."""
    why = _clean_reason(reason)
    found = await db(_run_and_session_sync)(execution_id=execution_id)
    if found is None:
        raise ActionRefused(f"There is no run {execution_id}.")
    execution, session = found
    if execution.is_active:
        try:
            await execution_cancel(session=session, user=session.owner, execution_id=execution_id)
        except RunRejected as rejected:
            raise ActionRefused(rejected.message) from rejected
        outcome = f"run {execution_id} was {execution.status}; stop sent"
    else:
        outcome = f"run {execution_id} had already ended ({execution.status})"
    return await db(_record_sync)(
        actor_id=actor.pk, target_user_id=execution.user_id, kind=AdminAction.Kind.STOP_RUN, reason=why, outcome=outcome, execution_id=execution_id,
    )
