"""Budgets stop spending, not just new runs: each server process, every BUDGET_CHECK_S, records
budget alerts (80% and 100% of a monthly budget, once each) and closes the idle sandboxes it
holds for users past their sandbox-seconds-per-day or $-per-month limit (lease reason "budget").
A running run keeps its sandbox until it ends or times out; the next run is refused (quota)."""

from __future__ import annotations

from dataclasses import dataclass

from runner.models import SandboxLease
from runner.services.quotas import budget_alerts_record_sync, users_over_budget_sync
from runner.services.runtime import db
from runner.services.sandboxes import sandbox_holders_here, sandboxes_close_idle_of


@dataclass(frozen=True)
class BudgetPass:
    alerts_recorded: int
    sandboxes_closed: int


async def budget_enforce() -> BudgetPass:
    """One pass: record new budget alerts, then close idle sandboxes of users past a limit."""
    alerts = await db(budget_alerts_record_sync)()
    closed = 0
    holders = sandbox_holders_here()
    if holders:
        over = await db(users_over_budget_sync)(user_ids=holders)
        if over:
            closed = await sandboxes_close_idle_of(user_ids=over, reason=SandboxLease.EndReason.BUDGET)
    return BudgetPass(len(alerts), closed)
