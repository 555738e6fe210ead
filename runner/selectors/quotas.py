"""Reads for quotas: one user's limits, their usage today and this month, and that usage against
each limit. The checks that refuse a run and the budget alerts are services/quotas.py's.

Limits come from the QUOTA_* settings, overridden field by field by a `UserQuota` row; 0 means no limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from runner.accounting import (
    day_start,
    month_start,
    round_cents,
    seconds_exact,
    sql_lease_clip,
    sql_lease_overlaps,
    sql_param,
    today_local,
    usd_exact,
)
from runner.models import UserQuota
from runner.pricing import rate_params, sql_rate_per_s

# The page warns when usage reaches this share of a limit.
WARN_PERCENT = 80


@dataclass(frozen=True)
class Limits:
    """One user's effective limits; 0 means no limit."""

    sandbox_s_per_day: int
    runs_per_day: int
    concurrent_runs: int
    usd_per_month: Decimal

    @property
    def any(self) -> bool:
        return bool(self.sandbox_s_per_day or self.runs_per_day or self.concurrent_runs or self.usd_per_month)


def default_limits() -> Limits:
    return Limits(
        sandbox_s_per_day=max(0, settings.QUOTA_SANDBOX_SECONDS_PER_DAY),
        runs_per_day=max(0, settings.QUOTA_RUNS_PER_DAY),
        concurrent_runs=max(0, settings.QUOTA_CONCURRENT_RUNS),
        usd_per_month=round_cents(max(0.0, settings.QUOTA_USD_PER_MONTH)),
    )


def user_limits_sync(*, user_id: int) -> Limits:
    """The user's limits: their overrides where set, the defaults elsewhere."""
    base = default_limits()
    row = UserQuota.objects.filter(user_id=user_id).first()
    if row is None:
        return base
    return Limits(
        sandbox_s_per_day=base.sandbox_s_per_day if row.sandbox_seconds_per_day is None else row.sandbox_seconds_per_day,
        runs_per_day=base.runs_per_day if row.runs_per_day is None else row.runs_per_day,
        concurrent_runs=base.concurrent_runs if row.concurrent_runs is None else row.concurrent_runs,
        usd_per_month=base.usd_per_month if row.usd_per_month is None else row.usd_per_month,
    )


def live_sandboxes_limit_sync(*, user_id: int) -> int:
    """How many sandboxes the user may have live at once (0: no limit): their override, else
    QUOTA_LIVE_SANDBOXES. Apart from `Limits`, so a user with only this limit keeps the pipelined start."""
    override = UserQuota.objects.filter(user_id=user_id).values_list("live_sandboxes", flat=True).first()
    return max(0, settings.QUOTA_LIVE_SANDBOXES if override is None else override)


@dataclass(frozen=True)
class UserSpend:
    """One user's usage where quotas look: today and this month (TIME_ZONE), up to `now`."""

    sandbox_s_today: float
    runs_today: int
    active_runs: int
    usd_month: float


def user_spend_sync(*, user_id: int, now: datetime | None = None) -> UserSpend:
    """Sandbox-seconds and runs today, active runs, and cost this month, for one user (two queries
    on the per-user indexes)."""
    now = now or timezone.now()
    today = today_local(now=now)
    params: dict[str, Any] = {
        "now": sql_param(now), "day_lo": sql_param(day_start(today)),
        "month_lo": sql_param(day_start(month_start(today))), "user_id": user_id, **rate_params(),
    }
    lease_sql = (
        f"SELECT COALESCE(SUM(CASE WHEN {sql_lease_overlaps('%(day_lo)s', '%(now)s')}"
        f" THEN {sql_lease_clip('%(day_lo)s', '%(now)s', '%(now)s')} ELSE 0 END), 0),"
        f" COALESCE(SUM({sql_lease_clip('%(month_lo)s', '%(now)s', '%(now)s')} * {sql_rate_per_s()}), 0)"
        " FROM runner_sandboxlease l"
        f" WHERE l.user_id = %(user_id)s AND {sql_lease_overlaps('%(month_lo)s', '%(now)s')}"
    )
    run_sql = (
        "SELECT COALESCE(SUM(CASE WHEN created_at >= %(day_lo)s THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(CASE WHEN status IN ('queued', 'running') THEN 1 ELSE 0 END), 0)"
        " FROM runner_execution WHERE user_id = %(user_id)s"
        " AND (created_at >= %(day_lo)s OR status IN ('queued', 'running')) AND status <> 'rejected'"
    )
    with connection.cursor() as cursor:
        cursor.execute(lease_sql, params)
        sandbox_s, usd = cursor.fetchone()
        cursor.execute(run_sql, params)
        runs_today, active = cursor.fetchone()
    return UserSpend(seconds_exact(sandbox_s), int(runs_today or 0), int(active or 0), usd_exact(usd))


def minutes_text(seconds: float) -> str:
    """Seconds as the minutes a limit's text shows: whole from 10 up, else to a tenth."""
    minutes = seconds / 60
    return f"{minutes:.0f}" if minutes >= 10 or minutes == int(minutes) else f"{minutes:.1f}"


@dataclass(frozen=True)
class QuotaStatus:
    """One limit against today's or this month's usage, for the page ("38 of 60 sandbox-minutes today")."""

    name: str
    used: float
    limit: float
    text: str

    @property
    def percent(self) -> int:
        return int(self.used * 100 // self.limit) if self.limit else 0

    @property
    def warn(self) -> bool:
        return self.percent >= WARN_PERCENT


def quota_status_sync(*, user_id: int, now: datetime | None = None) -> list[QuotaStatus]:
    """Usage against each limit the user has (none when unlimited)."""
    limits = user_limits_sync(user_id=user_id)
    if not limits.any:
        return []
    now = now or timezone.now()
    spend = user_spend_sync(user_id=user_id, now=now)
    found: list[QuotaStatus] = []
    if limits.sandbox_s_per_day:
        found.append(QuotaStatus(
            "sandbox_seconds_per_day", spend.sandbox_s_today, limits.sandbox_s_per_day,
            f"{minutes_text(spend.sandbox_s_today)} of {minutes_text(limits.sandbox_s_per_day)} sandbox-minutes today",
        ))
    if limits.runs_per_day:
        found.append(QuotaStatus("runs_per_day", spend.runs_today, limits.runs_per_day, f"{spend.runs_today} of {limits.runs_per_day} runs today"))
    if limits.usd_per_month:
        found.append(QuotaStatus(
            "usd_per_month", spend.usd_month, float(limits.usd_per_month),
            f"${round_cents(spend.usd_month)} of ${limits.usd_per_month} this month",
        ))
    return found


def users_over_budget_sync(*, user_ids: set[int], now: datetime | None = None) -> set[int]:
    """Of `user_ids`, those past their sandbox-seconds-per-day or $-per-month limit."""
    now = now or timezone.now()
    over: set[int] = set()
    for user_id in user_ids:
        limits = user_limits_sync(user_id=user_id)
        if not (limits.sandbox_s_per_day or limits.usd_per_month):
            continue
        spend = user_spend_sync(user_id=user_id, now=now)
        if (limits.sandbox_s_per_day and spend.sandbox_s_today >= limits.sandbox_s_per_day) or (
            limits.usd_per_month and Decimal(str(spend.usd_month)) >= limits.usd_per_month
        ):
            over.add(user_id)
    return over


__all__ = [
    "Limits", "QuotaStatus", "UserSpend", "WARN_PERCENT", "default_limits", "live_sandboxes_limit_sync", "minutes_text",
    "quota_status_sync", "user_limits_sync", "user_spend_sync", "users_over_budget_sync",
]
