"""The Python kernels' template: `zygote.py FD` (FD: a unix SOCK_SEQPACKET socket to the server).

It runs in a bwrap of its own as the sandbox user, with the root file system a kernel sees, no
network, a cleared environment and no_new_privs, and keeps CAP_SYS_ADMIN, CAP_NET_ADMIN and
CAP_SETPCAP within its own user namespace only (what it needs to make children). It imports
ipykernel, the start-up code's modules, numpy, pandas and matplotlib, starts no thread, and then
forks one child per request. Each request carries four fds: a socket for that kernel, the pipe
for its stderr, and detached mounts (open_tree) of its workspace and of its control dir.

A child (`_child`) sends its pid (SCM_CREDENTIALS: the server sees its own pid for it), waits
until the server has put it in the sandbox's cgroup, unshares mount, pid, ipc, uts, network and
cgroup namespaces, and forks the sandbox's pid 1 (`_init`), which gives the sandbox its own
/tmp, /dev, /proc, workspace and control dir, drops every capability and forks the kernel. The
child reports the kernel's exit status (as bwrap does: 128+N for signal N) on its socket.
"""

import ctypes
import json
import os
import signal
import socket
import struct
import sys

sys.modules["debugpy"] = None  # type: ignore[assignment]
sys.dont_write_bytecode = True

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
MNT_DETACH = 2
MOVE_MOUNT_F_EMPTY_PATH = 4
SYS_MOVE_MOUNT = 429  # x86_64 and aarch64 alike
AT_FDCWD = -100
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 1, 24, 47, 4
PR_SET_NAME = 15
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None) -> None:
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def _preload() -> None:
    """What every kernel imports (and the stack a first cell reaches for), once, in the template."""
    os.environ["JUPYTER_CONFIG_DIR"] = "/opt/sandpit/no-jupyter-config"
    import importlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("sandpit_launcher", "/opt/sandpit/launcher.py")
    launcher = importlib.util.module_from_spec(spec)
    sys.modules["sandpit_launcher"] = launcher
    spec.loader.exec_module(launcher)
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp  # noqa: F401
    import ipykernel.zmqshell  # noqa: F401
    import IPython.core.formatters  # noqa: F401
    import matplotlib.backends.backend_agg  # noqa: F401  (the inline backend draws with Agg)
    import matplotlib.pyplot  # noqa: F401  (its backend is chosen at first use, in the kernel)
    import IPython.core.pylabtools  # noqa: F401  (not matplotlib_inline.backend_inline: it hooks into
    # the shell when first imported, so the kernel imports it itself, once its shell exists)
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    for name in ("pdb", "code", "faulthandler", "resource", "tornado.gen", "tornado.locks", "tornado.queues",
                 "tornado.platform.asyncio", "IPython.extensions", "ipykernel.debugger"):
        try:
            importlib.import_module(name)  # what a kernel's start imports after the fork
        except ImportError:
            pass


def _reseed() -> None:
    """Nothing random is shared between kernels: reseed what the template seeded at import
    (`random` reseeds itself after fork). PYTHONHASHSEED cannot change after start: str hashes
    are the same in every kernel of one template."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _drop_capabilities() -> None:
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = ctypes.create_string_buffer(24)  # two (effective, permitted, inheritable): all zero
    _check(_libc.capset(header, data), "capset")


def _loopback_up() -> None:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, 0x8913, ifreq))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 0x1 | 0x40, b""))  # SIOCSIFFLAGS up|running


def _new_dev(staging: str) -> None:
    """A /dev of the sandbox's own at `staging` (as bwrap's --dev makes it): device nodes bound from
    the template's, a new devpts instance, an empty shm."""
    _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for name in DEVICES:
        open(f"{staging}/{name}", "w").close()
        _mount(f"/dev/{name}", f"{staging}/{name}", None, MS_BIND)
    os.mkdir(f"{staging}/shm")
    os.mkdir(f"{staging}/pts")
    _mount("devpts", f"{staging}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    os.symlink("pts/ptmx", f"{staging}/ptmx")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
        os.symlink(target, f"{staging}/{name}")


def _replace(target: str, staging: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"unmounting {target}")
    _mount(staging, target, None, MS_MOVE)
    os.rmdir(staging)


def _attach(fd: int, target: str) -> None:
    _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH),
           f"attaching {target}")
    os.close(fd)


