"""How a local sandbox is confined: the bwrap command line, cgroups (v1 or v2) and process trees.

Only this package knows about bwrap. As root, kernels run as SANDBOX_USER (dropped with setpriv
before bwrap) inside a per-sandbox cgroup that limits memory, pids and CPU; as non-root, bwrap's
user namespace plus prlimit are all there is (`Isolation.describe()` says which).
"""

from __future__ import annotations

import errno
import hashlib
import os
import platform
import pwd
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

KERNEL_FILES = Path(__file__).resolve().parent / "kernel_files"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Paths inside the sandbox.
HOME = "/home/user"
CONTROL = "/run/k"
VENV = "/opt/venv"
SANDPIT = "/opt/sandpit"
PACKAGES = f"{HOME}/.local/packages"  # where `install` puts Python packages (on PYTHONPATH)
UNIX_PATH_MAX = 107
V2_CONTROLLERS = ("memory", "pids", "cpu")


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


# --- what this machine offers ---------------------------------------------------------------


def _own_cgroup_paths() -> dict[str, str]:
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
        return "bwrap+userns+prlimit (not root: no dedicated user, no cgroup limits)"

    @classmethod
    def detect(cls) -> Isolation:
        bwrap = shutil.which(settings.SANDBOX_BWRAP) or ""
        as_root = os.geteuid() == 0
        base = dict(bwrap=bwrap, as_root=as_root, uid=os.getuid(), gid=os.getgid(), cgroup_version=0,
                    cgroup_parents={})
        if platform.system() != "Linux":
            return cls(problem=f"the local sandbox needs Linux (this is {platform.system()}); "
                       "set E2B_API_KEY to use E2B instead", **base)
        if not bwrap:
            return cls(problem=f"bubblewrap ({settings.SANDBOX_BWRAP}) is not installed; "
                       "fix: sudo apt-get install -y bubblewrap (or run bin/setup as root)", **base)
        for tool in ("prlimit", "setpriv") if as_root else ("prlimit",):
            if not shutil.which(tool):
                return cls(problem=f"{tool} is missing; fix: sudo apt-get install -y util-linux", **base)
        if as_root:
            try:
                user = pwd.getpwnam(settings.SANDBOX_USER)
            except KeyError:
                return cls(problem=f"the sandbox user {settings.SANDBOX_USER} does not exist; "
                           "fix: run bin/setup (manage.py sandbox_setup) as root", **base)
            base.update(uid=user.pw_uid, gid=user.pw_gid)
            version, parents = _cgroup_parents()
            base.update(cgroup_version=version, cgroup_parents=parents)
        kenv = Path(settings.SANDBOX_KERNEL_ENV)
        if not (kenv / "bin" / "python").exists():
            return cls(problem=f"the kernels' environment {kenv} is missing; fix: run bin/setup", **base)
        return cls(problem="", **base)


def _cgroup_parents() -> tuple[int, dict[str, Path]]:
    """Where per-sandbox cgroups go: a "sandpit" dir under this process's own cgroup.

    (0, {}) when cgroups can't be used (not delegated to us): prlimit is then all there is.
    """
    own = _own_cgroup_paths()
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
    return 1, parents


# --- per-sandbox cgroup -----------------------------------------------------------------------


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


# --- processes ------------------------------------------------------------------------------


