"""Sandpit's tables. Small per-row facts are properties; reusable filters are QuerySet methods."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

LANGUAGE_CHOICES = [
    ("python", "Python"),
    ("javascript", "JavaScript"),
    ("typescript", "TypeScript"),
    ("bash", "Bash"),
]


class ChatSession(models.Model):
    class Status(models.TextChoices):
        IDLE = "idle"
        RUNNING = "running"
        CLOSED = "closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    title = models.CharField(max_length=200, default="Untitled session")
    language = models.CharField(max_length=16, choices=LANGUAGE_CHOICES, default="python")
    backend = models.CharField(max_length=16, blank=True, default="")
    # The backend's handle for this session's sandbox, or "" when none is live.
    sandbox_id = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    last_activity_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-last_activity_at"]

    def __str__(self) -> str:
        return f"{self.title} ({self.owner})"

    @property
    def group_name(self) -> str:
        return f"session_{self.id.hex}"


class ExecutionQuerySet(models.QuerySet["Execution"]):
    def active(self) -> "ExecutionQuerySet":
        return self.filter(status__in=[Execution.Status.QUEUED, Execution.Status.RUNNING])


class Execution(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        TIMED_OUT = "timed_out"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"
        REJECTED = "rejected"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="executions")
    seq = models.PositiveIntegerField()
    code = models.TextField()
    language = models.CharField(max_length=16, choices=LANGUAGE_CHOICES)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="executions")
    client_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error_name = models.CharField(max_length=200, blank=True, default="")
    error_value = models.TextField(blank=True, default="")
    traceback = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    stdout_bytes = models.PositiveBigIntegerField(default=0)
    stderr_bytes = models.PositiveBigIntegerField(default=0)
    truncated = models.BooleanField(default=False)
    # Shown inline above the run's output, e.g. "A new sandbox was started; variables from earlier runs are gone."
    notice = models.CharField(max_length=300, blank=True, default="")
    # Which server process owns the run (its boot id), so a start-up sweep only touches dead owners.
    owner_boot_id = models.CharField(max_length=64, blank=True, default="", db_index=True)

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["session", "seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="execution_unique_seq")]
        # A session's active runs, read on every run start: cheap however long the session.
        indexes = [models.Index(fields=["session", "status"], name="execution_session_status")]

    def __str__(self) -> str:
        return f"run {self.seq} of “{self.session.title}” ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)


class OutputChunk(models.Model):
    class Kind(models.TextChoices):
        STDOUT = "stdout"
        STDERR = "stderr"
        RESULT = "result"
        ERROR = "error"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    text = models.TextField(blank=True, default="")
    # A MIME bundle for results; {"ename", "evalue", "traceback"} for errors.
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["execution", "index"]
        constraints = [models.UniqueConstraint(fields=["execution", "index"], name="chunk_unique_index")]


class SandboxLeaseQuerySet(models.QuerySet["SandboxLease"]):
    def open(self) -> "SandboxLeaseQuerySet":
        return self.filter(ended_at__isnull=True)


class SandboxLease(models.Model):
    """One sandbox's life, for billing: billed seconds are ended_at - started_at."""

    class EndReason(models.TextChoices):
        IDLE = "idle"
        CLOSED = "closed"
        GONE = "gone"
        SHUTDOWN = "shutdown"
        RESTART = "restart"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandbox_leases")
    session = models.ForeignKey(ChatSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="leases")
    backend = models.CharField(max_length=16)
    sandbox_id = models.CharField(max_length=200)
    vcpus = models.FloatField(default=1.0)
    memory_mb = models.PositiveIntegerField(default=512)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True, default="")
    # The server process (boot id) holding the sandbox, so a sweep can close leases of dead processes.
    owner_boot_id = models.CharField(max_length=64, blank=True, default="", db_index=True)

    objects = SandboxLeaseQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    @property
    def billed_seconds(self) -> float:
        end = self.ended_at or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def estimated_cost_usd(self) -> Decimal:
        """E2B's price for an E2B lease; a local one at the local rates (0 unless the usage settings set them)."""
        if self.backend == "e2b":
            per_vcpu_s, per_gib_s = settings.E2B_PRICE_PER_VCPU_S, settings.E2B_PRICE_PER_GIB_S
        else:
            per_vcpu_s = getattr(settings, "LOCAL_PRICE_PER_VCPU_S", 0.0)
            per_gib_s = getattr(settings, "LOCAL_PRICE_PER_GIB_S", 0.0)
        per_s = self.vcpus * per_vcpu_s + (self.memory_mb / 1024) * per_gib_s
        return Decimal(str(round(self.billed_seconds * per_s, 6)))

    def __str__(self) -> str:
        minutes = round(self.billed_seconds / 60)
        length = f"{minutes} min" if minutes else f"{self.billed_seconds:.0f} s"
        where = f"“{self.session.title}”" if self.session_id else "a deleted session"
        return f"{self.backend} lease of {where} by {self.user}, {length}{'' if self.ended_at else ' so far'}"


class ServerProcess(models.Model):
    """A live server process (one Daphne), by boot id. Runs and leases name their owner by boot id;
    a process whose heartbeat is stale (or whose pid is gone on this host) is dead, and a sweep
    interrupts its runs."""

    boot_id = models.CharField(max_length=64, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name_plural = "server processes"

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} ({self.boot_id[:8]})"
