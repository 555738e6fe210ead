"""Sandpit's tables. Small per-row facts are properties; reusable filters are QuerySet methods."""

from __future__ import annotations

import datetime
import secrets
import uuid
from decimal import Decimal
from typing import ClassVar

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.utils import timezone

from runner.pricing import rate_per_s

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

    class Kind(models.TextChoices):
        CHAT = "chat"
        API = "api"  # a sandbox made through the E2B-compatible API (runner/e2b_api)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    title = models.CharField(max_length=200, default="Untitled session")
    language = models.CharField(max_length=16, choices=LANGUAGE_CHOICES, default="python")
    backend = models.CharField(max_length=16, blank=True, default="")
    # The backend's handle for this session's sandbox, or "" when none is live.
    sandbox_id = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IDLE)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.CHAT)
    # The class whose teachers may watch this session (while the owner is its student); None is private.
    classroom = models.ForeignKey(
        "Classroom", on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    # The assignment this is the student's session for (made by "Start"; one per student and assignment).
    assignment = models.ForeignKey(
        "Assignment", on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    last_activity_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-last_activity_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "assignment"], condition=models.Q(assignment__isnull=False), name="session_one_per_assignment"
            )
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.owner})"

    @property
    def group_name(self) -> str:
        return f"session_{self.id.hex}"


class ExecutionQuerySet(models.QuerySet["Execution"]):
    def active(self) -> "ExecutionQuerySet":
        return self.filter(status__in=Execution.ACTIVE)


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
        # An admin, a budget or a revoked key closed the sandbox under it (its notice says which): not the user's error.
        KILLED = "killed"

    # A run not finished yet: waiting its turn or running.
    ACTIVE: ClassVar[tuple[Status, ...]] = (Status.QUEUED, Status.RUNNING)

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
        indexes = [
            models.Index(fields=["session", "status"], name="execution_session_status"),
            # Usage: runs per user over a time range, covering (the report reads only the index;
            # quotas and the drill-down read a user's runs by time), and a user's active runs.
            models.Index(fields=["user", "created_at", "status", "duration_ms"], name="execution_user_usage"),
            models.Index(fields=["user", "status"], name="execution_user_status"),
        ]

    def __str__(self) -> str:
        return f"run {self.seq} of “{self.session.title}” ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


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
        BUDGET = "budget"  # the user passed a sandbox-time or $ limit; closed while idle
        ADMIN = "admin"  # an admin killed the user's sandboxes from the usage page
        REVOKED = "revoked"  # an API sandbox whose key was revoked or whose owner was deactivated
        REPLACED = "replaced"  # idle, closed to make room for the user's new one (QUOTA_LIVE_SANDBOXES)
        RECLAIMED = "reclaimed"  # idle the longest, closed so a run waiting for server capacity could start

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
        # Usage reports and quota checks read leases by time range, overall and per user.
        indexes = [
            # Covering: the usage report reads only this index.
            models.Index(fields=["started_at", "ended_at", "backend", "vcpus", "memory_mb", "user"], name="lease_usage"),
            models.Index(fields=["user", "started_at"], name="lease_user_started"),
            models.Index(fields=["ended_at"], name="lease_ended"),
        ]

    @property
    def billed_seconds(self) -> float:
        end = self.ended_at or timezone.now()
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def estimated_cost_usd(self) -> Decimal:
        """The lease's billed seconds at its backend's price for its size (runner.pricing)."""
        per_s = rate_per_s(backend=self.backend, vcpus=self.vcpus, memory_mb=self.memory_mb)
        return Decimal(str(round(self.billed_seconds * per_s, 6)))

    def __str__(self) -> str:
        minutes = round(self.billed_seconds / 60)
        length = f"{minutes} min" if minutes else f"{self.billed_seconds:.0f} s"
        # No session: it was deleted, or the sandbox ran an assignment's checks (services.checks).
        where = f"“{self.session.title}”" if self.session is not None else "no session (deleted, or assignment checks)"
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
    # What this process publishes for the admin's live view (services/live.py): its capacity and
    # each sandbox it holds with its CPU and memory, keyed by sandbox id; one write per beat.
    live_stats = models.JSONField(default=dict, blank=True)
    live_stats_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "server processes"

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} ({self.boot_id[:8]})"


# --- classrooms -------------------------------------------------------------------------------------

# Join codes are typed by students: no 0/O or 1/I/L. 10 characters of 31 is about 2^49.5 codes,
# and joining is rate-limited, so a code cannot be guessed.
JOIN_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
JOIN_CODE_LENGTH = 10


def new_join_code() -> str:
    """A fresh random join code (the model's default, so `Classroom.objects.create(name=...)` is enough)."""
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


