"""What confines a local sandbox, as data: its `Limits` and this machine's `Isolation`.

Shared by cgroups.py (which applies the limits) and jail.py (which detects the isolation and
builds the bwrap command line); it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    pids: int
    cpus: float
    tmpfs_mb: int
    workspace_quota_mb: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            memory_mb=settings.SANDBOX_MEMORY_MB,
            pids=settings.SANDBOX_PIDS,
            cpus=settings.SANDBOX_CPUS,
            tmpfs_mb=settings.SANDBOX_TMPFS_MB,
            workspace_quota_mb=settings.SANDBOX_WORKSPACE_QUOTA_MB,
        )


@dataclass(frozen=True)
class Isolation:
    """What confinement this process can apply. `problem` is set when no code may run."""

    problem: str
    bwrap: str
    as_root: bool
    uid: int
    gid: int
    cgroup_version: int  # 1, 2, or 0 for none
    cgroup_parents: dict[str, Path]  # controller ("memory", "pids", "cpu"; "" for v2) -> our parent dir

    def describe(self) -> str:
        if self.problem:
            return "none"
        if self.as_root and self.cgroup_version:
            return f"bwrap+setpriv+cgroup-v{self.cgroup_version} uid={self.uid}"
        if self.as_root:
            return f"bwrap+setpriv+prlimit uid={self.uid} (no cgroup limits)"
        return "bwrap+userns+prlimit (not root: no dedicated user, no cgroup limits, mountinfo names host folders)"
