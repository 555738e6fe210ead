"""Accounting primitives: calendar days in TIME_ZONE, and the SQL that turns leases into
sandbox-seconds and cost. Pure (no queries of its own): shared by the quota reads
(selectors/quotas.py), the quota checks (services/quotas.py) and the usage reports (selectors/usage.py).

Every figure is an aggregate query that runs on SQLite and Postgres:
- a lease's sandbox-seconds in a window are its lifetime clipped to the window
  (`least(ended_at or now, hi) - greatest(started_at, lo)`), so a lease crossing midnight, a DST
  change or the range's edge is split exactly, and an open lease counts up to `now`;
- its cost is those seconds x the lease's price per second (`runner.pricing.sql_rate_per_s`), from
  the vCPU and memory recorded on the lease.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runner.pricing import rate_params, sql_rate_per_s

CENT = Decimal("0.01")
# services.quotas reads the price per second (runner.pricing) through these names.
sql_rate = sql_rate_per_s


def local_zone() -> ZoneInfo:
    """The zone days and months follow (settings.TIME_ZONE)."""
    return ZoneInfo(settings.TIME_ZONE)


def day_start(day: date) -> datetime:
    """Midnight at the start of `day` in TIME_ZONE, as an aware datetime (DST-correct)."""
    return datetime.combine(day, time.min, tzinfo=local_zone())


def today_local(*, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(local_zone()).date()


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month_start(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def day_windows(*, start: date, end: date) -> list[tuple[date, datetime, datetime]]:
    """(day, lo, hi) for each day from `start` to `end` inclusive; [lo, hi) is the day in
    TIME_ZONE, so a DST day lasts 23 or 25 hours."""
    days = []
    day = start
    while day <= end:
        following = day + timedelta(days=1)
        days.append((day, day_start(day), day_start(following)))
        day = following
    return days


def round_cents(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


# --- SQL fragments ---------------------------------------------------------------------------------


def _vendor() -> str:
    return connection.vendor


def sql_seconds(a: str, b: str) -> str:
    """SQL: seconds from timestamp `a` to timestamp `b` (a float)."""
    if _vendor() == "postgresql":
        return f"EXTRACT(EPOCH FROM ({b} - {a}))::float8"
    return f"((julianday({b}) - julianday({a})) * 86400.0)"


def sql_greatest(a: str, b: str) -> str:
    return f"GREATEST({a}, {b})" if _vendor() == "postgresql" else f"MAX({a}, {b})"


def sql_least(a: str, b: str) -> str:
    return f"LEAST({a}, {b})" if _vendor() == "postgresql" else f"MIN({a}, {b})"


def sql_param(value: datetime) -> Any:
    """A datetime as the database driver expects it in raw SQL (SQLite: naive UTC text)."""
    return connection.ops.adapt_datetimefield_value(value)


def sql_datetime(value: Any) -> datetime | None:
    """A datetime read back from raw SQL, aware."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=timezone.get_fixed_timezone(0))
    return parsed


def sql_lease_clip(lo: str, hi: str, now: str, alias: str = "l") -> str:
    """SQL: a lease's seconds inside [lo, hi), an open lease counting up to `now`."""
    end = sql_least(f"COALESCE({alias}.ended_at, {now})", hi)
    return sql_seconds(sql_greatest(f"{alias}.started_at", lo), end)


def sql_leases_covering() -> str:
    """SQL after `runner_sandboxlease l`: on SQLite, read the covering usage index (without ANALYZE
    statistics its planner picks the (user, started_at) index for a GROUP BY user)."""
    return "INDEXED BY lease_usage" if _vendor() == "sqlite" else ""


def sql_lease_overlaps(lo: str, hi: str, alias: str = "l") -> str:
    """SQL: the lease was alive at some point in [lo, hi)."""
    return f"{alias}.started_at < {hi} AND ({alias}.ended_at IS NULL OR {alias}.ended_at > {lo})"


def seconds_exact(value: Any) -> float:
    """Seconds from SQL, to the millisecond (SQLite's julianday arithmetic is off by microseconds)."""
    return round(float(value or 0), 3)


def usd_exact(value: Any) -> float:
    """Dollars from SQL, to a millionth of a dollar (floating point is off in the last digits)."""
    return round(float(value or 0), 6)


__all__ = [
    "CENT", "day_start", "day_windows", "local_zone", "month_start", "next_month_start", "rate_params", "round_cents",
    "seconds_exact", "sql_datetime", "sql_greatest", "sql_lease_clip", "sql_lease_overlaps", "sql_leases_covering",
    "sql_least", "sql_param", "sql_rate", "sql_seconds", "today_local", "usd_exact",
]
