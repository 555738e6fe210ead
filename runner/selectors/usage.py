"""Usage reports for admins: per user over a date range, per day (the chart), and one user's runs.

Every figure is one aggregate query (SQLite and Postgres); Python only shapes the grouped rows.
Days and months follow TIME_ZONE. Sandbox-seconds are lease lifetimes clipped to the range (an
open lease counts up to now); runs and execution-seconds count on the day the run was created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from runner.accounting import (
    day_start,
    day_windows,
    month_start,
    round_cents,
    seconds_exact,
    sql_datetime,
    sql_lease_clip,
    sql_lease_overlaps,
    sql_leases_covering,
    sql_param,
    sql_seconds,
    today_local,
    usd_exact,
)
from runner.models import AdminAction, BudgetAlert, Classroom, Execution, SandboxLease
from runner.pricing import rate_params, rate_per_s, sandbox_size, sql_rate_per_s
from runner.selectors.quotas import Limits, QuotaStatus, default_limits, quota_status_sync, user_limits_sync

# Sortable columns: the name in `?sort=` -> the report query's column.
SORT_COLUMNS: dict[str, str] = {
    "user": "username",
    "runs": "runs",
    "exec_s": "exec_ms",
    "sandbox_s": "sandbox_s",
    "e2b_usd": "e2b_usd",
    "local_usd": "local_usd",
    "usd": "usd",
    "errors": "errors",
    "timeouts": "timeouts",
    "killed": "killed",
    "name": "last_name",
    "last_active": "last_active",
    "budget_pct": "budget_pct",
}
Preset = Literal["today", "7d", "month"]


@dataclass(frozen=True)
class UsageRow:
    """One user's usage over the range (the totals row has user_id 0)."""

    user_id: int
    username: str
    runs: int
    exec_s: float
    e2b_s: float
    local_s: float
    e2b_usd: float
    local_usd: float
    errors: int
    timeouts: int
    last_active: datetime | None
    month_usd: float
    budget_usd: Decimal
    # Runs whose sandbox an admin, a budget or a revoked key closed: not the user's errors.
    killed: int = 0
    full_name: str = ""
    email: str = ""

    @property
    def sandbox_s(self) -> float:
        return self.e2b_s + self.local_s

    @property
    def usd(self) -> float:
        return self.e2b_usd + self.local_usd

    @property
    def budget_pct(self) -> int | None:
        """Month-to-date spend as a share of the monthly budget; None without a budget."""
        if not self.budget_usd:
            return None
        return int(Decimal(str(self.month_usd)) * 100 / self.budget_usd)


@dataclass(frozen=True)
class DayCost:
    day: date
    e2b_usd: float
    local_usd: float
    e2b_s: float
    local_s: float

    @property
    def usd(self) -> float:
        return self.e2b_usd + self.local_usd


@dataclass(frozen=True)
class UsageReport:
    start: date
    end: date
    rows: list[UsageRow]
    totals: UsageRow
    days: list[DayCost]
    sort: str
    descending: bool
    time_zone: str = field(default_factory=lambda: settings.TIME_ZONE)


def usage_range_preset(*, preset: str, now: datetime | None = None) -> tuple[date, date]:
    """(start, end) days, inclusive, for "today", "7d" (the last seven days) or "month" (this month)."""
    today = today_local(now=now)
    if preset == "today":
        return today, today
    if preset == "month":
        return month_start(today), today
    return date.fromordinal(today.toordinal() - 6), today