class ClassroomQuerySet(models.QuerySet["Classroom"]):
    def open(self) -> "ClassroomQuerySet":
        return self.filter(archived_at__isnull=True)


class Classroom(models.Model):
    """A class: its teachers see the sessions in it of its current students (read-only) and comment on their runs."""

    name = models.CharField(max_length=200)
    teachers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="classrooms_taught", blank=True)
    students = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="classrooms_joined", blank=True)
    join_code = models.CharField(max_length=32, unique=True, default=new_join_code)
    created_at = models.DateTimeField(default=timezone.now)
    # An archived classroom can't be joined; its teachers still see what its students did.
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = ClassroomQuerySet.as_manager()

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class Comment(models.Model):
    """A teacher's feedback on one run, shown inline under it in the student's chat.

    Deleting keeps a tombstone (`deleted_at`, body cleared) so a socket that reconnects learns of it;
    `version` counts every change so a client keeps the newest state whatever order frames arrive in.
    """

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comments")
    body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    # When the session's owner first had it on screen (their page posts a seen mark); None: unread.
    # An edit clears it: the new text is unread again.
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"comment {self.pk} on {self.execution_id}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None
class UserQuota(models.Model):
    """One user's limits, overriding the QUOTA_* defaults field by field: None uses the default,
    0 means no limit for this user."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    sandbox_seconds_per_day = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the default; 0: no limit.")
    runs_per_day = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the default; 0: no limit.")
    concurrent_runs = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the default; 0: no limit.")
    usd_per_month = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Empty: the default; 0: no limit."
    )
    live_sandboxes = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the default; 0: no limit.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"limits of {self.user}"


class BudgetAlert(models.Model):
    """A user's spend crossed `percent` (80 or 100) of their monthly budget: recorded once per month."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget_alerts")
    month = models.DateField(help_text="The first day of the month, in TIME_ZONE.")
    percent = models.PositiveSmallIntegerField()
    spent_usd = models.DecimalField(max_digits=12, decimal_places=4)
    budget_usd = models.DecimalField(max_digits=10, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["user", "month", "percent"], name="budget_alert_once")]

    def __str__(self) -> str:
        return f"{self.user} at {self.percent}% of ${self.budget_usd} ({self.month:%Y-%m})"


class AdminAction(models.Model):
    """An admin's action on a user's spending (kill their sandboxes, stop a run): who, when, why."""

    class Kind(models.TextChoices):
        KILL_SANDBOXES = "kill_sandboxes"
        STOP_RUN = "stop_run"

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="admin_actions")
    target_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="admin_actions_received")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    execution = models.ForeignKey(Execution, null=True, blank=True, on_delete=models.SET_NULL, related_name="admin_actions")
    reason = models.TextField()
    # What it did, e.g. "closed 2 sandboxes" or "run 41 was running; stop sent".
    outcome = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.actor} {self.kind} on {self.target_user} at {self.created_at:%Y-%m-%d %H:%M}"
class SearchEntry(models.Model):
    """A row of the Postgres search table (migration 0007_search keeps it with triggers; nothing
    else writes it): a run's code and error (odd id, 2 * run id + 1) or one output chunk's text
    (even id, 2 * chunk id), with its owner and a stored tsvector. Read only by
    runner/selectors/search.py on Postgres; on SQLite the same name is an FTS5 table."""

    id = models.BigIntegerField(primary_key=True)
    owner_id = models.IntegerField()
    is_code = models.BooleanField()  # the run's code and error, else an output chunk
    execution_id = models.BigIntegerField()
    body = models.TextField()
    doc = SearchVectorField()

    class Meta:
        managed = False
        db_table = "runner_search"
class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def live(self) -> "ApiKeyQuerySet":
        """Not revoked (an expired key is still live: its owner can revoke it, freeing its name)."""
        return self.filter(revoked_at__isnull=True)

    def usable(self, *, now: datetime.datetime) -> "ApiKeyQuerySet":
        """Keys the API accepts at `now`: not revoked, not past their expiry."""
        return self.live().filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))


