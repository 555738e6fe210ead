"""Accounting exact to the second and the cent: leases split at midnight (in TIME_ZONE, DST
included), clipped at the range's edges, open leases counted up to now; runs by the day they
were created. Prices are set so the figures are round: 1 vCPU-second = $0.001, 1 GiB-second = $0."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import override_settings

from runner.accounting import round_cents
from runner.models import Execution, SandboxLease, UserQuota
from runner.pricing import rate_params, rate_per_s, sandbox_size, sql_rate_per_s
from runner.selectors.quotas import user_spend_sync
from runner.selectors.usage import execution_cost_usd, usage_by_user_day, usage_cost_by_day, usage_report

pytestmark = pytest.mark.django_db

UTC = ZoneInfo("UTC")
PRICES = {"E2B_PRICE_PER_VCPU_S": 0.001, "E2B_PRICE_PER_GIB_S": 0.0, "LOCAL_PRICE_PER_VCPU_S": 0.0001, "LOCAL_PRICE_PER_GIB_S": 0.0}


def at(text: str, zone: ZoneInfo = UTC) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def lease(user, start: str, end: str | None, *, backend: str = "e2b", vcpus: float = 2, zone: ZoneInfo = UTC) -> SandboxLease:
    return SandboxLease.objects.create(
        user=user, backend=backend, sandbox_id=f"sbx-{start}", vcpus=vcpus, memory_mb=512,
        started_at=at(start, zone), ended_at=at(end, zone) if end else None,
    )


def execution(session, seq: int, created: str, duration_ms: int, status: str = "succeeded") -> Execution:
    return Execution.objects.create(
        session=session, seq=seq, code="1", language="python", user=session.owner, status=status,
        created_at=at(created), duration_ms=duration_ms,
    )


@override_settings(TIME_ZONE="UTC", **PRICES)
def test_a_lease_crossing_midnight_is_split_between_the_two_days(alice) -> None:
    lease(alice, "2026-03-10 23:50:00", "2026-03-11 00:20:00")  # 600 s, then 1200 s; 2 vCPU x $0.001
    days = usage_cost_by_day(start=date(2026, 3, 10), end=date(2026, 3, 11), now=at("2026-03-12 00:00:00"))
    assert [(d.day, round(d.e2b_s), round_cents(d.e2b_usd)) for d in days] == [
        (date(2026, 3, 10), 600, Decimal("1.20")),
        (date(2026, 3, 11), 1200, Decimal("2.40")),
    ]


@override_settings(TIME_ZONE="UTC", **PRICES)
def test_the_range_edges_clip_leases_and_runs_count_on_their_day(alice, alice_session) -> None:
    lease(alice, "2026-03-09 22:00:00", "2026-03-10 01:00:00")  # 3600 s inside the 10th
    lease(alice, "2026-03-10 12:00:00", "2026-03-10 12:00:45", backend="local", vcpus=1)  # 45 s local
    lease(alice, "2026-03-11 00:00:00", "2026-03-11 01:00:00")  # the 11th: outside
    execution(alice_session, 1, "2026-03-09 23:59:59", 5000)  # outside
    execution(alice_session, 2, "2026-03-10 00:00:00", 1500)
    execution(alice_session, 3, "2026-03-10 23:59:59", 2250, status="failed")
    execution(alice_session, 4, "2026-03-10 10:00:00", 60000, status="timed_out")

    report = usage_report(start=date(2026, 3, 10), end=date(2026, 3, 10), now=at("2026-03-12 00:00:00"))
    (row,) = report.rows
    assert (row.username, row.runs, row.exec_s, row.errors, row.timeouts) == ("alice", 3, 63.75, 1, 1)
    assert (round(row.e2b_s), round(row.local_s), round(row.sandbox_s)) == (3600, 45, 3645)
    assert round_cents(row.e2b_usd) == Decimal("7.20")  # 3600 s x 2 vCPU x $0.001
    assert round_cents(row.local_usd) == Decimal("0.00") and round(row.local_usd, 6) == 0.0045  # 45 s x 1 x $0.0001
    assert report.totals.runs == 3 and round_cents(report.totals.usd) == Decimal("7.20")


@override_settings(TIME_ZONE="UTC", **PRICES)
def test_an_open_lease_counts_up_to_now(alice) -> None:
    lease(alice, "2026-03-10 09:00:00", None)
    now = at("2026-03-10 09:01:40")  # 100 s
    (row,) = usage_report(start=date(2026, 3, 10), end=date(2026, 3, 10), now=now).rows
    assert round(row.e2b_s) == 100 and round_cents(row.e2b_usd) == Decimal("0.20")
    spend = user_spend_sync(user_id=alice.pk, now=now)
    assert round(spend.sandbox_s_today) == 100 and round_cents(spend.usd_month) == Decimal("0.20")


@override_settings(TIME_ZONE="Europe/London", **PRICES)
def test_days_follow_time_zone_and_the_dst_day_has_23_hours(alice) -> None:
    london = ZoneInfo("Europe/London")
    # Clocks go forward at 01:00 on 2026-03-29: that day is 23 hours long in London.
    lease(alice, "2026-03-28 23:30:00", "2026-03-30 00:30:00", zone=london)
    days = usage_cost_by_day(start=date(2026, 3, 28), end=date(2026, 3, 30), now=at("2026-04-01 00:00:00"))
    assert [round(d.e2b_s) for d in days] == [1800, 23 * 3600, 1800]
    # 23:30 London on the 28th is 23:30 UTC (winter time); the UTC day would have split it otherwise.
    assert [round_cents(d.e2b_usd) for d in days] == [Decimal("3.60"), Decimal("165.60"), Decimal("3.60")]


@override_settings(TIME_ZONE="UTC", **PRICES)
def test_per_user_day_matches_the_report_and_sorting_works_on_any_column(alice, bob, alice_session, bob_session) -> None:
    lease(alice, "2026-03-10 10:00:00", "2026-03-10 10:10:00")  # 600 s, $1.20
    lease(bob, "2026-03-10 10:00:00", "2026-03-10 10:01:00")  # 60 s, $0.12
    execution(bob_session, 1, "2026-03-10 10:00:10", 1000)
    execution(bob_session, 2, "2026-03-10 10:00:20", 1000)
    execution(alice_session, 1, "2026-03-10 10:00:10", 7000)
    UserQuota.objects.create(user=bob, usd_per_month=Decimal("0.24"))
    now = at("2026-03-10 12:00:00")
    kwargs = {"start": date(2026, 3, 10), "end": date(2026, 3, 10), "now": now}
    assert [r.username for r in usage_report(sort="usd", **kwargs).rows] == ["alice", "bob"]
    assert [r.username for r in usage_report(sort="runs", **kwargs).rows] == ["bob", "alice"]
    assert [r.username for r in usage_report(sort="exec_s", descending=False, **kwargs).rows] == ["bob", "alice"]
    assert [r.username for r in usage_report(sort="user", descending=True, **kwargs).rows] == ["bob", "alice"]
    by_budget = usage_report(sort="budget_pct", **kwargs).rows
    assert [(r.username, r.budget_pct) for r in by_budget] == [("bob", 50), ("alice", None)]
    for sort in ("sandbox_s", "e2b_usd", "local_usd", "errors", "timeouts", "last_active", "budget_pct"):
        assert len(usage_report(sort=sort, descending=False, **kwargs).rows) == 2
    (day,) = usage_by_user_day(user_id=alice.pk, **kwargs)
    assert (day.runs, day.exec_s, round(day.sandbox_s), round_cents(day.cost.usd)) == (1, 7.0, 600, Decimal("1.20"))
    assert day.day == date(2026, 3, 10) and now - timedelta(hours=2) == at("2026-03-10 10:00:00")


# Four prices that differ, so a swapped price, backend or unit (MiB vs GiB) changes the figure.
UNEVEN_PRICES = {"E2B_PRICE_PER_VCPU_S": 0.000014, "E2B_PRICE_PER_GIB_S": 0.0000045,
                 "LOCAL_PRICE_PER_VCPU_S": 0.000003, "LOCAL_PRICE_PER_GIB_S": 0.0000007}


@override_settings(TIME_ZONE="UTC", E2B_VCPUS=2, E2B_MEMORY_MB=512, SANDBOX_CPUS=0.5, SANDBOX_MEMORY_MB=768, **UNEVEN_PRICES)
def test_the_python_and_sql_rates_agree_for_every_backend_and_size(alice) -> None:
    sizes = [("e2b", 2.0, 512), ("e2b", 8.0, 3000), ("local", 0.5, 768), ("local", 1.0, 300), ("other", 3.0, 1024)]
    for backend, vcpus, memory_mb in sizes:
        SandboxLease.objects.create(user=alice, backend=backend, sandbox_id=f"sbx-{backend}-{vcpus}", vcpus=vcpus,
                                    memory_mb=memory_mb, started_at=at("2026-03-10 10:00:00"), ended_at=at("2026-03-10 11:00:00"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT l.backend, l.vcpus, l.memory_mb, {sql_rate_per_s()} FROM runner_sandboxlease l", rate_params())
        rows = cursor.fetchall()
    assert len(rows) == len(sizes)
    for backend, vcpus, memory_mb, sql_rate in rows:
        assert float(sql_rate) == pytest.approx(rate_per_s(backend=backend, vcpus=vcpus, memory_mb=memory_mb), rel=1e-12)
    # E2B's default size at E2B's prices is ARCHITECTURE.md's $0.109 an hour.
    assert rate_per_s(backend="e2b", vcpus=2, memory_mb=512) * 3600 == pytest.approx(0.1089)
    assert rate_per_s(backend="local", vcpus=2, memory_mb=1024) == pytest.approx(2 * 0.000003 + 0.0000007)
    # The lease's own figure, the report's SQL and a run's share all come from the same rate.
    for one in SandboxLease.objects.all():
        assert float(one.estimated_cost_usd) == pytest.approx(3600 * rate_per_s(backend=one.backend, vcpus=one.vcpus, memory_mb=one.memory_mb), abs=1e-6)
    (day,) = usage_cost_by_day(start=date(2026, 3, 10), end=date(2026, 3, 10), now=at("2026-03-11 00:00:00"))
    e2b_usd = sum(3600 * rate_per_s(backend="e2b", vcpus=v, memory_mb=m) for b, v, m in sizes if b == "e2b")
    local_usd = sum(3600 * rate_per_s(backend=b, vcpus=v, memory_mb=m) for b, v, m in sizes if b != "e2b")
    assert (day.e2b_usd, day.local_usd) == (pytest.approx(e2b_usd, abs=1e-6), pytest.approx(local_usd, abs=1e-6))
    assert sandbox_size("e2b") == (2.0, 512) and sandbox_size("local") == (0.5, 768)
    assert execution_cost_usd(backend="local", duration_ms=10_000) == pytest.approx(10 * rate_per_s(backend="local", vcpus=0.5, memory_mb=768))
