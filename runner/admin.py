"""Django admin: sessions, runs (their code and output rendered as the chat shows them), leases
and server processes.

Search by user, status, language and date (date_hierarchy); every list is newest first; list
columns show what an auditor looks for first. Sessions and runs are the audit trail: read-only,
never deleted here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from runner import selectors, services
from runner.models import (
    Assignment,
    Submission,
    AdminAction,
    ApiKey,
    ApiSandbox,
    BudgetAlert,
    ChatSession,
    Classroom,
    Comment,
    Execution,
    SandboxLease,
    ServerProcess,
    UserQuota,
)


class ReadOnlyThroughAccessRule:
    """Changelists ask the one access rule (`selectors.sessions_visible_to`), and runs and comments
    are audited here, never edited: admins see everything, read-only."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class RecordAdmin(admin.ModelAdmin):
    """A record of what happened (runs, leases, processes): viewable, never added, edited or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# A run's admin page renders at most this many output chunks (the chat's "show all" has the rest).
ADMIN_OUTPUT_CHUNKS = 2000


def person_text(user: Any) -> str:
    """"Alice Liddell <alice@example.org> (alice)": the full name and email where set, and the username."""
    if user is None:
        return "(deleted)"
    name = user.get_full_name().strip()
    email = (user.email or "").strip()
    parts = [name] if name else []
    if email:
        parts.append(f"<{email}>")
    return f"{' '.join(parts)} ({user.get_username()})" if parts else user.get_username()


def chat_link(session: ChatSession) -> SafeString:
    return format_html('<a href="{}" class="chat-link">View as a chat</a>', reverse("session_detail", args=[session.pk]))


class ExecutionInline(admin.TabularInline):
    model = Execution
    fields = ("seq", "language", "status", "created_at", "duration_ms", "truncated")
    readonly_fields = fields
    ordering = ("-seq",)
    extra = 0
    show_change_link = True
    can_delete = False


@admin.register(ChatSession)
class ChatSessionAdmin(ReadOnlyThroughAccessRule, admin.ModelAdmin):
    """Sessions are part of the audit trail: viewable (with a link to the chat), never deleted here."""

    list_display = ("title", "owner_display", "language", "backend", "status", "run_count", "last_activity_at", "created_at", "chat")
    list_filter = ("status", "language", "backend", "created_at")
    search_fields = ("title", "owner__username", "owner__email", "owner__first_name", "owner__last_name", "id")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    fields = ("chat", "id", "title", "owner_display", "language", "backend", "status", "sandbox_id", "created_at", "updated_at", "last_activity_at")
    readonly_fields = fields
    list_select_related = ("owner",)
    inlines = [ExecutionInline]

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="view")
    def chat(self, obj: ChatSession) -> SafeString:
        return chat_link(obj)

    @admin.display(description="owner", ordering="owner__username")
    def owner_display(self, obj: ChatSession) -> str:
        return person_text(obj.owner)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatSession]:
        from django.db.models import Count

        visible = selectors.sessions_visible_to(user=request.user)
        return super().get_queryset(request).filter(pk__in=visible.values("pk")).annotate(_run_count=Count("executions"))

    @admin.display(description="runs", ordering="_run_count")
    def run_count(self, obj: ChatSession) -> int:
        return getattr(obj, "_run_count", 0)


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyThroughAccessRule, RecordAdmin):
    """A run as the chat shows it: its code in a monospace block, its output and traceback rendered
    by the page's own renderer (selectors.output_blocks: ANSI colours become colour, HTML is sanitised)."""

    list_display = ("id", "session", "seq", "user_display", "language", "status", "created_at", "duration_ms", "stdout_bytes", "stderr_bytes", "truncated")
    list_filter = ("status", "language", "truncated", "created_at")
    search_fields = ("user__username", "user__email", "user__first_name", "user__last_name", "session__title", "code", "error_name", "=id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-id")
    list_select_related = ("session", "user")
    fields = (
        "session", "chat", "seq", "user_display", "language", "status", "notice", "code_block", "output", "error_block",
        "client_id", "created_at", "started_at", "finished_at", "duration_ms", "stdout_bytes", "stderr_bytes", "truncated", "owner_boot_id",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ("runner/admin_records.css",)}

    @admin.display(description="user", ordering="user__username")
    def user_display(self, obj: Execution) -> str:
        return person_text(obj.user)

    @admin.display(description="view")
    def chat(self, obj: Execution) -> SafeString:
        return format_html('<a href="{}#run-{}" class="chat-link">View in the chat</a>', reverse("session_detail", args=[obj.session_id]), obj.pk)

    @admin.display(description="code")
    def code_block(self, obj: Execution) -> SafeString:
        return format_html('<pre class="run-code" data-language="{}">{}</pre>', obj.language, obj.code)

    @admin.display(description="output")
    def output(self, obj: Execution) -> SafeString:
        chunks = list(obj.chunks.order_by("index")[: ADMIN_OUTPUT_CHUNKS + 1])
        if not chunks:
            return format_html('<p class="run-output">{}</p>', "No output.")
        more = len(chunks) > ADMIN_OUTPUT_CHUNKS
        blocks = selectors.output_blocks(chunks[:ADMIN_OUTPUT_CHUNKS])
        markup = render_to_string("runner/_output.html", {"blocks": blocks, "whole": False})
        tail = format_html('<p class="out-note">{}</p>', f"Only the first {ADMIN_OUTPUT_CHUNKS} output chunks are shown; the chat has the rest.") if more else ""
        return format_html('<div class="run-output">{}{}</div>', SafeString(markup), tail)

    @admin.display(description="error")
    def error_block(self, obj: Execution) -> SafeString | str:
        if not obj.error_name:
            return "-"
        traceback = "\n".join(str(line) for line in obj.traceback) if obj.traceback else f"{obj.error_name}: {obj.error_value}"
        return format_html('<div class="run-output"><pre class="out traceback">{}</pre></div>', SafeString(selectors.ansi_to_html(traceback)))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
        visible = selectors.sessions_visible_to(user=request.user)
        return super().get_queryset(request).filter(session__in=visible.values("pk"))


