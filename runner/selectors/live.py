"""The admin's view of now (`/admin/live/`): every live sandbox on every process, and each
process's capacity and heartbeat.

A live sandbox is an open lease. Its owner, session, class, backend, process and times come from
rows; its CPU and memory from the figures its owning process publishes in its `ServerProcess`
row every LIVE_STATS_S (services/live.py): this never reads another process's cgroups, so it
works the same with several Daphnes on several hosts. A page is four queries whatever the count:
open leases (with session, class and user), server processes, the sessions' active runs, and
(when any wait) the sessions waiting in a capacity queue.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from runner.models import ChatSession, Execution, SandboxLease, ServerProcess
from runner.pricing import rate_per_s

MIB = 1024 * 1024


@dataclass(frozen=True)
class LiveRun:
    execution_id: int
    seq: int
    status: str  # queued or running
    since: datetime  # started, or created while still queued
    elapsed_s: float


@dataclass(frozen=True)
class LiveSandbox:
    lease_id: int
    session_id: uuid.UUID
    session_title: str
    session_kind: str
    user_id: int
    username: str
    full_name: str
    email: str
    classroom: str
    backend: str
    sandbox_id: str
    boot_id: str
    host: str
    pid: int | None
    process_alive: bool
    started_at: datetime
    last_activity_at: datetime
    cpu_percent: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    measured: bool  # its process has published figures for it (False: too new, or the process is gone)
    run: LiveRun | None
    cost_usd: float

    @property
    def owner_text(self) -> str:
        return self.full_name or self.username


@dataclass(frozen=True)
class LiveProcess:
    boot_id: str
    hostname: str
    pid: int
    started_at: datetime
    seen_at: datetime
    heartbeat_age_s: float
    alive: bool
    stats_at: datetime | None
    backend: str
    capacity: dict[str, Any]
    queued: int  # sessions waiting here for room
    sandboxes: int  # open leases it owns


@dataclass(frozen=True)
class Waiting:
    session_id: uuid.UUID
    session_title: str
    username: str
    full_name: str
    boot_id: str
    since: datetime
    waited_s: float


@dataclass
class LiveReport:
    now: datetime
    sandboxes: list[LiveSandbox]
    processes: list[LiveProcess]
    waiting: list[Waiting]
    runs_queued: int  # runs queued on the live sandboxes' sessions and in the capacity queue
    runs_running: int
    by_backend: dict[str, int] = field(default_factory=dict)


def _sort_value(row: LiveSandbox, key: str) -> Any:
    """What `?sort=<key>` orders by; unknown figures (None) sort last whichever the direction."""
    return {
        "owner": (row.full_name.split()[-1].lower() if row.full_name.strip() else row.username.lower(), row.username.lower()),
        "session": row.session_title.lower(),
        "class": row.classroom.lower(),
        "backend": row.backend,
        "process": (row.host, row.pid or 0),
        "started": row.started_at,
        "activity": row.last_activity_at,
        "cpu": row.cpu_percent,
        "memory": row.memory_bytes,
        "run": row.run.elapsed_s if row.run else None,
        "cost": row.cost_usd,
    }[key]


SORT_KEYS = ("owner", "session", "class", "backend", "process", "started", "activity", "cpu", "memory", "run", "cost")


def live_sort(rows: list[LiveSandbox], *, sort: str, descending: bool) -> list[LiveSandbox]:
    """The rows ordered by `sort` (one of SORT_KEYS), ties broken by start time (newest first)."""
    rows = sorted(rows, key=lambda r: r.started_at, reverse=True)
    known = [r for r in rows if _sort_value(r, sort) is not None]
    unknown = [r for r in rows if _sort_value(r, sort) is None]
    return sorted(known, key=lambda r: _sort_value(r, sort), reverse=descending) + unknown


def live_report(*, sort: str = "started", descending: bool = True) -> LiveReport:
    """Every open lease as a `LiveSandbox` (sorted), every known server process with its published
    capacity, and who waits for room."""
    now = timezone.now()
    stale = timedelta(seconds=settings.SERVER_STALE_S)
    processes = {p.boot_id: p for p in ServerProcess.objects.all()}
    leases = list(
        SandboxLease.objects.open().select_related("session", "session__classroom", "user").order_by("-started_at")
    )
    session_ids = [lease.session_id for lease in leases if lease.session_id is not None]
    waiting_raw: list[tuple[str, str, str]] = []  # (boot id, session id, since)
    for process in processes.values():
        for entry in (process.live_stats or {}).get("queue", []):
            waiting_raw.append((process.boot_id, str(entry.get("session_id", "")), str(entry.get("since", ""))))
    waiting_ids = [_uuid(sid) for _b, sid, _s in waiting_raw]
    active = (
        Execution.objects.active().filter(session_id__in=[*session_ids, *[w for w in waiting_ids if w]])
        .order_by("session_id", "seq").values_list("session_id", "pk", "seq", "status", "started_at", "created_at")
    )
    runs: dict[uuid.UUID, LiveRun] = {}
    queued = running = 0
    for sid, pk, seq, status, started_at, created_at in active:
        queued += status == Execution.Status.QUEUED
        running += status == Execution.Status.RUNNING
        since = started_at or created_at
        current = runs.get(sid)
        # The run in progress: the running one, else the first in line.
        if current is None or (status == Execution.Status.RUNNING and current.status != Execution.Status.RUNNING):
            runs[sid] = LiveRun(pk, seq, status, since, max((now - since).total_seconds(), 0.0))

    rows = []
    by_backend: dict[str, int] = {}
    for lease in leases:
        owner = processes.get(lease.owner_boot_id)
        alive = owner is not None and now - owner.seen_at <= stale
        figures = ((owner.live_stats or {}).get("sandboxes", {}).get(lease.sandbox_id) if owner is not None else None) or {}
        session = lease.session
        user = lease.user
        by_backend[lease.backend] = by_backend.get(lease.backend, 0) + 1
        rows.append(LiveSandbox(
            lease_id=lease.pk,
            session_id=session.pk if session is not None else uuid.UUID(int=0),
            session_title=session.title if session is not None else "(a deleted session)",
            session_kind=session.kind if session is not None else "",
            user_id=user.pk, username=user.get_username(), full_name=user.get_full_name().strip(), email=user.email or "",
            classroom=session.classroom.name if session is not None and session.classroom is not None else "",
            backend=lease.backend, sandbox_id=lease.sandbox_id, boot_id=lease.owner_boot_id,
            host=owner.hostname if owner is not None else "", pid=owner.pid if owner is not None else None,
            process_alive=alive, started_at=lease.started_at,
            last_activity_at=session.last_activity_at if session is not None else lease.started_at,
            cpu_percent=figures.get("cpu_percent") if alive else None,
            memory_bytes=figures.get("memory_bytes") if alive else None,
            memory_limit_bytes=figures.get("memory_limit_bytes") or lease.memory_mb * MIB,
            measured=alive and bool(figures),
            run=runs.get(session.pk) if session is not None else None,
            cost_usd=lease.billed_seconds * rate_per_s(backend=lease.backend, vcpus=lease.vcpus, memory_mb=lease.memory_mb),
        ))

    owned: dict[str, int] = {}
    for lease in leases:
        owned[lease.owner_boot_id] = owned.get(lease.owner_boot_id, 0) + 1
    process_rows = sorted(
        (
            LiveProcess(
                boot_id=p.boot_id, hostname=p.hostname, pid=p.pid, started_at=p.started_at, seen_at=p.seen_at,
                heartbeat_age_s=max((now - p.seen_at).total_seconds(), 0.0), alive=now - p.seen_at <= stale,
                stats_at=p.live_stats_at, backend=str((p.live_stats or {}).get("backend", "")),
                capacity=dict((p.live_stats or {}).get("capacity") or {}),
                queued=len((p.live_stats or {}).get("queue", [])), sandboxes=owned.get(p.boot_id, 0),
            )
            for p in processes.values()
        ),
        key=lambda p: (p.hostname, p.pid),
    )
    waiting = _waiting(waiting_raw, now)
    return LiveReport(
        now=now, sandboxes=live_sort(rows, sort=sort, descending=descending), processes=process_rows,
        waiting=waiting, runs_queued=queued, runs_running=running, by_backend=by_backend,
    )


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _waiting(raw: list[tuple[str, str, str]], now: datetime) -> list[Waiting]:
    ids = [u for u in (_uuid(sid) for _b, sid, _s in raw) if u is not None]
    if not ids:
        return []
    sessions = {s.pk: s for s in ChatSession.objects.filter(pk__in=ids).select_related("owner")}
    found = []
    for boot_id, sid, since_text in raw:
        session = sessions.get(_uuid(sid) or uuid.UUID(int=0))
        if session is None:
            continue
        try:
            since = datetime.fromisoformat(since_text)
        except ValueError:
            since = now
        found.append(Waiting(session.pk, session.title, session.owner.get_username(), session.owner.get_full_name().strip(),
                             boot_id, since, max((now - since).total_seconds(), 0.0)))
    return sorted(found, key=lambda w: w.since)
