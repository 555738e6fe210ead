"""Reads for the live stream: replay after a point, the `last` pointer sent in `hello`, and who owns a run."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Max, Q

from runner import events
from runner.db import db
from runner.events import LastPointer
from runner.models import Execution, OutputChunk

_TERMINAL = {s.value for s in Execution.Status} - {s.value for s in Execution.ACTIVE}


def _execution_last_pointer_sync(*, session_id: uuid.UUID) -> LastPointer | None:
    latest = (
        Execution.objects.filter(session_id=session_id)
        .order_by("-seq")
        .annotate(last_index=Max("chunks__index"))
        .values("pk", "last_index")
        .first()
    )
    if latest is None:
        return None
    return {"execution_id": latest["pk"], "index": latest["last_index"] if latest["last_index"] is not None else -1}


async def execution_last_pointer(*, session_id: uuid.UUID) -> LastPointer | None:
    """The session's newest run and its last stored output index (-1 if none yet), or None
    when the session has no runs."""
    return await db(_execution_last_pointer_sync)(session_id=session_id)


def execution_owner_sync(*, execution_id: int, session_id: uuid.UUID) -> tuple[str, str] | None:
    """(status, owner boot id) of the session's run `execution_id`, or None when it has no such run."""
    return Execution.objects.filter(pk=execution_id, session_id=session_id).values_list("status", "owner_boot_id").first()


def _finished_frame(execution: Execution) -> events.FinishedFrame:
    return {
        "type": "execution.finished", "execution_id": execution.pk, "status": execution.status,
        "duration_ms": execution.duration_ms, "truncated": execution.truncated,
    }


def _execution_replay_sync(*, session_id: uuid.UUID, after_execution: int, after_index: int) -> list[dict[str, Any]]:
    executions = list(
        Execution.objects.filter(session_id=session_id, pk__gte=after_execution)
        .order_by("seq")
        .only("pk", "seq", "client_id", "code", "language", "status", "started_at", "notice", "duration_ms", "truncated")
    )
    if not executions:
        return []
    chunks_by_execution: dict[int, list[OutputChunk]] = {}
    chunks = OutputChunk.objects.filter(
        Q(execution_id=after_execution, index__gt=after_index) | Q(execution_id__in=[e.pk for e in executions if e.pk > after_execution])
    ).order_by("execution_id", "index")
    for chunk in chunks:
        chunks_by_execution.setdefault(chunk.execution_id, []).append(chunk)
    frames: list[dict[str, Any]] = []
    for execution in executions:
        if execution.pk > after_execution:
            frames.append({
                "type": "execution.queued", "execution_id": execution.pk, "seq": execution.seq,
                "client_id": execution.client_id, "code": execution.code, "language": execution.language,
            })
            if execution.started_at is not None:
                frames.append(dict(events.started_frame(execution.pk, execution.notice)))
        for chunk in chunks_by_execution.get(execution.pk, []):
            chunk_dict: events.Chunk = {"index": chunk.index, "kind": chunk.kind, "text": chunk.text, "data": chunk.data}  # type: ignore[typeddict-item]
            frames.append(dict(events.output_frame(execution.pk, chunk_dict)))
        if execution.status in _TERMINAL:
            frames.append(dict(_finished_frame(execution)))
    return frames


async def execution_replay(*, session_id: uuid.UUID, after_execution: int, after_index: int) -> list[dict[str, Any]]:
    """Every stored event of the session after (after_execution, after_index), as frames, in order.

    For `after_execution` itself: its output after `after_index`, and `finished` if it has
    finished (a client may have missed it; treat `finished` as idempotent). For later runs:
    `queued`, `started`, every output, and `finished`, as far as each has got.
    """
    return await db(_execution_replay_sync)(session_id=session_id, after_execution=after_execution, after_index=after_index)