def _fetch(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _lease_ctes(lo: str, hi: str, *, key: str, sources: list[str]) -> str:
    """SQL: CTEs `ls_x` (each lease's clipped seconds in [lo, hi), computed once: materialized) and
    `ls(k, e2b_s, local_s, e2b_usd, local_usd)`, per `key`, split by backend. Each of `sources`
    is a FROM and WHERE of leases (alias `l`); their rows are added up."""
    select = f"SELECT {key} AS k, l.backend AS backend, {sql_lease_clip(lo, hi, '%(now)s')} AS s, {sql_rate_per_s()} AS rate"
    return f"""ls_x AS MATERIALIZED (
        {' UNION ALL '.join(f'{select} {source}' for source in sources)}
    ), ls AS (
        SELECT k, SUM(CASE WHEN backend = 'e2b' THEN s ELSE 0 END) AS e2b_s,
            SUM(CASE WHEN backend <> 'e2b' THEN s ELSE 0 END) AS local_s,
            SUM(CASE WHEN backend = 'e2b' THEN s * rate ELSE 0 END) AS e2b_usd,
            SUM(CASE WHEN backend <> 'e2b' THEN s * rate ELSE 0 END) AS local_usd
        FROM ls_x GROUP BY k
    )"""


def _runs_index() -> str:
    """SQLite's planner, without ANALYZE statistics, picks the created_at index and then reads every
    row; the covering (user, created_at, status, duration_ms) index is 10x faster for the report."""
    return "INDEXED BY execution_user_usage" if connection.vendor == "sqlite" else ""


def _runs_columns() -> str:
    return (
        "COUNT(*) AS runs, SUM(COALESCE(e.duration_ms, 0)) AS exec_ms,"
        " SUM(CASE WHEN e.status = 'failed' THEN 1 ELSE 0 END) AS errors,"
        " SUM(CASE WHEN e.status = 'timed_out' THEN 1 ELSE 0 END) AS timeouts,"
        " SUM(CASE WHEN e.status = 'killed' THEN 1 ELSE 0 END) AS killed"
    )


def usage_report(
    *, start: date, end: date, sort: str = "usd", descending: bool = True, now: datetime | None = None, with_days: bool = True
) -> UsageReport:
    """Per-user usage from `start` to `end` (days in TIME_ZONE, inclusive), sorted by `sort`
    (a key of SORT_COLUMNS; unknown keys sort by cost), with totals and (`with_days`) the cost per
    day by backend."""
    now = now or timezone.now()
    sort = sort if sort in SORT_COLUMNS else "usd"
    column = SORT_COLUMNS[sort]
    params: dict[str, Any] = {
        "lo": sql_param(day_start(start)), "hi": sql_param(day_start(date.fromordinal(end.toordinal() + 1))),
        "now": sql_param(now), "month_lo": sql_param(day_start(month_start(today_local(now=now)))),
        "default_usd": default_limits().usd_per_month, **rate_params(),
    }
    month_clip = sql_lease_clip("%(month_lo)s", "%(now)s", "%(now)s")
    sql = f"""
    WITH e AS (
        SELECT e.user_id AS user_id, {_runs_columns()}
        FROM runner_execution e {_runs_index()} WHERE e.created_at >= %(lo)s AND e.created_at < %(hi)s GROUP BY e.user_id
    ), {_lease_ctes('%(lo)s', '%(hi)s', key='l.user_id', sources=[f"FROM runner_sandboxlease l {sql_leases_covering()} WHERE {sql_lease_overlaps('%(lo)s', '%(hi)s')}"])},
    m AS (
        SELECT l.user_id AS user_id, SUM({month_clip} * {sql_rate_per_s()}) AS spent
        FROM runner_sandboxlease l {sql_leases_covering()} WHERE {sql_lease_overlaps('%(month_lo)s', '%(now)s')} GROUP BY l.user_id
    ), ids AS (SELECT user_id FROM e UNION SELECT k FROM ls)
    SELECT * FROM (
        SELECT ids.user_id AS user_id, u.username AS username, COALESCE(e.runs, 0) AS runs,
            COALESCE(e.exec_ms, 0) AS exec_ms, COALESCE(ls.e2b_s, 0) AS e2b_s, COALESCE(ls.local_s, 0) AS local_s,
            COALESCE(ls.e2b_usd, 0) AS e2b_usd, COALESCE(ls.local_usd, 0) AS local_usd,
            COALESCE(e.errors, 0) AS errors, COALESCE(e.timeouts, 0) AS timeouts,
            (SELECT MAX(x.created_at) FROM runner_execution x WHERE x.user_id = ids.user_id) AS last_active,
            COALESCE(m.spent, 0) AS month_usd, COALESCE(q.usd_per_month, %(default_usd)s) AS budget_usd,
            COALESCE(ls.e2b_s, 0) + COALESCE(ls.local_s, 0) AS sandbox_s,
            COALESCE(ls.e2b_usd, 0) + COALESCE(ls.local_usd, 0) AS usd,
            CASE WHEN COALESCE(q.usd_per_month, %(default_usd)s) > 0
                THEN COALESCE(m.spent, 0) * 100.0 / COALESCE(q.usd_per_month, %(default_usd)s) END AS budget_pct,
            COALESCE(e.killed, 0) AS killed, u.first_name AS first_name, u.last_name AS last_name, u.email AS email
        FROM ids JOIN auth_user u ON u.id = ids.user_id
        LEFT JOIN e ON e.user_id = ids.user_id LEFT JOIN ls ON ls.k = ids.user_id
        LEFT JOIN m ON m.user_id = ids.user_id LEFT JOIN runner_userquota q ON q.user_id = ids.user_id
    ) r
    ORDER BY (r.{column} IS NULL), r.{column} {'DESC' if descending else 'ASC'}, r.username ASC
    """
    rows = [
        UsageRow(
            user_id=r[0], username=r[1], runs=int(r[2]), exec_s=int(r[3]) / 1000, e2b_s=seconds_exact(r[4]), local_s=seconds_exact(r[5]),
            e2b_usd=usd_exact(r[6]), local_usd=usd_exact(r[7]), errors=int(r[8]), timeouts=int(r[9]),
            last_active=sql_datetime(r[10]), month_usd=usd_exact(r[11]), budget_usd=Decimal(str(r[12] or 0)), killed=int(r[16]),
            full_name=f"{r[17] or ''} {r[18] or ''}".strip(), email=r[19] or "",
        )
        for r in _fetch(sql, params)
    ]
    totals = usage_total(rows)
    days = usage_cost_by_day(start=start, end=end, now=now) if with_days else []
    return UsageReport(start, end, rows, totals, days, sort, descending)


def usage_total(rows: list[UsageRow], *, label: str = "Total") -> UsageRow:
    """The sum of `rows` (a totals row: user_id 0)."""
    return UsageRow(
        user_id=0, username=label, runs=sum(r.runs for r in rows), exec_s=sum(r.exec_s for r in rows),
        e2b_s=sum(r.e2b_s for r in rows), local_s=sum(r.local_s for r in rows),
        e2b_usd=sum(r.e2b_usd for r in rows), local_usd=sum(r.local_usd for r in rows),
        errors=sum(r.errors for r in rows), timeouts=sum(r.timeouts for r in rows),
        last_active=max((r.last_active for r in rows if r.last_active), default=None),
        month_usd=sum(r.month_usd for r in rows), budget_usd=Decimal(0), killed=sum(r.killed for r in rows),
    )


@dataclass(frozen=True)
class ClassUsage:
    """A class's usage over the range: the sum over its students (each counts fully in every class
    they are a student of; teachers' own usage is not counted), and the mean per student."""

    classroom_id: int
    name: str
    students: int  # members now, whether or not they used anything
    total: UsageRow

    @property
    def per_student_sandbox_s(self) -> float:
        return self.total.sandbox_s / self.students if self.students else 0.0

    @property
    def per_student_exec_s(self) -> float:
        return self.total.exec_s / self.students if self.students else 0.0

    @property
    def per_student_usd(self) -> float:
        return self.total.usd / self.students if self.students else 0.0


def usage_class_memberships(*, user_ids: list[int] | None = None) -> tuple[dict[int, list[str]], dict[int, tuple[str, set[int]]]]:
    """(user id -> the names of the classes they are a student of, classroom id -> (name, student
    ids)), archived classes included (their students' past usage still belongs to them). One query."""
    through = Classroom.students.through
    memberships = through.objects.select_related(None).values_list("user_id", "classroom_id", "classroom__name")
    if user_ids is not None:
        memberships = memberships.filter(user_id__in=user_ids)
    by_user: dict[int, list[str]] = {}
    by_class: dict[int, tuple[str, set[int]]] = {}
    for user_id, classroom_id, name in memberships.order_by("classroom__name", "classroom_id"):
        by_user.setdefault(user_id, []).append(name)
        by_class.setdefault(classroom_id, (name, set()))[1].add(user_id)
    return by_user, by_class


def usage_by_class(report: UsageReport, by_class: dict[int, tuple[str, set[int]]]) -> list[ClassUsage]:
    """Each class's total over the report's range, from its per-user rows, dearest first."""
    rows_by_user = {row.user_id: row for row in report.rows}
    classes = [
        ClassUsage(classroom_id, name, len(members), usage_total([rows_by_user[u] for u in members if u in rows_by_user], label=name))
        for classroom_id, (name, members) in by_class.items()
    ]
    return sorted(classes, key=lambda c: (-c.total.usd, -c.total.sandbox_s, c.name.lower()))


def _days_cte(start: date, end: date, params: dict[str, Any], *, reach: timedelta = timedelta(0)) -> str:
    """SQL: a CTE `d(day, lo, hi, reach)` of the range's days as VALUES (`reach` = lo - `reach`),
    its parameters added to `params`. (`reach` is subtracted in UTC: aware arithmetic in the local
    zone is wall-clock time and would be an hour off across a DST change.)"""
    values = []
    for i, (day, lo, hi) in enumerate(day_windows(start=start, end=end)):
        params[f"d{i}"], params[f"lo{i}"], params[f"hi{i}"], params[f"r{i}"] = day, sql_param(lo), sql_param(hi), sql_param(lo.astimezone(dt_timezone.utc) - reach)
        values.append(f"(%(d{i})s, %(lo{i})s, %(hi{i})s, %(r{i})s)")
    return f"d(day, lo, hi, reach) AS (VALUES {', '.join(values)})"


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def usage_cost_by_day(*, start: date, end: date, now: datetime | None = None, user_id: int | None = None) -> list[DayCost]:
    """Sandbox-seconds and cost per day from `start` to `end`, by backend (every day, zeros included)."""
    now = now or timezone.now()
    params: dict[str, Any] = {
        "lo": sql_param(day_start(start)), "hi": sql_param(day_start(date.fromordinal(end.toordinal() + 1))),
        "now": sql_param(now), "user_id": user_id, **rate_params(),
    }
    who = "AND l.user_id = %(user_id)s" if user_id is not None else ""
    # Each day looks only at closed leases started at most the longest closed lease's length
    # before it (an index range on started_at), instead of every lease before the day ends; open
    # leases (few: the live sandboxes) are read on their own.
    longest_s = _fetch(
        f"SELECT MAX({sql_seconds('l.started_at', 'l.ended_at')}) FROM runner_sandboxlease l"
        f" WHERE l.ended_at IS NOT NULL AND {sql_lease_overlaps('%(lo)s', '%(hi)s')} {who}", params,
    )[0][0]
    reach = timedelta(seconds=float(longest_s or 0) + 1)
    in_range = f"{sql_lease_overlaps('%(lo)s', '%(hi)s')} {who}"
    closed = f"FROM d JOIN runner_sandboxlease l ON {sql_lease_overlaps('d.lo', 'd.hi')} AND l.started_at >= d.reach WHERE l.ended_at IS NOT NULL AND {in_range}"
    still_open = f"FROM d JOIN runner_sandboxlease l ON l.ended_at IS NULL AND l.started_at < d.hi WHERE {in_range}"
    sql = f"WITH {_days_cte(start, end, params, reach=reach)}, {_lease_ctes('d.lo', 'd.hi', key='d.day', sources=[closed, still_open])}"
    sql += " SELECT k, e2b_s, local_s, e2b_usd, local_usd FROM ls"
    found = {_as_date(r[0]): r for r in _fetch(sql, params)}
    days = []
    for day, _lo, _hi in day_windows(start=start, end=end):
        r = found.get(day)
        days.append(
            DayCost(day, usd_exact(r[3]), usd_exact(r[4]), seconds_exact(r[1]), seconds_exact(r[2])) if r else DayCost(day, 0.0, 0.0, 0.0, 0.0)
        )
    return days


@dataclass(frozen=True)
class UserDay:
    """One user's usage on one day."""

    day: date
    runs: int
    exec_s: float
    errors: int
    timeouts: int
    cost: DayCost
    killed: int = 0  # runs whose sandbox an admin, a budget or a revoked key closed

    @property
    def sandbox_s(self) -> float:
        return self.cost.e2b_s + self.cost.local_s


def usage_by_user_day(*, user_id: int, start: date, end: date, now: datetime | None = None) -> list[UserDay]:
    """One user's runs, execution-seconds, sandbox-seconds and cost for each day of the range."""
    now = now or timezone.now()
    params: dict[str, Any] = {"user_id": user_id}
    sql = f"""
    WITH {_days_cte(start, end, params)}
    SELECT d.day, {_runs_columns()}
    FROM d JOIN runner_execution e ON e.created_at >= d.lo AND e.created_at < d.hi
    WHERE e.user_id = %(user_id)s GROUP BY d.day
    """
    runs = {_as_date(r[0]): r for r in _fetch(sql, params)}
    found = []
    for cost in usage_cost_by_day(start=start, end=end, now=now, user_id=user_id):
        r = runs.get(cost.day)
        found.append(UserDay(cost.day, int(r[1]) if r else 0, (int(r[2]) / 1000) if r else 0.0,
                             int(r[3]) if r else 0, int(r[4]) if r else 0, cost, int(r[5]) if r else 0))
    return found


def usage_runs_for_user(*, user_id: int, start: date, end: date, status: str = "") -> QuerySet[Execution]:
    """One user's runs in the range, newest first, optionally of one status (the audit log)."""
    runs = Execution.objects.filter(
        user_id=user_id, created_at__gte=day_start(start), created_at__lt=day_start(date.fromordinal(end.toordinal() + 1))
    )
    if status:
        runs = runs.filter(status=status)
    return runs.select_related("session").only(
        "id", "seq", "status", "language", "created_at", "started_at", "finished_at", "duration_ms", "code",
        "error_name", "session__id", "session__title", "session__backend",
    ).order_by("-created_at", "-id")


def execution_cost_usd(*, backend: str, duration_ms: int | None) -> float:
    """A run's share of its sandbox's cost: its duration at the sandbox size the backend uses."""
    if not duration_ms:
        return 0.0
    size = sandbox_size(backend)
    rate = rate_per_s(backend=backend, vcpus=size.vcpus, memory_mb=size.memory_mb)
    return duration_ms / 1000 * rate


def budget_alerts_recent(*, limit: int = 20) -> list[BudgetAlert]:
    """The newest budget alerts (80% and 100% of a monthly budget), for the usage page."""
    return list(BudgetAlert.objects.select_related("user").order_by("-created_at")[:limit])


def usage_limits_for_user(*, user_id: int) -> Limits:
    """The user's effective limits (their overrides, else the QUOTA_* defaults; 0: none)."""
    return user_limits_sync(user_id=user_id)


def usage_quota_status(*, user_id: int) -> list[QuotaStatus]:
    """Usage against each of the user's limits, today and this month ("38 of 60 sandbox-minutes today")."""
    return quota_status_sync(user_id=user_id)


def admin_actions_recent(*, target_user_id: int | None = None, limit: int = 20) -> list[AdminAction]:
    """The newest admin actions (kills, stops), all or on one user: who, when, why."""
    actions = AdminAction.objects.select_related("actor", "target_user", "execution")
    if target_user_id is not None:
        actions = actions.filter(target_user_id=target_user_id)
    return list(actions.order_by("-created_at")[:limit])


def leases_open_for_user(*, user_id: int) -> list[SandboxLease]:
    return list(SandboxLease.objects.open().filter(user_id=user_id).order_by("started_at"))


__all__ = [
    "ClassUsage", "usage_by_class", "usage_class_memberships", "usage_total",
    "DayCost", "SORT_COLUMNS", "admin_actions_recent", "UsageReport", "UsageRow", "UserDay", "budget_alerts_recent", "execution_cost_usd",
    "leases_open_for_user", "round_cents", "usage_limits_for_user", "usage_quota_status", "usage_by_user_day", "usage_cost_by_day", "usage_range_preset",
    "usage_report", "usage_runs_for_user",
]
