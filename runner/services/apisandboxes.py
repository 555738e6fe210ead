"""Sandboxes made through the E2B-compatible API (runner/e2b_api): each is a ChatSession of kind
"api" plus an ApiSandbox row (template, metadata, envs, end time, code contexts).

The session's sandbox is the same one the page's runs use (sandboxes.py: lease, idle reaper);
its runs go through admission.execution_start like the websocket's. A sandbox ends when killed or
when its end time passes (E2B's timeout): its runs are stopped, its sandbox closed (lease reason
"closed"), its workspace deleted, the session marked closed and kept, with its history, in the
owner's list.

Contexts: as in E2B's code interpreter, each context is a kernel of its own (its own variables),
started on its first run: a language's default context (made on first use) is the language's
kernel, any other is a kernel named by the context's id (`context_kernel`). A run in a context
whose cwd isn't /home/user first changes to it (made if missing). Restarting a context restarts
its kernel; removing one stops it. A sandbox runs at most SANDBOX_KERNELS_MAX kernels.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from runner.models import ApiSandbox, ChatSession, Execution, SandboxLease
from runner.sandboxes.base import Sandbox, SandboxError, get_backend
from runner.services import sandboxes
from runner.services.admission import execution_quota_check
from runner.services.apikeys import api_sandbox_end_capped, api_sandbox_refusal
from runner.services.cancel import execution_cancel_local
from runner.services.runs import RunRejected, runs_here
from runner.services.runtime import api_sandboxes_changed, db
from runner.services.sessions import TITLE_MAX_CHARS, session_create

log = logging.getLogger(__name__)

HOME = "/home/user"
# What the API accepts as a template: all of them are Sandpit's one local image.
TEMPLATES = frozenset({"code-interpreter-v1", "code-interpreter", "base"})
LANGUAGE_ALIASES = {"js": "javascript", "ts": "typescript"}
METADATA_MAX_ITEMS = 50
METADATA_MAX_CHARS = 1000
CONTEXTS_MAX = 20


def api_language(raw: object) -> str:
    """E2B's language normalisation: None -> python, lower-cased, js -> javascript, ts -> typescript."""
    if not raw:
        return "python"
    language = str(raw).lower().strip()
    return LANGUAGE_ALIASES.get(language, language)


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > METADATA_MAX_ITEMS:
        raise ValueError(f"{what} must be an object of at most {METADATA_MAX_ITEMS} string values")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > METADATA_MAX_CHARS or len(item) > METADATA_MAX_CHARS:
            raise ValueError(f"{what} values must be strings of at most {METADATA_MAX_CHARS} characters")
    return dict(value)


def _title(metadata: dict[str, str]) -> str:
    for key in ("title", "name"):
        if metadata.get(key, "").strip():
            return metadata[key].strip()[:TITLE_MAX_CHARS]
    if metadata:
        return ("API · " + ", ".join(f"{k}={v}" for k, v in metadata.items()))[:TITLE_MAX_CHARS]
    return "API sandbox"


async def api_sandbox_create(
    *, owner: User, api_key_id: int | None, template: object, timeout_s: object, metadata: object, envs: object
) -> ApiSandbox:
    """A new API sandbox: session (kind "api", titled from metadata["title" or "name"], else the
    metadata), its row, default python and javascript contexts (as E2B's lists them), and its
    sandbox, started.

    Raises ValueError (bad input, for a 400), LookupError (unknown template, 404), RunRejected
    (quota, 429) or SandboxUnavailable / SandboxError (no sandbox now; the row is left killed)."""
    template = template or "code-interpreter-v1"
    if not isinstance(template, str) or template not in TEMPLATES:
        raise LookupError(f"template '{str(template)[:100]}' not found")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float, type(None))):
        raise ValueError("timeout must be a number of seconds")
    timeout = int(timeout_s) if timeout_s is not None else 300
    if timeout < 1 or timeout > settings.API_SANDBOX_MAX_TIMEOUT_S:
        raise ValueError(f"timeout must be between 1 and {settings.API_SANDBOX_MAX_TIMEOUT_S} seconds")
    metadata = _string_map(metadata, "metadata")
    envs = _string_map(envs, "envVars")
    over, _limits = await execution_quota_check(user=owner)
    if over is not None:
        raise RunRejected("quota", over)
    row = await db(_create_sync)(owner=owner, api_key_id=api_key_id, template=template, timeout_s=timeout,
                                 metadata=metadata, envs=envs)
    # Start its sandbox now, as E2B hands out a running one (the first run finds it warm), and
    # refuse the create at once (429, as E2B answers its limit), leaving nothing live, when no sandbox can be had.
    try:
        await sandboxes.sandbox_acquire(session=row.session, queue_wait_s=0)
    except BaseException as exc:
        await asyncio.shield(db(_mark_killed_sync)(session_id=row.session_id))
        if isinstance(exc, sandboxes.LiveSandboxLimit):
            raise RunRejected("quota", exc.reason) from exc
        raise
    return row


