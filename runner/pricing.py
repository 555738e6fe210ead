"""What a sandbox costs: its size by backend, and its price per second in Python and in SQL.

One rule, written twice side by side so the two can't drift (tests/test_usage_accounting.py
checks they agree): a sandbox of `vcpus` vCPUs and `memory_mb` MiB costs per second
    vcpus x price per vCPU-second + memory_mb / 1024 x price per GiB-second,
at E2B's prices (`E2B_PRICE_PER_*`) for the `e2b` backend and at the local rates
(`LOCAL_PRICE_PER_*`, 0 by default) for any other.
"""

from __future__ import annotations

from typing import NamedTuple

from django.conf import settings


class SandboxSize(NamedTuple):
    vcpus: float
    memory_mb: int


def sandbox_size(backend: str) -> SandboxSize:
    """The size a new sandbox of `backend` gets (recorded on its lease and billed)."""
    if backend == "e2b":
        return SandboxSize(float(settings.E2B_VCPUS), int(settings.E2B_MEMORY_MB))
    return SandboxSize(float(settings.SANDBOX_CPUS), int(settings.SANDBOX_MEMORY_MB))


def _prices(backend: str) -> tuple[float, float]:
    """(price per vCPU-second, price per GiB-second) in dollars for `backend`."""
    if backend == "e2b":
        return float(settings.E2B_PRICE_PER_VCPU_S), float(settings.E2B_PRICE_PER_GIB_S)
    return float(settings.LOCAL_PRICE_PER_VCPU_S), float(settings.LOCAL_PRICE_PER_GIB_S)


def rate_per_s(*, backend: str, vcpus: float, memory_mb: float) -> float:
    """Dollars per second for a sandbox of this backend and size."""
    per_vcpu_s, per_gib_s = _prices(backend)
    return per_vcpu_s * vcpus + per_gib_s * memory_mb / 1024.0


def sql_rate_per_s(alias: str = "l") -> str:
    """SQL twin of `rate_per_s` for a `runner_sandboxlease` row named `alias`; its named
    parameters come from `rate_params()`. Plain CASE and arithmetic: SQLite and Postgres alike."""
    return (
        f"(CASE WHEN {alias}.backend = 'e2b' THEN %(e2b_vcpu_s)s ELSE %(local_vcpu_s)s END * {alias}.vcpus"
        f" + CASE WHEN {alias}.backend = 'e2b' THEN %(e2b_gib_s)s ELSE %(local_gib_s)s END * {alias}.memory_mb / 1024.0)"
    )


def rate_params() -> dict[str, float]:
    """The named parameters `sql_rate_per_s` reads."""
    e2b_vcpu_s, e2b_gib_s = _prices("e2b")
    local_vcpu_s, local_gib_s = _prices("local")
    return {"e2b_vcpu_s": e2b_vcpu_s, "local_vcpu_s": local_vcpu_s, "e2b_gib_s": e2b_gib_s, "local_gib_s": local_gib_s}


__all__ = ["SandboxSize", "rate_params", "rate_per_s", "sandbox_size", "sql_rate_per_s"]