def _make_root(request: dict, workspace_fd: int, control_fd: int) -> None:
    """The sandbox's own mounts over the template's (in this new mount namespace; pid 1 here)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _check(_libc.umount2(b"/tmp", MNT_DETACH), "unmounting /tmp")
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={request['tmpfs_bytes']},mode=1777")
    os.mkdir("/tmp/.dev")
    _new_dev("/tmp/.dev")
    os.mkdir("/tmp/.proc")
    _mount("proc", "/tmp/.proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _replace("/dev", "/tmp/.dev")
    _replace("/proc", "/tmp/.proc")
    for sub in ("sys", "sysrq-trigger", "irq", "bus"):  # read-only, as bwrap's --proc leaves them
        path = f"/proc/{sub}"
        if os.path.exists(path):
            _mount(path, path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _attach(workspace_fd, "/home/user")
    _attach(control_fd, "/run/k")
    _check(_libc.sethostname(b"sandbox", 7), "sethostname")
    _loopback_up()
    os.chdir("/home/user")


def _exit_code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _init(request: dict, fds: list[int]) -> None:
    """pid 1 of the sandbox: its mounts, no capabilities, then the kernel; exits with its status."""
    _, stderr_fd, workspace_fd, control_fd = fds
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _make_root(request, workspace_fd, control_fd)
    _drop_capabilities()
    kernel = os.fork()
    if kernel == 0:
        _libc.prctl(PR_SET_NAME, b"python", 0, 0, 0)
        _kernel(request, stderr_fd)
    os.close(stderr_fd)
    os.closerange(3, 65536)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
        if pid == kernel:
            os._exit(_exit_code(status))


def _kernel(request: dict, stderr_fd: int) -> None:
    """The kernel itself: its own session, limits and fds, then ipykernel on its connection file."""
    import resource

    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(stderr_fd, 2)
        os.closerange(3, 65536)
        resource.setrlimit(resource.RLIMIT_FSIZE, (request["fsize"], request["fsize"]))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if request.get("data"):
            resource.setrlimit(resource.RLIMIT_DATA, (request["data"], request["data"]))
        _reseed()
        launcher = sys.modules["sandpit_launcher"]
        launcher._SERVER_STDERR = os.dup(2)
        os.set_inheritable(launcher._SERVER_STDERR, False)
        from ipykernel.kernelapp import IPKernelApp

        launcher._init_kernel_after_the_lock(IPKernelApp)
        sys.argv = ["/opt/sandpit/launcher.py", *request["argv"]]
        IPKernelApp.launch_instance(argv=request["argv"])
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def _child(request: dict, fds: list[int]) -> None:
    """The forked child, outside the sandbox's pid namespace: it waits for its cgroup, makes the
    namespaces, and reports the sandbox's exit status."""
    sock = socket.socket(fileno=fds[0])
    _libc.prctl(PR_SET_NAME, b"sandpit-init", 0, 0, 0)  # the server tells it from the kernel's own
    try:
        creds = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
        sock.sendmsg([b"pid"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
        if sock.recv(16) != b"go":  # the server put this process in the sandbox's cgroup
            os._exit(1)
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID
                             | CLONE_NEWNET), "unshare")
        init = os.fork()
        if init == 0:
            sock.detach()
            os.close(fds[0])
            try:
                _init(request, fds)
            except BaseException as exc:
                _say(fds[1], exc)
                os._exit(1)
        for fd in fds[1:]:
            os.close(fd)
        while True:
            try:
                _, status = os.waitpid(init, 0)
                break
            except InterruptedError:
                continue
        code = _exit_code(status)
        try:
            sock.send(b"exit %d" % code)
        except OSError:
            pass
        os._exit(code)
    except BaseException as exc:
        _say(fds[1], exc)
        try:
            sock.send(b"failed " + str(exc).encode(errors="replace")[:2000])
        except OSError:
            pass
        os._exit(1)


def _say(fd: int, exc: BaseException) -> None:
    """Why this child could not start a kernel, on the kernel's stderr (which the server shows)."""
    try:
        os.write(fd, f"the kernel could not be forked: {exc}\n".encode(errors="replace"))
    except OSError:
        pass


PRELOADED: frozenset = frozenset()  # the modules the template imported (what a kernel inherits)


def main() -> None:
    global PRELOADED
    if "PWD" in os.environ:  # bwrap always sets it; pid 1 of every child would show it
        env = {k: v for k, v in os.environ.items() if k != "PWD"}
        os.execve(sys.executable, [sys.executable, "-I", os.path.abspath(__file__), *sys.argv[1:]], env)
    control = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    sys.modules["sandpit_zygote"] = sys.modules[__name__]  # IPython makes __main__ the user's namespace
    PRELOADED = frozenset(sys.modules)
    import threading

    if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
        control.send(b"threads: the template started a thread while importing")
        return
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    import gc

    gc.collect()
    gc.freeze()  # the collector never walks (so never copies) the template's objects in a kernel
    _libc.prctl(PR_SET_NAME, b"sandpit-zygote", 0, 0, 0)
    control.send(b"ready")
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 65536, 4)
        except InterruptedError:
            continue
        if not message:
            return  # the server closed its end: this template is retired
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            continue
        if os.fork() == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            control.close()
            _child(json.loads(message), fds)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    main()