@admin.register(SandboxLease)
class SandboxLeaseAdmin(RecordAdmin):
    list_display = ("__str__", "sandbox_id", "user", "session", "backend", "vcpus", "memory_mb", "started_at", "ended_at", "end_reason", "billed", "cost")
    ordering = ("-started_at", "-id")
    list_filter = ("backend", "end_reason", "started_at")
    search_fields = ("user__username", "user__email", "sandbox_id", "session__title")
    date_hierarchy = "started_at"
    list_select_related = ("user", "session")

    @admin.display(description="billed s")
    def billed(self, obj: SandboxLease) -> str:
        return f"{obj.billed_seconds:.0f}"

    @admin.display(description="est. $")
    def cost(self, obj: SandboxLease) -> str:
        return f"{obj.estimated_cost_usd:.4f}"


@admin.register(ServerProcess)
class ServerProcessAdmin(RecordAdmin):
    list_display = ("boot_id", "hostname", "pid", "started_at", "seen_at")
    ordering = ("-started_at",)
    search_fields = ("boot_id", "hostname")
    readonly_fields = ("boot_id", "hostname", "pid", "started_at", "seen_at")


@admin.register(Classroom)
class ClassroomAdmin(admin.ModelAdmin):
    list_display = ("name", "join_code", "teacher_names", "student_count", "created_at", "archived_at")
    ordering = ("-created_at",)
    list_filter = ("archived_at", "created_at")
    search_fields = ("name", "join_code", "teachers__username", "students__username")
    filter_horizontal = ("teachers", "students")
    readonly_fields = ("join_code", "created_at")
    actions = ["regenerate_join_codes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Classroom]:
        return super().get_queryset(request).prefetch_related("teachers", "students")

    @admin.display(description="teachers")
    def teacher_names(self, obj: Classroom) -> str:
        return ", ".join(t.get_username() for t in obj.teachers.all())

    @admin.display(description="students")
    def student_count(self, obj: Classroom) -> int:
        return len(obj.students.all())

    @admin.action(description="New join code (old codes stop working)")
    def regenerate_join_codes(self, request: HttpRequest, queryset: QuerySet[Classroom]) -> None:
        for classroom in queryset:
            services.classroom_code_regenerate(classroom=classroom)

    def save_related(self, request: HttpRequest, form: object, formsets: object, change: bool) -> None:
        # Memberships edited here end access at once too: recheck every student before and after.
        before = set(form.instance.students.values_list("pk", flat=True)) if change else set()  # type: ignore[attr-defined]
        super().save_related(request, form, formsets, change)  # type: ignore[arg-type]
        after = set(form.instance.students.values_list("pk", flat=True))  # type: ignore[attr-defined]
        services.access_recheck_for_students(student_ids=before | after)

    def delete_model(self, request: HttpRequest, obj: Classroom) -> None:
        students = list(obj.students.values_list("pk", flat=True))
        super().delete_model(request, obj)
        services.access_recheck_for_students(student_ids=students)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Classroom]) -> None:
        students = list(Classroom.students.through.objects.filter(classroom__in=queryset).values_list("user_id", flat=True))
        super().delete_queryset(request, queryset)
        services.access_recheck_for_students(student_ids=students)