def _create_sync(*, owner: User, api_key_id: int | None, template: str, timeout_s: int,
                 metadata: dict[str, str], envs: dict[str, str]) -> ApiSandbox:
    now = timezone.now()
    with transaction.atomic():
        session = session_create(owner=owner, language="python", title=_title(metadata))
        session.kind = ChatSession.Kind.API
        session.save(update_fields=["kind"])
        return ApiSandbox.objects.create(
            session=session, api_key_id=api_key_id, template=template, metadata=metadata, envs=envs,
            started_at=now, end_at=api_sandbox_end_capped(api_key_id=api_key_id, end_at=now + timedelta(seconds=timeout_s)),
            contexts=[_new_context("python", HOME, default=True), _new_context("javascript", HOME, default=True)],
        )


def _new_context(language: str, cwd: str, *, default: bool) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "language": language, "cwd": cwd, "default": default}


def api_sandbox_extend_sync(*, sandbox: ApiSandbox, timeout_s: object, only_extend: bool) -> ApiSandbox:
    """Set the sandbox's end to now + `timeout_s` (`only_extend`: never earlier, as connect does).
    Raises ValueError for a timeout out of range."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)):
        raise ValueError("timeout must be a number of seconds")
    if timeout_s < 0 or timeout_s > settings.API_SANDBOX_MAX_TIMEOUT_S:
        raise ValueError(f"timeout must be between 0 and {settings.API_SANDBOX_MAX_TIMEOUT_S} seconds")
    end_at = timezone.now() + timedelta(seconds=int(timeout_s))
    if only_extend:
        end_at = max(end_at, sandbox.end_at)
    end_at = api_sandbox_end_capped(api_key_id=sandbox.api_key_id, end_at=end_at)
    ApiSandbox.objects.filter(pk=sandbox.pk).update(end_at=end_at)
    sandbox.end_at = end_at
    return sandbox


async def api_sandbox_kill(*, sandbox: ApiSandbox, reason: str = SandboxLease.EndReason.CLOSED) -> None:
    """End the sandbox: stop its runs, close its sandbox wherever it is held (lease `reason`),
    mark it killed and its session closed. Idempotent."""
    session_id = sandbox.session_id
    _killing.add(session_id)  # so a run it stops can tell it ended with its sandbox
    try:
        await _kill(session_id, reason)
    finally:
        _killing.discard(session_id)


def api_sandbox_killing(*, sandbox: ApiSandbox) -> bool:
    """Whether this process is killing `sandbox` now (its runs are being stopped): it is gone
    to the sandbox's routes already, as at E2B, where a kill takes the sandbox away at once."""
    return sandbox.session_id in _killing


def api_sandbox_killed_or_killing(*, sandbox: ApiSandbox) -> bool:
    """Whether `sandbox` is being killed by this process or is killed (read afresh)."""
    return sandbox.session_id in _killing or ApiSandbox.objects.filter(pk=sandbox.session_id).exclude(killed_at=None).exists()


# API sandboxes this process is killing now (their runs are being stopped).
_killing: set[uuid.UUID] = set()


async def _kill(session_id: uuid.UUID, reason: str) -> None:
    for run in [r for r in list(runs_here.values()) if r.session.id == session_id]:
        await execution_cancel_local(execution_id=run.execution_id)
        try:
            await asyncio.wait_for(run.done.wait(), 10)
        except asyncio.TimeoutError:
            log.warning("run %s did not stop before its API sandbox was killed", run.execution_id)
    if sandboxes.sandbox_is_held(session_id=session_id):
        await sandboxes.sandbox_release(session_id=session_id, reason=reason)
    else:
        await sandboxes.sandbox_restart(session_id=session_id, reason=reason)
    await db(_mark_killed_sync)(session_id=session_id)
    await _discard_workspace(session_id)


async def _discard_workspace(session_id: uuid.UUID) -> None:
    """Delete a killed sandbox's files, as E2B's go with its sandbox (the session's history stays)."""
    try:
        backend = get_backend()
    except Exception:  # no backend loads: nothing of it on disk to remove here
        return
    discard = getattr(backend, "discard_workspace", None)  # beyond the Protocol: the local backend has it
    if discard is not None:
        await asyncio.to_thread(discard, str(session_id))


