"""Per-user limits: whether a run may start, and budget alerts. What the limits are and the usage
against them are reads (selectors/quotas.py), re-exported here for the services that check them.

A run is refused (`quota`) with a message naming the limit, its value and when it resets.
The concurrency limit holds across sockets and processes: `quota_admit_sync` runs inside the
transaction that inserts the run, after locking the user's row (Postgres; SQLite's IMMEDIATE
transactions already serialise writers), so 20 simultaneous starts with 1 allowed store exactly 1.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from runner.accounting import (
    day_start,
    local_zone,
    month_start,
    next_month_start,
    rate_params,
    round_cents,
    sql_lease_clip,
    sql_lease_overlaps,
    sql_leases_covering,
    sql_param,
    sql_rate,
    today_local,
    usd_exact,
)
from runner.models import BudgetAlert
from runner.selectors.quotas import (
    WARN_PERCENT,
    Limits,
    QuotaStatus,
    UserSpend,
    default_limits,
    live_sandboxes_limit_sync,
    minutes_text,
    quota_status_sync,
    user_limits_sync,
    user_spend_sync,
    users_over_budget_sync,
)

# Budget alerts are recorded when month-to-date spend crosses these shares of the budget.
ALERT_PERCENTS = (80, 100)


class QuotaExceeded(Exception):
    """A limit is reached: `message` names it, its value and when it resets."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _day_reset(now: datetime) -> str:
    reset = day_start(today_local(now=now) + timedelta(days=1))
    return f"It resets at {reset:%H:%M} on {reset:%Y-%m-%d} ({settings.TIME_ZONE})."


def _month_reset(now: datetime) -> str:
    reset = day_start(next_month_start(today_local(now=now)))
    return f"It resets on {reset:%Y-%m-%d} at {reset:%H:%M} ({settings.TIME_ZONE})."


def quota_problem(*, limits: Limits, spend: UserSpend, now: datetime, starting: int = 1) -> str | None:
    """The message for the first limit that `starting` more runs would break, else None."""
    if limits.concurrent_runs and spend.active_runs + starting > limits.concurrent_runs:
        return (
            f"Concurrent run limit reached: {spend.active_runs} of {limits.concurrent_runs} "
            f"run{'s' if limits.concurrent_runs != 1 else ''} at once. It resets when one of your runs finishes."
        )
    if limits.runs_per_day and spend.runs_today + starting > limits.runs_per_day:
        return f"Daily run limit reached: {spend.runs_today} of {limits.runs_per_day} runs today. {_day_reset(now)}"
    if limits.sandbox_s_per_day and spend.sandbox_s_today >= limits.sandbox_s_per_day:
        return (
            f"Daily sandbox time limit reached: {minutes_text(spend.sandbox_s_today)} of "
            f"{minutes_text(limits.sandbox_s_per_day)} sandbox-minutes today. {_day_reset(now)}"
        )
    if limits.usd_per_month and Decimal(str(spend.usd_month)) >= limits.usd_per_month:
        return (
            f"Monthly budget reached: ${round_cents(spend.usd_month)} of ${limits.usd_per_month} this month. "
            f"{_month_reset(now)}"
        )
    return None


def quota_check_sync(*, user_id: int, now: datetime | None = None) -> tuple[str | None, Limits]:
    """Before a run is stored: the message when the user may not start one, and their limits
    (so the caller knows whether `quota_admit_sync` must run in the insert's transaction)."""
    limits = user_limits_sync(user_id=user_id)
    if not limits.any:
        return None, limits
    now = now or timezone.now()
    return quota_problem(limits=limits, spend=user_spend_sync(user_id=user_id, now=now), now=now), limits


def quota_admit_sync(*, user_id: int, limits: Limits) -> None:
    """Inside the transaction that inserts a run: lock the user, re-check with what is committed,
    and raise `QuotaExceeded` if the run would break a limit. Concurrent callers queue on the lock,
    so each sees the runs the others stored."""
    if not limits.any:
        return
    get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk", flat=True).first()
    now = timezone.now()
    problem = quota_problem(limits=limits, spend=user_spend_sync(user_id=user_id, now=now), now=now)
    if problem is not None:
        raise QuotaExceeded(problem)


# --- monthly budgets ----------------------------------------------------------------------------------


def sql_month_spend_by_user() -> str:
    """SQL (named parameters `month_lo`, `now`, the rates and `default_usd`): per user with leases
    this month, `user_id, spent_usd, budget_usd` (budget: their override, else the default)."""
    return (
        "SELECT s.user_id, s.spent, COALESCE(q.usd_per_month, %(default_usd)s) FROM ("
        f" SELECT l.user_id AS user_id, SUM({sql_lease_clip('%(month_lo)s', '%(now)s', '%(now)s')} * {sql_rate()}) AS spent"
        f" FROM runner_sandboxlease l {sql_leases_covering()} WHERE {sql_lease_overlaps('%(month_lo)s', '%(now)s')} GROUP BY l.user_id"
        ") s LEFT JOIN runner_userquota q ON q.user_id = s.user_id"
    )


def month_spend_params(*, now: datetime) -> dict[str, object]:
    return {
        "now": sql_param(now), "month_lo": sql_param(day_start(month_start(today_local(now=now)))),
        "default_usd": default_limits().usd_per_month, **rate_params(),
    }


def budget_alerts_record_sync(*, now: datetime | None = None) -> list[BudgetAlert]:
    """Record, once per user, month and threshold, each crossing of 80% and 100% of a monthly
    budget. Returns the alerts recorded now."""
    now = now or timezone.now()
    month = month_start(today_local(now=now))
    with connection.cursor() as cursor:
        cursor.execute(sql_month_spend_by_user(), month_spend_params(now=now))
        rows = cursor.fetchall()
    fresh: list[BudgetAlert] = []
    for user_id, spent, budget in rows:
        spent = usd_exact(spent)
        budget = Decimal(str(budget or 0))
        if budget <= 0:
            continue
        for percent in ALERT_PERCENTS:
            if Decimal(str(spent or 0)) * 100 >= budget * percent:
                fresh.append(BudgetAlert(user_id=user_id, month=month, percent=percent,
                                         spent_usd=Decimal(str(round(spent, 4))), budget_usd=budget, created_at=now))
    if not fresh:
        return []
    known = set(BudgetAlert.objects.filter(month=month, user_id__in={a.user_id for a in fresh}).values_list("user_id", "percent"))
    fresh = [a for a in fresh if (a.user_id, a.percent) not in known]
    BudgetAlert.objects.bulk_create(fresh, ignore_conflicts=True)  # another process may record the same
    return fresh


__all__ = [
    "ALERT_PERCENTS", "Limits", "QuotaExceeded", "QuotaStatus", "WARN_PERCENT", "budget_alerts_record_sync",
    "default_limits", "live_sandboxes_limit_sync", "local_zone", "month_spend_params", "quota_admit_sync", "quota_check_sync", "quota_problem",
    "quota_status_sync", "sql_month_spend_by_user", "user_limits_sync", "users_over_budget_sync",
]
