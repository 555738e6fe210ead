"""The sweep: runs left `queued` or `running` by dead server processes become `interrupted`."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from runner import events
from runner.events import Chunk
from runner.models import ChatSession, Execution, OutputChunk, ServerProcess
from runner.services.output import NOTICE_MARKER, publish
from runner.services.runs import ACTIVE
from runner.services.runtime import db, live_boot_ids_sync

SWEEP_NOTE = "This run was interrupted: the server process running it stopped before it finished."


async def execution_sweep() -> int:
    """Runs left `queued` or `running` by dead processes become `interrupted`, with a note in
    their output; open sockets see it. Returns how many. Live processes' runs are untouched."""
    swept = await db(execution_sweep_sync)()
    for execution_id, session_id, chunk in swept:
        group = events.session_group(session_id)
        await publish(group, {"type": "execution.output", "execution_id": execution_id, "chunks": [chunk]})
        frame: events.FinishedFrame = {
            "type": "execution.finished", "execution_id": execution_id,
            "status": Execution.Status.INTERRUPTED.value, "duration_ms": None, "truncated": False,
        }
        await publish(group, {"type": "execution.finished", "frame": frame})
    return len(swept)


def execution_sweep_sync(*, owner_boot_ids: set[str] | None = None) -> list[tuple[int, uuid.UUID, Chunk]]:
    """Interrupt active runs owned by `owner_boot_ids`, or by every dead process when None."""
    runs = Execution.objects.active()
    if owner_boot_ids is None:
        runs = runs.exclude(owner_boot_id__in=live_boot_ids_sync())
        ServerProcess.objects.filter(seen_at__lt=timezone.now() - timedelta(days=1)).delete()
    else:
        runs = runs.filter(owner_boot_id__in=owner_boot_ids)
    swept: list[tuple[int, uuid.UUID, Chunk]] = []
    for execution in runs.only("pk", "session_id", "status"):
        with transaction.atomic():
            now = timezone.now()
            if not Execution.objects.filter(pk=execution.pk, status__in=ACTIVE).update(
                status=Execution.Status.INTERRUPTED, finished_at=now
            ):
                continue  # finished meanwhile
            last = OutputChunk.objects.filter(execution_id=execution.pk).aggregate(m=Max("index"))["m"]
            chunk: Chunk = {"index": (last if last is not None else -1) + 1, "kind": "stderr", "text": SWEEP_NOTE + "\n", "data": {NOTICE_MARKER: "interrupted"}}
            OutputChunk.objects.create(execution_id=execution.pk, **chunk)
            ChatSession.objects.filter(pk=execution.session_id, status=ChatSession.Status.RUNNING).update(status=ChatSession.Status.IDLE)
        swept.append((execution.pk, execution.session_id, chunk))
    return swept
