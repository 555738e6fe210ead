"""`manage.py sweep`: settle what dead server processes left behind, for operators and cron."""

from __future__ import annotations

import asyncio

from django.core.management.base import BaseCommand

from runner import services


class Command(BaseCommand):
    help = (
        "Runs left queued or running by dead server processes become interrupted (output kept, with a "
        "note); their sandbox leases end. Live processes' runs are untouched. Safe to run any time."
    )

    def handle(self, *args: object, **options: object) -> None:
        runs, leases = asyncio.run(_sweep())
        self.stdout.write(f"swept {runs} run(s) and {leases} lease(s) of dead server processes")


async def _sweep() -> tuple[int, int]:
    return await services.execution_sweep(), await services.lease_sweep()