@admin.register(Comment)
class CommentAdmin(ReadOnlyThroughAccessRule, admin.ModelAdmin):
    list_display = ("id", "author", "execution", "created_at", "edited_at", "deleted_at")
    ordering = ("-created_at",)
    list_filter = ("created_at",)
    search_fields = ("author__username", "body", "=execution__id")
    date_hierarchy = "created_at"
    list_select_related = ("author", "execution")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Comment]:
        visible = selectors.sessions_visible_to(user=request.user)
        return super().get_queryset(request).filter(execution__session__in=visible.values("pk"))


# --- usage, quotas and budgets (the usage view itself is runner/admin_usage.py) ---------------------


@admin.register(UserQuota)
class UserQuotaAdmin(admin.ModelAdmin):
    """Per-user overrides of the QUOTA_* defaults: empty uses the default, 0 means no limit."""

    list_display = ("user", "sandbox_seconds_per_day", "runs_per_day", "concurrent_runs", "usd_per_month", "live_sandboxes", "updated_at")
    search_fields = ("user__username", "user__email")
    autocomplete_fields = ("user",)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ("user", "month", "percent", "spent_usd", "budget_usd", "created_at")
    ordering = ("-created_at",)
    list_filter = ("percent", "month")
    search_fields = ("user__username",)
    readonly_fields = ("user", "month", "percent", "spent_usd", "budget_usd", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AdminAction)
class AdminActionAdmin(admin.ModelAdmin):
    """The audit log of admin actions on users' spending (recorded by the usage view)."""

    list_display = ("created_at", "actor", "kind", "target_user", "execution", "outcome", "reason")
    ordering = ("-created_at",)
    list_filter = ("kind", "created_at")
    search_fields = ("actor__username", "target_user__username", "reason")
    readonly_fields = ("created_at", "actor", "kind", "target_user", "execution", "outcome", "reason")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AdminAction | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AdminAction | None = None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys of the E2B-compatible API: who, when made and last used, revoked. Only the HMAC is stored."""

    list_display = ("name", "owner", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    ordering = ("-created_at",)
    list_filter = ("created_at", "expires_at", "revoked_at")
    search_fields = ("name", "owner__username", "prefix")
    list_select_related = ("owner",)
    readonly_fields = ("owner", "name", "prefix", "key_hash", "created_at", "last_used_at")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.revoked_at is not None and "revoked_at" in form.changed_data:
            services.api_sandboxes_end_now(api_key_ids=[obj.pk])  # as revoking on the keys page does
        if obj.expires_at is not None and "expires_at" in form.changed_data:
            services.api_key_expiry_changed(api_key_id=obj.pk)  # its sandboxes end by then


@admin.register(ApiSandbox)
class ApiSandboxAdmin(admin.ModelAdmin):
    list_display = ("sandbox_id", "session", "template", "started_at", "end_at", "killed_at")
    ordering = ("-started_at",)
    list_filter = ("template", "started_at")
    search_fields = ("sandbox_id", "session__title", "session__owner__username")
    list_select_related = ("session",)
    # envVars may hold the user's secrets: their names show, their values never do.
    exclude = ("envs",)
    readonly_fields = ("session", "sandbox_id", "api_key", "template", "metadata", "env_names", "contexts", "started_at", "end_at", "killed_at")

    @admin.display(description="envs")
    def env_names(self, obj: ApiSandbox) -> str:
        return ", ".join(f"{name}=********" for name in sorted(obj.envs)) or "-"


@admin.register(Assignment)
class AssignmentAdmin(RecordAdmin):
    """Audited here; teachers set and edit assignments on their class's page."""

    list_display = ("title", "classroom", "language", "due_at", "points", "show_checks", "created_at")
    list_filter = ("language", "show_checks")
    search_fields = ("title", "classroom__name")
    list_select_related = ("classroom",)


@admin.register(Submission)
class SubmissionAdmin(RecordAdmin):
    """Hand-ins and "Check my work"s, audited here; teachers grade them on the assignment's page."""

    list_display = ("__str__", "student", "is_hand_in", "created_at", "late", "checks_status", "checks_passed", "checks_total", "score")
    list_filter = ("is_hand_in", "late", "checks_status")
    search_fields = ("student__username", "assignment__title")
    list_select_related = ("assignment", "student")