class ApiKey(models.Model):
    """A key for the E2B-compatible API. Only its HMAC-SHA256 (keyed with SECRET_KEY) is stored;
    the key itself is shown once, when made."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # The key's first characters ("e2b_1a2b3c"), so its owner can tell keys apart.
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # From then on the API refuses the key (401) and its sandboxes end, as for a revoked key.
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], condition=models.Q(revoked_at__isnull=True), name="api_key_unique_live_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner}, {self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


def new_api_sandbox_id() -> str:
    # Random and apart from the session's id (which teachers and admins see); the routes also
    # need the sandbox's token, derived from this id (services.apikeys).
    return secrets.token_hex(16)


class ApiSandbox(models.Model):
    """The E2B facts of a session made through the API: its template, metadata, envs, end time,
    and code contexts ([{"id", "language", "cwd"}], see runner/e2b_api/README in the module doc)."""

    session = models.OneToOneField(ChatSession, primary_key=True, on_delete=models.CASCADE, related_name="api_sandbox")
    # The id the API shows (32 hex characters, like a host label `<port>-<id>.<domain>` needs).
    sandbox_id = models.CharField(max_length=32, unique=True, default=new_api_sandbox_id)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="sandboxes")
    template = models.CharField(max_length=100, default="code-interpreter-v1")
    metadata = models.JSONField(default=dict, blank=True)
    envs = models.JSONField(default=dict, blank=True)
    contexts = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    end_at = models.DateTimeField(db_index=True)
    killed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"api sandbox {self.session_id}"


# --- assignments ------------------------------------------------------------------------------------


class Assignment(models.Model):
    """Work set to a class: instructions, starter code and files, an optional due date, and the
    teacher's checks (Python, run in a fresh sandbox after the student's runs; hidden from students
    unless `show_checks`)."""

    classroom = models.ForeignKey(Classroom, on_delete=models.CASCADE, related_name="assignments")
    title = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, default="", help_text="Markdown.")
    language = models.CharField(max_length=16, choices=LANGUAGE_CHOICES, default="python")
    starter_code = models.TextField(blank=True, default="")
    due_at = models.DateTimeField(null=True, blank=True)
    checks = models.TextField(blank=True, default="", help_text="Python: each top-level def check_*, or each assert block, is one check.")
    show_checks = models.BooleanField(default=False)
    points = models.PositiveIntegerField(default=10)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["classroom", models.F("due_at").asc(nulls_last=True), "pk"]

    def __str__(self) -> str:
        return f"{self.title} ({self.classroom})"

    def is_late_at(self, when: datetime.datetime) -> bool:
        return self.due_at is not None and when > self.due_at


class AssignmentFile(models.Model):
    """A starter file, copied into the student's workspace when they start (a plain name, no folders)."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    data = models.BinaryField()
    size_bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["assignment", "name"], name="assignment_file_unique_name")]

    def __str__(self) -> str:
        return self.name


class SubmissionQuerySet(models.QuerySet["Submission"]):
    def handed_in(self) -> "SubmissionQuerySet":
        return self.filter(is_hand_in=True)


class Submission(models.Model):
    """A snapshot of a student's session for an assignment: its runs and workspace files at that
    moment, and the checks' results. A hand-in (`is_hand_in`; the last one counts) or a "Check my
    work" (not handed in; only its check results are shown)."""

    class ChecksStatus(models.TextChoices):
        NONE = "none"  # the assignment has no checks
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        ERROR = "error"  # the checks could not run (no sandbox, quota): `checks_message` says why

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="submissions")
    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions")
    session = models.ForeignKey(ChatSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="submissions")
    is_hand_in = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    late = models.BooleanField(default=False)
    # [{"seq", "language", "code", "status", "error_name", "error_value", "duration_ms", "output"}], in run order.
    runs = models.JSONField(default=list, blank=True)
    files_bytes = models.PositiveBigIntegerField(default=0)
    files_note = models.CharField(max_length=300, blank=True, default="")  # e.g. files left out past the quota
    checks_status = models.CharField(max_length=8, choices=ChecksStatus.choices, default=ChecksStatus.QUEUED, db_index=True)
    checks_passed = models.PositiveIntegerField(default=0)
    checks_total = models.PositiveIntegerField(default=0)
    # [{"name", "passed", "message"}], one per check, in the checks' order.
    check_results = models.JSONField(default=list, blank=True)
    checks_message = models.CharField(max_length=500, blank=True, default="")
    checks_finished_at = models.DateTimeField(null=True, blank=True)
    # The server process running the checks (its boot id), so a dead one's claim is taken over.
    checks_owner_boot_id = models.CharField(max_length=64, blank=True, default="")
    score = models.DecimalField(max_digits=7, decimal_places=2, null=True, blank=True)
    feedback = models.TextField(blank=True, default="")
    graded_at = models.DateTimeField(null=True, blank=True)

    objects = SubmissionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["assignment", "student", "is_hand_in", "created_at"], name="submission_latest")]

    def __str__(self) -> str:
        return f"{'hand-in' if self.is_hand_in else 'check'} of {self.assignment.title} by {self.student}"

    @property
    def checks_pending(self) -> bool:
        return self.checks_status in (self.ChecksStatus.QUEUED, self.ChecksStatus.RUNNING)


class SubmissionFile(models.Model):
    """One workspace file as it was at the submission (a path relative to the workspace)."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024)
    data = models.BinaryField()
    size_bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path
