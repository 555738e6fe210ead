"""Django admin: sessions, runs (with their output inline), leases and server processes.

Search by user, status, language and date (date_hierarchy); list columns show what an auditor
looks for first.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from runner.models import ChatSession, Execution, OutputChunk, SandboxLease, ServerProcess


class RecordAdmin(admin.ModelAdmin):
    """A record of what happened (runs, leases, processes): viewable, never added, edited or deleted here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ExecutionInline(admin.TabularInline):
    model = Execution
    fields = ("seq", "language", "status", "created_at", "duration_ms", "truncated")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "language", "backend", "status", "run_count", "last_activity_at", "created_at")
    list_filter = ("status", "language", "backend", "created_at")
    search_fields = ("title", "owner__username", "owner__email", "id")
    date_hierarchy = "created_at"
    readonly_fields = ("id", "created_at", "updated_at", "last_activity_at", "sandbox_id")
    list_select_related = ("owner",)
    inlines = [ExecutionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatSession]:
        from django.db.models import Count

        return super().get_queryset(request).annotate(_run_count=Count("executions"))

    @admin.display(description="runs", ordering="_run_count")
    def run_count(self, obj: ChatSession) -> int:
        return getattr(obj, "_run_count", 0)


class OutputChunkInline(admin.TabularInline):
    model = OutputChunk
    fields = ("index", "kind", "text", "data")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0


@admin.register(Execution)
class ExecutionAdmin(RecordAdmin):
    list_display = ("id", "session", "seq", "user", "language", "status", "created_at", "duration_ms", "stdout_bytes", "stderr_bytes", "truncated")
    list_filter = ("status", "language", "truncated", "created_at")
    search_fields = ("user__username", "user__email", "session__title", "code", "error_name", "=id")
    date_hierarchy = "created_at"
    list_select_related = ("session", "user")
    readonly_fields = (
        "session", "seq", "user", "client_id", "created_at", "started_at", "finished_at", "duration_ms",
        "stdout_bytes", "stderr_bytes", "truncated", "owner_boot_id", "notice",
    )
    inlines = [OutputChunkInline]


@admin.register(SandboxLease)
class SandboxLeaseAdmin(RecordAdmin):
    list_display = ("__str__", "sandbox_id", "user", "session", "backend", "vcpus", "memory_mb", "started_at", "ended_at", "end_reason", "billed", "cost")
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
    search_fields = ("boot_id", "hostname")
    readonly_fields = ("boot_id", "hostname", "pid", "started_at", "seen_at")
