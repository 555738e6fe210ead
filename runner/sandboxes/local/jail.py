"""How a local sandbox is confined: the bwrap command line, cgroups (v1 or v2) and process trees.

Only this package knows about bwrap. As root, kernels run as SANDBOX_USER (dropped with setpriv
before bwrap) inside a per-sandbox cgroup that limits memory, pids and CPU; as non-root, bwrap's
user namespace plus prlimit are all there is (`Isolation.describe()` says which).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import pwd
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings

from runner.sandboxes.local import mounts
from runner.sandboxes.local.cgroups import Cgroup, cgroup_parents
from runner.sandboxes.local.limits import Isolation, Limits

KERNEL_FILES = Path(__file__).resolve().parent / "kernel_files"
# Paths inside the sandbox.
HOME = "/home/user"
CONTROL = "/run/k"
CONTROL_TMPFS_BYTES = 256 * 1024  # kernel.json and five sockets
# The one entry of a control dir the kernel may write to (it binds its sockets there), until locked.
SOCKETS = "s"
SOCKET_NAMES = tuple(f"k-{n}" for n in range(1, 6))
VENV = "/opt/venv"
SANDPIT = "/opt/sandpit"
PACKAGES = f"{HOME}/.local/packages"  # where `install` puts Python packages (on PYTHONPATH)
DENO_DIR = f"{HOME}/.cache/deno"  # the Deno kernel's cache, where `install` puts npm packages
UNIX_PATH_MAX = 107


# --- what this machine offers ---------------------------------------------------------------


def detect_isolation() -> Isolation:
    """What confinement this process can apply here; `problem` says why none, if so."""
    bwrap = shutil.which(settings.SANDBOX_BWRAP) or ""
    as_root = os.geteuid() == 0
    base = dict(bwrap=bwrap, as_root=as_root, uid=os.getuid(), gid=os.getgid(), cgroup_version=0,
                cgroup_parents={})
    if platform.system() != "Linux":
        return Isolation(problem=f"the local sandbox needs Linux (this is {platform.system()}); "
                         "set E2B_API_KEY to use E2B instead", **base)
    if not bwrap:
        return Isolation(problem=f"bubblewrap ({settings.SANDBOX_BWRAP}) is not installed; "
                         "fix: sudo apt-get install -y bubblewrap (or run bin/setup as root)", **base)
    for tool in ("prlimit", "setpriv") if as_root else ("prlimit",):
        if not shutil.which(tool):
            return Isolation(problem=f"{tool} is missing; fix: sudo apt-get install -y util-linux", **base)
    if as_root:
        try:
            user = pwd.getpwnam(settings.SANDBOX_USER)
        except KeyError:
            return Isolation(problem=f"the sandbox user {settings.SANDBOX_USER} does not exist; "
                       "fix: run bin/setup (manage.py sandbox_setup) as root", **base)
        base.update(uid=user.pw_uid, gid=user.pw_gid)
        version, parents = cgroup_parents()
        base.update(cgroup_version=version, cgroup_parents=parents)
    kenv = Path(settings.SANDBOX_KERNEL_ENV)
    if not (kenv / "bin" / "python").exists():
        return Isolation(problem=f"the kernels' environment {kenv} is missing; fix: run bin/setup", **base)
    return Isolation(problem="", **base)


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
            os.chmod(os.path.join(dirpath, f), 0o755 if os.path.basename(dirpath) == "bin" else 0o644)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- a kernel's control directory ----------------------------------------------------------
#
# Made fresh for every kernel start, in the sandbox's root-owned state dir: `path` (root, 0711,
# bound at CONTROL) holds kernel.json (the sandbox user's, 0600) and SOCKETS/ (the sandbox user's
# until lock_sockets). The server never resolves a name inside SOCKETS/ before it is locked.


class ControlTampered(Exception):
    """Something other than the kernel's own socket sits where one should be."""