def process_start_time(pid: int) -> str:
    """A process's start time in clock ticks since boot ("" if it doesn't exist): pid + this = identity."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_tree(root_pid: int, *, with_zombies: bool = True) -> list[tuple[int, str]]:
    """(pid, comm) of every descendant of `root_pid`, parents before children."""
    children: dict[int, list[tuple[int, str]]] = {}
    zombies: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        head, _, tail = stat.rpartition(")")
        comm = head.partition("(")[2]
        fields = tail.split()
        try:
            ppid = int(fields[1])
        except (IndexError, ValueError):
            continue
        if fields[0] == "Z":
            zombies.add(int(name))
        children.setdefault(ppid, []).append((int(name), comm))
    found: list[tuple[int, str]] = []
    todo = [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    if not with_zombies:
        found = [(pid, comm) for pid, comm in found if pid not in zombies]
    return found


def signal_processes(pids: list[int], signum: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


# --- files the kernels read -----------------------------------------------------------------


def kernel_files_dir(state_dir: Path, uid: int, gid: int) -> Path:
    """A read-only copy of kernel_files/ (plus passwd/group) in the state dir, named by content.

    Copied rather than bound from the repo so the sandbox sees nothing of the project; named by a
    hash so several server processes share it without racing.
    """
    digest = hashlib.sha256()
    sources = sorted(p for p in KERNEL_FILES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for p in sources:
        digest.update(str(p.relative_to(KERNEL_FILES)).encode() + b"\0" + p.read_bytes())
    digest.update(f"{uid}:{gid}".encode())
    target = state_dir / f"kfiles-{digest.hexdigest()[:12]}"
    if target.exists():
        return target
    tmp = state_dir / f".kfiles-{os.getpid()}-{time.monotonic_ns()}"
    shutil.copytree(KERNEL_FILES, tmp, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp / "passwd").write_text(f"user:x:{uid}:{gid}:user:{HOME}:/bin/bash\n")
    (tmp / "group").write_text(f"user:x:{gid}:\n")
    for dirpath, _dirnames, filenames in os.walk(tmp):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- the command line -----------------------------------------------------------------------


def sandbox_env(language: str) -> dict[str, str]:
    """The whole environment inside the sandbox: nothing from the server's.

    `language` is a kernel kind ("python", "bash", "deno") or "install" (pip with the network).
    """
    env = {
        "HOME": HOME,
        "USER": "user",
        "LOGNAME": "user",
        "PATH": f"{PACKAGES}/bin:{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "SHELL": "/bin/bash",
        "TMPDIR": "/tmp",
        "PYTHONPATH": PACKAGES,
        "PYTHONDONTWRITEBYTECODE": "1",
        "IPYTHONDIR": "/tmp/.ipython",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "MPLCONFIGDIR": "/tmp/.matplotlib",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "DENO_DIR": f"{HOME}/.cache/deno",
        "DENO_NO_UPDATE_CHECK": "1",
        "DENO_NO_PROMPT": "1",
        "NO_COLOR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    if language == "bash":
        env["PS1"] = "$ "
    if language == "install":
        # pip with the network: no config, home or packages from the (user-controlled) workspace.
        del env["PYTHONPATH"]
        env.update(HOME="/tmp", PIP_CONFIG_FILE="/dev/null", PYTHONNOUSERSITE="1")
    return env


def bwrap_argv(
    isolation: Isolation,
    *,
    workspace: Path,
    control: Path | None,
    kfiles: Path,
    command: list[str],
    env: dict[str, str],
    limits: Limits,
    cgroup: Cgroup | None,
    network: bool = False,
    language: str = "python",
) -> list[str]:
    """The full argv that starts `command` confined (run it with a minimal environment)."""
    argv: list[str] = []
    if cgroup is not None and cgroup.procs_files:
        # Join the cgroup before anything else runs, so no child escapes it.
        script = 'for f in "$@"; do case "$f" in --) break;; esac; echo $$ > "$f" || exit 97; shift; done; shift; exec "$@"'
        argv += ["/bin/sh", "-c", script, "sh", *cgroup.procs_files, "--"]
    fsize = limits.workspace_quota_mb * 1024 * 1024
    argv += ["prlimit", f"--fsize={fsize}", "--nofile=1024", "--core=0"]
    if not (isolation.as_root and isolation.cgroup_version) and language != "deno":
        # No cgroup: cap the data segment instead (a rough memory limit; V8 can't start under it).
        argv += [f"--data={limits.memory_mb * 2 * 1024 * 1024}"]
    argv += ["--"]
    if isolation.as_root:
        argv += ["setpriv", "--reuid", str(isolation.uid), "--regid", str(isolation.gid), "--clear-groups",
                 "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    argv += [isolation.bwrap, "--unshare-all"]
    if network:
        argv += ["--share-net"]
    argv += ["--die-with-parent", "--new-session", "--clearenv", "--hostname", "sandbox",
             "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        host = Path("/") / name
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), f"/{name}"]
    for etc in ("ssl", "fonts", "alternatives", "ld.so.cache", "localtime", "mime.types", "ca-certificates"):
        argv += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    if network:
        for etc in ("resolv.conf", "hosts", "nsswitch.conf", "host.conf", "gai.conf"):
            argv += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    argv += [
        "--ro-bind", str(kfiles / "passwd"), "/etc/passwd",
        "--ro-bind", str(kfiles / "group"), "/etc/group",
        "--ro-bind", str(Path(settings.SANDBOX_KERNEL_ENV)), VENV,
        "--ro-bind", str(kfiles), SANDPIT,
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(limits.tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp",
        "--bind", str(workspace), HOME,
    ]
    if control is not None:
        argv += ["--bind", str(control), CONTROL]
    # The root itself (and /etc, /run, /opt) is bwrap's private tmpfs: make it read-only, so only
    # /tmp (size-capped) and the workspace take writes.
    argv += ["--remount-ro", "/", "--chdir", HOME]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--", *command]
    return argv


# The environment bwrap itself (and so the sandbox's pid 1) is started with.
OUTER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