def _mark_killed_sync(*, session_id: uuid.UUID) -> None:
    now = timezone.now()
    with transaction.atomic():
        ApiSandbox.objects.filter(pk=session_id, killed_at__isnull=True).update(killed_at=now)
        ChatSession.objects.filter(pk=session_id).update(status=ChatSession.Status.CLOSED, sandbox_id="")
        # A run of another process that didn't hear the stop ends with its sandbox; none stays queued.
        Execution.objects.filter(session_id=session_id, status=Execution.Status.QUEUED).update(
            status=Execution.Status.CANCELLED, finished_at=now
        )
    api_sandboxes_changed()


async def api_sandboxes_expire() -> list[str]:
    """Kill every API sandbox whose end time has passed (E2B's timeout, or ended early because its
    key was revoked or its owner deactivated: lease reason "revoked"). Returns their ids."""
    due = await db(_due_sync)(now=timezone.now())
    for sandbox in due:
        revoked = bool(api_sandbox_refusal(sandbox=sandbox))
        await api_sandbox_kill(sandbox=sandbox, reason=SandboxLease.EndReason.REVOKED if revoked else SandboxLease.EndReason.CLOSED)
    return [sandbox.sandbox_id for sandbox in due]


def _due_sync(*, now: datetime) -> list[ApiSandbox]:
    return list(ApiSandbox.objects.select_related("session", "session__owner", "api_key").filter(killed_at__isnull=True, end_at__lte=now)[:100])


# --- contexts ----------------------------------------------------------------------------------


def context_kernel(context: dict[str, Any]) -> str:
    """The name of the context's kernel in its sandbox ("": its language's default one)."""
    return "" if context.get("default") else str(context["id"])


def api_context_create_sync(*, sandbox: ApiSandbox, language: str, cwd: str, default: bool = False) -> dict[str, Any]:
    """A new context of `language` at `cwd` (the language's default context when `default` and one
    exists already). Raises ValueError for too many contexts: each is a kernel, so at most
    SANDBOX_KERNELS_MAX (a language's default context, made on its first run, is never refused:
    there are five at most, and the sandbox itself refuses a kernel past the limit)."""
    with transaction.atomic():
        row = ApiSandbox.objects.select_for_update().get(pk=sandbox.pk)
        if default:
            for context in row.contexts:
                if context["language"] == language and context.get("default"):
                    sandbox.contexts = row.contexts
                    return context
        most = min(CONTEXTS_MAX, settings.SANDBOX_KERNELS_MAX)
        if not default and len(row.contexts) >= most:
            raise ValueError(f"a sandbox has at most {most} code contexts, each a kernel of its own "
                             f"(SANDBOX_KERNELS_MAX); remove one first")
        context = _new_context(language, cwd, default=default)
        row.contexts = [*row.contexts, context]
        row.save(update_fields=["contexts"])
    sandbox.contexts = row.contexts
    return context


def api_context_remove_sync(*, sandbox: ApiSandbox, context_id: str) -> bool:
    """Forget a context (its kernel is stopped by `api_context_stop`); False when unknown."""
    with transaction.atomic():
        row = ApiSandbox.objects.select_for_update().get(pk=sandbox.pk)
        kept = [c for c in row.contexts if c["id"] != context_id]
        if len(kept) == len(row.contexts):
            return False
        row.contexts = kept
        row.save(update_fields=["contexts"])
    sandbox.contexts = kept
    return True


# --- the live sandbox under an API sandbox ----------------------------------------------------------


async def api_sandbox_handle(*, sandbox: ApiSandbox) -> Sandbox:
    """The session's live sandbox, acquired as a run gets it (reused, reconnected or new, with its
    lease); for the files and commands routes. Restarts its idle clock. Raises SandboxError."""
    acquired = await sandboxes.sandbox_acquire(session=sandbox.session)
    sandboxes.sandbox_touch(session_id=sandbox.session_id)
    return acquired.sandbox


async def api_context_restart(*, sandbox: ApiSandbox, context: dict[str, Any]) -> bool:
    """Restart the context's kernel (its variables go); False when the backend can't restart one kernel."""
    handle = await api_sandbox_handle(sandbox=sandbox)
    restart = getattr(handle, "restart_language", None)  # beyond the Protocol: the local backend has it
    if restart is None:
        return False
    await restart(context["language"], context_kernel(context))
    return True


async def api_context_stop(*, sandbox: ApiSandbox, context: dict[str, Any]) -> None:
    """Stop a removed context's kernel, if its sandbox is live here (none is started for it)."""
    name = context_kernel(context)
    handle = sandboxes.sandbox_held_here(session_id=sandbox.session_id)
    stop = getattr(handle, "restart_language", None)  # beyond the Protocol: the local backend has it
    if name and stop is not None:
        try:
            await stop(context["language"], name)
        except SandboxError:
            pass  # closed meanwhile: its kernels went with it