def make_control_dir(path: Path, connection: dict[str, Any], owner: tuple[int, int] | None) -> int:
    """Create the control dir at `path` (which must not exist) and its kernel.json; the open
    O_DIRECTORY fd of its SOCKETS/ sub-dir. `owner` (as root) is the sandbox user's uid, gid.
    As root the dir is a tmpfs of its own (mounts.py), so the sandbox's mountinfo shows `/` for
    /run/k, not this path."""
    os.mkdir(path, 0o711)  # FileExistsError on any leftover, link or not: names are never reused
    if owner is not None:
        try:
            mounts.mount_tmpfs(path, size_bytes=CONTROL_TMPFS_BYTES)
        except BaseException:
            os.rmdir(path)
            raise
    dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(dir_fd, 0o711)  # whatever the umask
        fd = os.open("kernel.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        with os.fdopen(fd, "w") as f:
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), 0o600)
            json.dump(connection, f)
        os.mkdir(SOCKETS, 0o700, dir_fd=dir_fd)
        sockets_fd = os.open(SOCKETS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if owner is not None:
                os.fchown(sockets_fd, *owner)
            os.fchmod(sockets_fd, 0o700)
        except BaseException:
            os.close(sockets_fd)
            raise
        return sockets_fd
    finally:
        os.close(dir_fd)


def sockets_present(sockets_fd: int) -> bool:
    """Whether every one of SOCKET_NAMES exists in SOCKETS/ (of any type: lstat, no link followed)."""
    for name in SOCKET_NAMES:
        try:
            os.stat(name, dir_fd=sockets_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
    return True


def lock_sockets(sockets_fd: int, uid: int, *, as_root: bool) -> None:
    """Make SOCKETS/ root's and 0511 (the sandbox user can no longer add, remove or swap entries),
    then check that each of SOCKET_NAMES is a socket the sandbox user bound (not a link, not a hard
    link to anything else). Raises ControlTampered otherwise. As non-root there is nobody to lock
    out (the sandbox is this same user, who could chmod back): the 0511 only tells the launcher
    that the server is done with the dir."""
    if as_root:
        os.fchown(sockets_fd, 0, 0)
    os.fchmod(sockets_fd, 0o511)  # launcher.py waits for this (no longer writable) before user code
    for name in SOCKET_NAMES:
        try:
            info = os.stat(name, dir_fd=sockets_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise ControlTampered(f"{name} vanished from the kernel's control directory") from None
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != uid or info.st_nlink != 1:
            raise ControlTampered(f"{name} in the kernel's control directory is not the kernel's socket "
                                  f"(something in the sandbox replaced it)")


def remove_control_dir(path: Path) -> None:
    """Remove a control dir (its HMAC key too) once its kernel is dead: its tmpfs is unmounted
    (as root), then shutil.rmtree, which is fd-based: links inside are removed, never followed. As non-root, SOCKETS/ (0511, ours) is made
    writable again first, or its sockets could not be unlinked."""
    if os.geteuid() != 0:
        with contextlib.suppress(OSError):
            fd = os.open(path / SOCKETS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
    mounts.remove_tree(path)


# --- the command line -----------------------------------------------------------------------


def sandbox_env(language: str) -> dict[str, str]:
    """The whole environment inside the sandbox: nothing from the server's.

    `language` is a kernel kind ("python", "bash", "deno") or "install" (pip with the network).
    """
    env = {
        "HOME": HOME,
        "USER": "user",
        "LOGNAME": "user",
        # SANDPIT/bin first among ours: its `pip` starts /opt/venv's (the venv's own names the host's path).
        "PATH": f"{PACKAGES}/bin:{SANDPIT}/bin:{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
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
        "DENO_DIR": DENO_DIR,
        "DENO_NO_UPDATE_CHECK": "1",
        "DENO_NO_PROMPT": "1",
        "DENO_TLS_CA_STORE": "system",
        "NO_COLOR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    if language == "bash":
        env["PS1"] = "$ "
    if language == "r":
        env["R_ENVIRON_USER"] = f"{SANDPIT}/no-renviron"  # not ~/.Renviron (the workspace's): no such file
        env["R_PROFILE_USER"] = f"{SANDPIT}/no-rprofile"
        env["R_LIBS_USER"] = f"{HOME}/.local/R"
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
    kenv: Path,
    command: list[str],
    env: dict[str, str],
    limits: Limits,
    cgroup: Cgroup | None,
    network: bool = False,
    language: str = "python",
    tmp: Path | None = None,
) -> list[str]:
    """The full argv that starts `command` confined (run it with a minimal environment)."""
    argv: list[str] = []
    if cgroup is not None and cgroup.procs_files:
        # Join the cgroup before anything else runs, so no child escapes it. sh exports PWD (the
        # server's cwd); unset, it stays out of bwrap's environment, which the sandbox's pid 1 shows.
        script = 'unset PWD OLDPWD; for f in "$@"; do case "$f" in --) break;; esac; echo $$ > "$f" || exit 97; shift; done; shift; exec "$@"'
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
    # /etc/R: R's own config (/usr/lib/R/etc links there), read by an R kernel.
    for etc in ("ssl", "fonts", "alternatives", "ld.so.cache", "localtime", "mime.types", "ca-certificates", "R"):
        argv += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    if network:
        for etc in ("resolv.conf", "hosts", "nsswitch.conf", "host.conf", "gai.conf"):
            argv += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    argv += [
        "--ro-bind", str(kfiles / "passwd"), "/etc/passwd",
        "--ro-bind", str(kfiles / "group"), "/etc/group",
        "--ro-bind", str(kenv), VENV,
        "--ro-bind", str(kfiles), SANDPIT,
        "--proc", "/proc",
        "--dev", "/dev",
        "--bind", str(workspace), HOME,
    ]
    # The sandbox's own /tmp (one tmpfs for all its processes, as root), else one per process.
    argv += ["--bind", str(tmp), "/tmp"] if tmp is not None else ["--size", str(limits.tmpfs_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    if control is not None:
        argv += ["--bind", str(control), CONTROL]
    # /root exists, as on any Linux box (an E2B context's cwd may name it), read-only like the rest.
    argv += ["--dir", "/root"]
    # The root itself (and /etc, /run, /opt) is bwrap's private tmpfs: make it read-only, so only
    # /tmp (size-capped) and the workspace take writes.
    argv += ["--remount-ro", "/", "--chdir", HOME]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--", *command]
    return argv


@contextlib.contextmanager
def hidden_options(argv: list[str]) -> Iterator[tuple[list[str], tuple[int, ...]]]:
    """`argv` (from bwrap_argv) with bwrap's options moved into a memfd read by `--args FD`, and
    the fds the spawn must pass (pass_fds); closed on exit. The sandbox's pid 1 is bwrap, whose
    command line code inside can read: this way it shows no host path, only `bwrap --args N --
    COMMAND`. bwrap closes the fd once read, so nothing inside inherits it."""
    start = argv.index("--unshare-all")  # bwrap's first option (bwrap_argv puts it there)
    end = argv.index("--", start)  # no option or value of bwrap_argv's is a bare "--"
    fd = os.memfd_create("bwrap-args", os.MFD_CLOEXEC)
    try:
        os.write(fd, b"".join(arg.encode() + b"\0" for arg in argv[start:end]))
        os.lseek(fd, 0, os.SEEK_SET)
        yield [*argv[:start], "--args", str(fd), *argv[end:]], (fd,)
    finally:
        os.close(fd)


# The environment bwrap itself (and so the sandbox's pid 1) is started with.
OUTER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
