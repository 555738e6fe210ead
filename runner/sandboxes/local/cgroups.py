"""Per-sandbox cgroups, v1 or v2 (detected), under this server process's own cgroup."""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

from runner.sandboxes.local.limits import Isolation, Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
V2_CONTROLLERS = ("memory", "pids", "cpu")


def own_cgroup_paths() -> dict[str, str]:
    """controller -> this process's cgroup path, from /proc/self/cgroup ("" key for v2)."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def cgroup_parents() -> tuple[int, dict[str, Path]]:
    """Where per-sandbox cgroups go: a "sandpit" dir under this process's own cgroup.

    (0, {}) when cgroups can't be used (not delegated to us): prlimit is then all there is.
    """
    own = own_cgroup_paths()
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure v2
        own_dir = CGROUP_ROOT / own.get("", "/").lstrip("/")
        parent = own_dir / "sandpit"
        wanted = " ".join(f"+{c}" for c in V2_CONTROLLERS)
        try:
            if not set(V2_CONTROLLERS) <= set(_read(own_dir / "cgroup.controllers").split()):
                return 0, {}
            parent.mkdir(exist_ok=True)
            if not set(V2_CONTROLLERS) <= set(_read(own_dir / "cgroup.subtree_control").split()):
                try:
                    (own_dir / "cgroup.subtree_control").write_text(wanted)
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    # A cgroup with processes in it can't hand controllers to children ("no
                    # internal processes"): move this server into a leaf of its own, then retry.
                    leaf = own_dir / "sandpit-server"
                    leaf.mkdir(exist_ok=True)
                    (leaf / "cgroup.procs").write_text(str(os.getpid()))
                    (own_dir / "cgroup.subtree_control").write_text(wanted)
            (parent / "cgroup.subtree_control").write_text(wanted)
            return 2, {"": parent}
        except OSError:
            return 0, {}
    parents: dict[str, Path] = {}
    for controller in ("memory", "pids", "cpu"):
        mount = CGROUP_ROOT / controller
        if not (mount / "cgroup.procs").exists():
            return 0, {}
        parent = mount / own.get(controller, "/").lstrip("/") / "sandpit"
        try:
            parent.mkdir(exist_ok=True)
        except OSError:
            return 0, {}
        parents[controller] = parent
    # CPU time for the admin's live view: cpuacct, when it is a hierarchy of its own (where it is
    # co-mounted with cpu, as on Debian's "cpu,cpuacct", the cpu dir already has cpuacct.usage).
    # Optional: no limit depends on it.
    accounting = CGROUP_ROOT / "cpuacct"
    if (accounting / "cgroup.procs").exists() and not (CGROUP_ROOT / "cpu" / "cpuacct.usage").exists():
        parent = accounting / own.get("cpuacct", "/").lstrip("/") / "sandpit"
        try:
            parent.mkdir(exist_ok=True)
            parents["cpuacct"] = parent
        except OSError:
            pass
    return 1, parents


class Cgroup:
    """One sandbox's cgroup(s). All of a sandbox's kernels share it."""

    def __init__(self, isolation: Isolation, name: str, limits: Limits) -> None:
        self.version = isolation.cgroup_version
        self.dirs = {controller: parent / name for controller, parent in isolation.cgroup_parents.items()}
        self.limits = limits
        memory = limits.memory_mb * 1024 * 1024
        for controller, path in self.dirs.items():
            path.mkdir(exist_ok=True)
            if self.version == 2:
                _write(path / "memory.max", str(memory))
                _write(path / "memory.swap.max", "0", optional=True)
                _write(path / "pids.max", str(limits.pids))
                _write(path / "cpu.max", f"{int(limits.cpus * 100000)} 100000")
            elif controller == "memory":
                _write(path / "memory.limit_in_bytes", str(memory))
                _write(path / "memory.memsw.limit_in_bytes", str(memory), optional=True)
            elif controller == "pids":
                _write(path / "pids.max", str(limits.pids))
            elif controller == "cpu":
                _write(path / "cpu.cfs_period_us", "100000")
                _write(path / "cpu.cfs_quota_us", str(int(limits.cpus * 100000)))

    @property
    def procs_files(self) -> list[str]:
        return [str(path / "cgroup.procs") for path in self.dirs.values()]

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this cgroup so far."""
        if self.version == 2:
            text = _read(self.dirs[""] / "memory.events")
        else:
            text = _read(self.dirs["memory"] / "memory.oom_control")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        if self.version == 1:  # older kernels: failcnt only
            return int(_read(self.dirs["memory"] / "memory.memsw.failcnt") or _read(self.dirs["memory"] / "memory.failcnt") or 0)
        return 0

    def memory_used_bytes(self) -> int | None:
        """What the sandbox's processes use now (page cache included), or None when unreadable."""
        if self.version == 2:
            text = _read(self.dirs[""] / "memory.current")
        else:
            text = _read(self.dirs["memory"] / "memory.usage_in_bytes")
        return int(text) if text.strip().isdigit() else None

    def cpu_used_ns(self) -> int | None:
        """CPU time the sandbox's processes have used so far, in nanoseconds (user + system; v2:
        cpu.stat's usage_usec, v1: cpuacct.usage), or None when unreadable."""
        if self.version == 2:
            for line in _read(self.dirs[""] / "cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec" and value.strip().isdigit():
                    return int(value) * 1000
            return None
        path = self.dirs.get("cpuacct") or self.dirs.get("cpu")
        text = _read(path / "cpuacct.usage") if path is not None else ""
        return int(text) if text.strip().isdigit() else None

    def pids(self) -> list[int]:
        path = self.dirs.get("pids") or self.dirs.get("")
        if path is None:
            return []
        return [int(p) for p in _read(path / "cgroup.procs").split()]

    def remove(self) -> None:
        remove_cgroup_dirs(list(self.dirs.values()))


def remove_cgroup_dirs(dirs: list[Path]) -> None:
    """Kill whatever is left in these cgroups, then remove them (retrying while busy)."""
    for path in dirs:
        for _ in range(50):
            pids = [int(p) for p in _read(path / "cgroup.procs").split()]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    break
                time.sleep(0.02)


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        path.write_text(value)
    except OSError:
        if not optional:
            raise


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def sandpit_parents(isolation: Isolation) -> list[Path]:
    """Every "sandpit" parent on this machine: ours, and those of servers that ran in other cgroups
    (each shell or service has its own), so the sweep finds what any dead server left."""
    found = set(isolation.cgroup_parents.values())
    for parent in isolation.cgroup_parents.values():
        mount = CGROUP_ROOT / parent.relative_to(CGROUP_ROOT).parts[0] if isolation.cgroup_version == 1 else CGROUP_ROOT
        for depth in ("sandpit", "*/sandpit", "*/*/sandpit", "*/*/*/sandpit"):
            found.update(p for p in mount.glob(depth) if p.is_dir())
    return sorted(found)
