"""What code in a local sandbox cannot do, and how the local backend holds up (real kernels in bwrap).

As root (CI), kernels run as SANDBOX_USER in per-sandbox cgroups; as non-root they run in bwrap's
user namespace with prlimit only, and the tests that need cgroups skip, saying so.
Most tests share one sandbox per module (`shared`), since they only look around.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from pathlib import Path

import pytest
import pytest_asyncio
from django.conf import settings

from runner.sandboxes.base import Sandbox, SandboxGone, SandboxUnavailable, Stdout
from runner.sandboxes.local import LocalBackend, files, jail, mounts, processes
from runner.sandboxes.local.backend import REAPER_GRACE_S, sweep
from runner.sandboxes.local.kernel import Kernel, KernelDied
from tests.fixtures_sandboxes import local_backend_or_skip, run

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local() -> LocalBackend:
    return local_backend_or_skip()  # type: ignore[return-value]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(local: LocalBackend) -> AsyncIterator[Sandbox]:
    sandbox = await local.create(owner_id=1, session_id=str(uuid.uuid4()))
    yield sandbox
    await sandbox.close()


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(local: LocalBackend) -> AsyncIterator[Sandbox]:
    sandbox = await local.create(owner_id=2, session_id=str(uuid.uuid4()))
    yield sandbox
    await sandbox.close()


def needs_cgroups(local: LocalBackend) -> None:
    if not local.isolation.cgroup_version:
        pytest.skip("needs root with cgroups; without them memory and pids are only capped by prlimit")


async def python_says(sandbox: Sandbox, code: str) -> str:
    outcome, events = await run(sandbox, code)
    assert outcome.status == "ok", events.events
    return events.stdout.strip()


# --- network ------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [5432, 6379], ids=["postgres", "redis"])
async def test_cannot_connect_to_the_hosts_database_ports(shared: Sandbox, port: int) -> None:
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')\n"
        "except OSError as exc:\n"
        "    print('refused', type(exc).__name__)\n"
    )
    assert (await python_says(shared, code)).startswith("refused")


async def test_cannot_reach_the_hosts_other_addresses(shared: Sandbox) -> None:
    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    addresses.discard("127.0.0.1")
    addresses.add("10.0.2.2")  # a typical gateway, in case the host has only loopback here
    code = (
        "import socket\nfor ip in %r:\n"
        "    try:\n        socket.create_connection((ip, 5432), timeout=2); print('connected', ip)\n"
        "    except OSError as exc:\n        print('blocked', ip)\n"
    ) % sorted(addresses)
    assert "connected" not in await python_says(shared, code)


async def test_only_loopback_exists(shared: Sandbox) -> None:
    assert await python_says(shared, "import socket; print([n for _, n in socket.if_nameindex()])") == "['lo']"


async def test_cannot_resolve_dns(shared: Sandbox) -> None:
    code = (
        "import socket\n"
        "try:\n    print(socket.getaddrinfo('pypi.org', 443))\n"
        "except OSError as exc:\n    print('no dns', type(exc).__name__)\n"
    )
    assert (await python_says(shared, code)).startswith("no dns")


# --- files and identity -------------------------------------------------------------------


async def test_cannot_read_etc_shadow(shared: Sandbox) -> None:
    code = "try:\n    print(open('/etc/shadow').read()[:20])\nexcept OSError as exc:\n    print('denied', type(exc).__name__)"
    assert (await python_says(shared, code)).startswith("denied")


async def test_cannot_see_the_project_or_its_database(shared: Sandbox) -> None:
    # /root is the sandbox's own: empty and read-only (E2B contexts may name it as their cwd), never the host's.
    paths = [str(settings.BASE_DIR), str(settings.BASE_DIR / "manage.py"), str(settings.SANDBOX_STATE_DIR)]
    # The checkout's parent too, unless it is a directory the sandbox has of its own (a clone in /tmp).
    if str(settings.BASE_DIR.parent) not in {"/", "/tmp", "/home", "/opt", "/usr"}:
        paths.append(str(settings.BASE_DIR.parent))
    db = settings.DATABASES["default"].get("NAME")
    if db and str(db).startswith("/"):
        paths.append(str(db))
    code = f"import os\nprint([p for p in {paths!r} if os.path.exists(p)], os.listdir('/root'), os.access('/root', os.W_OK))"
    assert await python_says(shared, code) == "[] [] False"


async def test_sees_only_a_read_only_usr_and_its_own_home(shared: Sandbox) -> None:
    code = (
        "import os\n"
        "print(sorted(os.listdir('/')))\n"
        "for p in ('/usr/bin', '/opt/venv', '/etc'):\n"
        "    try:\n        open(p + '/planted', 'w'); print('wrote', p)\n"
        "    except OSError:\n        pass\n"
    )
    out = await python_says(shared, code)
    assert "wrote" not in out
    assert "'work'" not in out and "'var'" not in out  # /root is there, empty (the test above)


async def test_runs_as_an_unprivileged_user_without_capabilities(local: LocalBackend, shared: Sandbox) -> None:
    out = await python_says(
        shared,
        "import os\nstatus = open('/proc/self/status').read()\n"
        "print(os.getuid(), [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')][0])",
    )
    uid, cap_eff = out.split()
    assert int(cap_eff, 16) == 0
    if local.isolation.as_root:
        assert int(uid) == local.isolation.uid != 0


async def test_cannot_see_a_secret_in_the_servers_environment(local: LocalBackend) -> None:
    canary = "sandpit-canary-" + secrets.token_hex(8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SANDPIT_TEST_CANARY", canary)
        mp.setenv("E2B_API_KEY", canary)
        mp.setenv("DJANGO_SECRET_KEY", canary)
        sandbox = await local.create(owner_id=3, session_id=str(uuid.uuid4()))
        try:
            # bash starts a new kernel now, after the canary is in this process's environment.
            outcome, events = await run(
                sandbox, "env; cat /proc/*/environ | tr '\\0' '\\n'; echo done", language="bash"
            )
            python = await python_says(
                sandbox, "import os, glob\nprint(sorted(os.environ))\n"
                "print([open(p, 'rb').read() for p in glob.glob('/proc/[0-9]*/environ')])",
            )
        finally:
            await sandbox.close()
    assert outcome.status == "ok" and "done" in events.stdout
    for seen in (events.stdout, python):
        assert canary not in seen
        assert "E2B_API_KEY" not in seen and "DJANGO_SECRET_KEY" not in seen
    assert "HOME=/home/user" in events.stdout


async def test_pid_1_shows_no_host_path_in_its_environment_or_command_line(local: LocalBackend, shared: Sandbox) -> None:
    code = (
        "import glob\n"
        "for name in ('environ', 'cmdline'):\n"
        "    print(name, open('/proc/1/' + name, 'rb').read().replace(b'\\0', b' ').decode(errors='replace'))\n"
    )
    seen = await python_says(shared, code)
    environ, cmdline = seen.split("\n", 1)
    assert "PWD=" not in environ, environ
    assert cmdline.startswith("cmdline bwrap --args ") or cmdline.startswith(f"cmdline {local.isolation.bwrap} --args "), cmdline
    host_paths = [str(settings.BASE_DIR), os.getcwd(), str(settings.SANDBOX_STATE_DIR), str(shared.root),  # type: ignore[attr-defined]
                  str(shared.workspace), shared.session_id]  # type: ignore[attr-defined]
    assert [p for p in host_paths if p in seen] == []


async def test_no_process_in_a_sandbox_shows_a_host_path_or_its_session_id(local: LocalBackend, shared: Sandbox) -> None:
    """Every process's command line (what `pgrep -fa .` shows), a command's beside the kernels':
    bwrap's options are behind `--args FD`, and the sh, prlimit and setpriv before it exec'd away."""
    listing = "for p in /proc/[0-9]*; do printf '%s ' ${p#/proc/}; tr '\\0' ' ' < $p/cmdline; echo; done"
    events: list[Any] = []
    code = await shared.command(["bash", "-c", listing], on_event=events.append, timeout_s=30)  # type: ignore[attr-defined]
    command_view = "".join(e.text for e in events if isinstance(e, Stdout))
    kernel_view = await python_says(shared, "import subprocess\nprint(subprocess.run(['pgrep', '-fa', '.'], "
                                            "capture_output=True, text=True).stdout)")
    assert code == 0 and command_view.startswith("1 ") and "bwrap --args " in command_view
    assert "bwrap --args " in kernel_view
    host = [str(settings.BASE_DIR), os.getcwd(), str(settings.SANDBOX_STATE_DIR), str(shared.root),  # type: ignore[attr-defined]
            str(shared.workspace), shared.session_id, "setpriv", "prlimit", "/bin/sh -c"]  # type: ignore[attr-defined]
    for seen in (command_view, kernel_view):
        assert [p for p in host if p in seen] == [], seen


async def test_a_root_server_that_cannot_hide_host_paths_refuses_to_run_code() -> None:
    """The mountinfo test below would skip with the rest of this module if the backend refused to
    start: as root, refusing for want of mounts is a failure here, not a skip."""
    from runner.sandboxes import get_backend

    if os.geteuid() != 0:
        pytest.skip("as non-root the server cannot mount anything: mountinfo names host folders")
    problem = get_backend("local").isolation.problem  # type: ignore[attr-defined]
    assert "cannot mount" not in problem, problem


async def test_mountinfo_and_mounts_show_no_host_path(local: LocalBackend, shared: Sandbox) -> None:
    if not local.isolation.as_root:
        pytest.skip("as non-root the server cannot mount anything: mountinfo names host folders")
    await python_says(shared, "open('here.txt', 'w').write('x'); print('ok')")  # the workspace is in use
    code = (
        "import sys\n"
        "for name in ('/proc/self/mountinfo', '/proc/self/mounts', '/proc/1/mountinfo', '/proc/1/mounts'):\n"
        "    sys.stdout.write(open(name).read())\n"
    )
    seen = await python_says(shared, code)
    mountinfo = {line.split()[4]: line for line in seen.splitlines() if len(line.split()) > 9 and " - " in line}
    # Not vacuous: every bind that came from the state dir is there, and is a filesystem of its own.
    for point in ("/home/user", "/run/k", "/opt/venv", "/opt/sandpit"):
        assert point in mountinfo, seen
        assert mountinfo[point].split()[3] == "/", mountinfo[point]
    assert mountinfo["/etc/passwd"].split()[3] == "/passwd", mountinfo["/etc/passwd"]
    state = Path(settings.SANDBOX_STATE_DIR)
    host_paths = [
        str(settings.BASE_DIR), os.getcwd(), str(state), str(state.resolve()), str(settings.SANDBOX_KERNEL_ENV),
        str(settings.SANDBOX_WORKSPACES_DIR), str(shared.root), str(shared.workspace),  # type: ignore[attr-defined]
        shared.session_id, local.owner_dir.name, shared.id, "/work", "/var/lib", "/root", "/home/", "kfiles-",  # type: ignore[attr-defined]
        "workspaces", "sbx",
    ]
    seen_without_home = seen.replace("/home/user", "")
    assert [p for p in host_paths if p in seen_without_home] == [], seen


async def test_cannot_see_another_sandboxs_files(shared: Sandbox, fresh: Sandbox) -> None:
    token = secrets.token_hex(8)
    await python_says(shared, f"open('mine-{token}.txt', 'w').write('{token}'); print('ok')")
    code = (
        "import os\nhits = []\n"
        "for top in ('/home', '/tmp', '/run', '/opt', '/var', '/mnt', '/srv'):\n"
        "    for d, _, files in os.walk(top):\n"
        f"        hits += [os.path.join(d, f) for f in files if '{token}' in f]\n"
        "print(hits)"
    )
    assert await python_says(fresh, code) == "[]"
    other_root = str(getattr(shared, "root", "/nonexistent"))
    assert await python_says(fresh, f"import os; print(os.path.exists({other_root!r}))") == "False"


async def test_cannot_replace_the_kernels_sockets_or_connection_file(local: LocalBackend, shared: Sandbox) -> None:
    if not local.isolation.as_root:
        pytest.skip("as non-root the sandbox and the server are one user, who may always chmod back")
    code = (
        "import json, os\n"
        "ip = json.load(open('/run/k/kernel.json'))['ip']\n"
        "for path in (ip + '-1', '/run/k/kernel.json'):\n"
        "    try:\n        os.unlink(path); os.symlink('/etc/passwd', path); print('replaced', path)\n"
        "    except OSError as exc:\n        print('refused', type(exc).__name__)\n"
    )
    out = await python_says(shared, code)
    assert out.split("\n") == ["refused PermissionError"] * 2, out


# Planted where `install` puts packages (on PYTHONPATH), so it runs as each Python kernel starts:
# code of the sandbox's own that acts while the server is still setting the kernel up.
SWAP_CONNECTION_FILE = """
import json, os, threading, time
def _swap():
    ip = json.load(open('/run/k/kernel.json'))['ip']
    for _ in range(2000):  # once the kernel has read its connection file (its first socket exists)
        if os.path.exists(ip + '-1'):
            break
        time.sleep(0.005)
    try:
        os.unlink('/run/k/kernel.json')
        os.symlink(%(victim)r, '/run/k/kernel.json')
        result = 'swapped'
    except OSError as exc:
        result = 'refused ' + type(exc).__name__
    with open('/home/user/swap-%%d.txt' %% os.getpid(), 'w') as f:
        f.write(result)
    if result == 'swapped':
        os.kill(os.getpid(), 9)  # so the server starts another kernel, writing kernel.json again
threading.Thread(target=_swap, daemon=True).start()
"""

LINK_TO_A_HOST_SOCKET = """
import json, os, threading, time
def _link():
    ip = json.load(open('/run/k/kernel.json'))['ip']
    until = time.monotonic() + 3
    while time.monotonic() < until:  # before and after the kernel binds it
        try:
            if not os.path.islink(ip + '-1'):
                try:
                    os.unlink(ip + '-1')
                except FileNotFoundError:
                    pass
                os.symlink(%(target)r, ip + '-1')
        except OSError:
            pass
        time.sleep(0.001)
threading.Thread(target=_link, daemon=True).start()
"""

KILL_THE_KERNEL = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"


async def test_a_link_planted_at_the_connection_file_never_makes_the_server_write_a_host_file(
    local: LocalBackend, tmp_path: Path
) -> None:
    if not local.isolation.as_root:
        pytest.skip("as non-root the server has no more rights than the sandbox")
    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir(mode=0o700)
    victim = secret_dir / "app.sqlite3"
    victim.write_bytes(b"the app's database")
    victim.chmod(0o600)
    os.chown(tmp_path, 0, 0)
    sandbox = await local.create(owner_id=9, session_id=str(uuid.uuid4()))
    try:
        await sandbox.write_file(".local/packages/sitecustomize.py",
                                 (SWAP_CONNECTION_FILE % {"victim": str(victim)}).encode())
        await run(sandbox, KILL_THE_KERNEL)  # the next kernel starts with the planted code
        for _ in range(2):
            await run(sandbox, "print('restarted')", timeout_s=60)
        await sandbox.delete_file(".local/packages/sitecustomize.py")
        after, events = await run(sandbox, "print('still works')", timeout_s=60)
        tries = [(await sandbox.read_file(f.name)).decode() for f in await sandbox.list_files(".")
                 if f.name.startswith("swap-")]
    finally:
        await sandbox.close()
    assert victim.read_bytes() == b"the app's database"
    info = victim.stat()
    assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o7777)) == (0, 0, "0o600")
    assert tries and all(t == "refused PermissionError" for t in tries), tries
    assert (after.status, events.stdout) == ("ok", "still works\n"), events.events


async def test_a_link_planted_at_a_kernel_socket_never_makes_the_server_connect_to_a_host_socket(
    local: LocalBackend, tmp_path: Path
) -> None:
    if not local.isolation.as_root:
        pytest.skip("as non-root the server has no more rights than the sandbox")
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    target = private / "admin.sock"
    connections = [0]

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        writer.close()

    server = await asyncio.start_unix_server(on_connect, path=str(target))
    target.chmod(0o600)
    sandbox = await local.create(owner_id=10, session_id=str(uuid.uuid4()))
    try:
        await sandbox.write_file(".local/packages/sitecustomize.py",
                                 (LINK_TO_A_HOST_SOCKET % {"target": str(target)}).encode())
        await run(sandbox, KILL_THE_KERNEL)
        refused, refusal = await run(sandbox, "print('started')", timeout_s=60)  # a kernel with the planted code
        await asyncio.sleep(1.0)  # any reconnect the server might still make
        await sandbox.delete_file(".local/packages/sitecustomize.py")
        after, events = await run(sandbox, "print('still works')", timeout_s=60)
    finally:
        await sandbox.close()
        server.close()
        await server.wait_closed()
    assert connections[0] == 0
    # Whether the kernel bound its socket after the last swap (it starts) or not (a clear refusal)
    # depends on timing; the server connecting through the link never does.
    assert refused.status == "ok" or "not the kernel's socket" in refusal.text, refusal.events
    assert (after.status, events.stdout) == ("ok", "still works\n"), events.events


async def test_whatever_runs_in_the_sandbox_before_the_lock_cannot_make_the_server_connect_through_a_link(
    local: LocalBackend, tmp_path: Path
) -> None:
    # The "kernel" here is the attacker's own program, started as a kernel is: it owns the socket
    # dir until the lock and links every socket name to a root-only host socket.
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    target = private / "admin.sock"
    connections = [0]

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        writer.close()

    server = await asyncio.start_unix_server(on_connect, path=str(target))
    target.chmod(0o600)
    attack = (
        "import json, os, time\n"
        "ip = json.load(open('/run/k/kernel.json'))['ip']\n"
        f"for n in range(1, 6):\n    os.symlink({str(target)!r}, f'{{ip}}-{{n}}')\n"
        "time.sleep(60)\n"
    )
    sandbox = await local.create(owner_id=11, session_id=str(uuid.uuid4()))
    control = sandbox.root / f"py-{secrets.token_hex(4)}"  # type: ignore[attr-defined]
    kernel = Kernel(kind="python", control_dir=control, owner=local.kernel_owner,
                    argv_for=lambda _command: local.confined_argv(
                        sandbox, command=[f"{jail.VENV}/bin/python", "-I", "-c", attack],  # type: ignore[arg-type]
                        language="python", control=control))
    try:
        with pytest.raises(KernelDied, match="not the kernel's socket"):
            await asyncio.wait_for(kernel.start(local.zmq_context), 60)
        await asyncio.sleep(0.5)  # any reconnect the server might still make
    finally:
        kernel.kill()
        await sandbox.close()
        server.close()
        await server.wait_closed()
    assert connections[0] == 0
    assert not control.exists()  # its HMAC key went with it


async def test_code_planted_for_a_kernels_start_runs_only_once_its_socket_dir_is_locked(local: LocalBackend) -> None:
    def probe(name: str) -> bytes:
        return (f"import os\nopen('/home/user/early-{name}-%d' % os.getpid(), 'w')"
                ".write('writable' if os.access('/run/k/s', os.W_OK) else 'locked')\n").encode()

    sandbox = await local.create(owner_id=12, session_id=str(uuid.uuid4()))
    try:
        await sandbox.write_file(".local/packages/sitecustomize.py", probe("site"))
        await sandbox.write_file(".jupyter/jupyter_config.py", probe("jupyter"))
        await sandbox.write_file(".jupyter/ipython_kernel_config.py", probe("kernelconfig"))
        await sandbox.write_file(".bashrc", b'if [ -w /run/k/s ]; then s=writable; else s=locked; fi; echo -n $s > ~/early-bash-$$\n')
        await run(sandbox, KILL_THE_KERNEL)
        python, _ = await run(sandbox, "print('python')", timeout_s=60)
        bash, _ = await run(sandbox, "echo bash", language="bash", timeout_s=60)
        found = {f.name: (await sandbox.read_file(f.name)).decode() for f in await sandbox.list_files(".")
                 if f.name.startswith("early-")}
    finally:
        await sandbox.close()
    assert (python.status, bash.status) == ("ok", "ok")
    assert set(found.values()) == {"locked"}, found
    # A sitecustomize.py among the packages, and ~/.bashrc, still run (once it is safe).
    assert {name.split("-")[1] for name in found} >= {"site", "bash"}, found


async def test_code_can_change_files_written_through_the_api(shared: Sandbox) -> None:
    await shared.write_file("notes/api.txt", b"one\n")
    await python_says(shared, "open('notes/api.txt', 'a').write('two\\n'); print('ok')")
    assert await shared.read_file("notes/api.txt") == b"one\ntwo\n"


async def test_the_server_and_the_code_see_each_others_changes_at_once(local: LocalBackend, shared: Sandbox) -> None:
    """The workspace a sandbox sees is an overlay (as root): the server's own file I/O must go
    through it, or a name the code looked up before (a cached miss) would stay missing."""
    name = f"late-{secrets.token_hex(4)}.txt"
    assert await python_says(shared, f"import os; print(os.path.exists({name!r}), os.listdir('.') is not None)") \
        == "False True"
    await shared.write_file(name, b"from the server")
    workspace = await local.workspace(session_id=shared.session_id, sandbox_id=shared.id)  # type: ignore[attr-defined]
    await workspace.write_file(f"dir-{name}", b"through the files panel")
    assert await python_says(shared, f"print(open({name!r}).read(), open('dir-' + {name!r}).read())") \
        == "from the server through the files panel"
    await python_says(shared, f"import os; os.remove({name!r}); os.rename('dir-' + {name!r}, 'moved'); print('ok')")
    assert name not in [f.name for f in await shared.list_files(".")]
    assert await shared.read_file("moved") == b"through the files panel"
    await shared.delete_file("moved")
    assert await python_says(shared, "import os; print(os.path.exists('moved'))") == "False"


async def test_files_over_the_size_cap_are_refused(shared: Sandbox) -> None:
    with pytest.raises(ValueError, match="limit"):
        await shared.write_file("big.bin", b"\0" * (settings.SANDBOX_FILE_MAX_BYTES + 1))


async def test_install_runs_nothing_the_user_left_in_the_workspace(shared: Sandbox) -> None:
    planted = (
        "import os\n"
        "os.makedirs('.local/packages', exist_ok=True)\n"
        "open('.local/packages/sitecustomize.py', 'w').write(\"open('/home/user/pwned', 'w').write('x')\\n\")\n"
        "os.makedirs('.config/pip', exist_ok=True)\n"
        "open('.config/pip/pip.conf', 'w').write('[global]\\nindex-url = http://127.0.0.1:9/nothing\\n')\n"
        "print('planted')"
    )
    assert await python_says(shared, planted) == "planted"
    log: list[object] = []
    outcome = await shared.install(["humanize==4.11.0"], language="python", on_event=log.append, timeout_s=180)
    assert outcome.status == "ok", log  # the planted pip.conf (a dead index) was ignored
    assert "pwned" not in {f.name for f in await shared.list_files(".")}


async def test_an_npm_package_installed_for_javascript_imports_without_network(fresh: Sandbox) -> None:
    log: list[object] = []
    outcome = await fresh.install(["left-pad@1.3.0"], language="javascript", on_event=log.append, timeout_s=180)
    assert outcome.status == "ok", log
    after, events = await run(fresh, "import leftPad from 'npm:left-pad@1.3.0';\nconsole.log(leftPad('7', 3, '0'))",
                              language="javascript", timeout_s=60)
    assert (after.status, events.stdout) == ("ok", "007\n"), events.events


@pytest.mark.parametrize("bad", ["../x", "https://evil.example/x.tgz", "--registry=http://evil", "git+ssh://x", "a b"])
async def test_npm_install_rejects_anything_but_package_names(shared: Sandbox, bad: str) -> None:
    with pytest.raises(ValueError):
        await shared.install([bad], language="typescript", on_event=lambda e: None, timeout_s=30)


async def test_a_workspace_over_its_quota_is_flagged_and_refuses_uploads(fresh: Sandbox, settings) -> None:
    settings.SANDBOX_WORKSPACE_QUOTA_MB = 1
    await python_says(fresh, "for i in range(3):\n    open(f'blob{i}', 'wb').write(b'x' * 600_000)\nprint('written')")
    await asyncio.sleep(0.5)  # the usage check runs in the background after a run
    outcome, events = await run(fresh, "print('still runs')")
    assert (outcome.status, events.stdout) == ("ok", "still runs\n")
    assert "over its quota of 1 MiB" in events.stderr
    with pytest.raises(ValueError, match="quota"):
        await fresh.write_file("more.txt", b"x")


# ~4x the quota of the tests below, at ~10 MiB/s.
WRITE_32_MIB = ("import time\n"
                "for i in range(32):\n"
                "    open(f'part{i}', 'wb').write(b'x' * 2**20)\n"
                "    time.sleep(0.1)\n"
                "print('all written')")


async def test_a_run_writing_past_the_quota_is_stopped_saying_why(fresh: Sandbox, settings) -> None:
    """4x the quota in 1 MiB files (each under prlimit's per-file cap): the host-side watcher stops
    the run soon after the workspace passes 8 MiB, with an error saying why; its variables stay."""
    settings.SANDBOX_WORKSPACE_QUOTA_MB = 8
    settings.SANDBOX_QUOTA_CHECK_S = 0.1
    outcome, events = await run(fresh, WRITE_32_MIB, timeout_s=60)
    assert outcome.status == "error", events.events
    assert [(e.ename, e.evalue) for e in events.errors] == [("WorkspaceQuotaExceeded", events.errors[0].evalue)]
    assert events.errors[0].evalue.startswith("The run was stopped: the workspace passed its quota of 8 MiB")
    assert "all written" not in events.stdout
    usage_bytes = files.usage_bytes(str(fresh.workspace))
    assert 8 * 2**20 < usage_bytes <= 14 * 2**20
    assert await python_says(fresh, "import os\nos.remove('part0')\nprint(i)") not in ("", "31")  # a run may delete


async def test_code_that_swallows_the_stop_and_writes_on_is_killed(fresh: Sandbox, settings) -> None:
    settings.SANDBOX_WORKSPACE_QUOTA_MB = 8
    settings.SANDBOX_QUOTA_CHECK_S = 0.1
    code = ("import time\n"
            "i = 0\n"
            "while i < 200:\n"
            "    try:\n"
            "        open(f'p{i}', 'wb').write(b'x' * 2**20)\n"
            "        i += 1\n"
            "        time.sleep(0.1)\n"
            "    except KeyboardInterrupt:\n"
            "        pass")
    outcome, events = await run(fresh, code, timeout_s=60)
    assert outcome.status == "gone", events.events
    assert events.errors and events.errors[0].ename == "WorkspaceQuotaExceeded"
    assert files.usage_bytes(str(fresh.workspace)) <= 16 * 2**20


async def test_a_background_writer_a_run_left_running_is_killed_past_the_quota(fresh: Sandbox, settings) -> None:
    """A run that starts a process writing on after the run ended: the leftover is killed once the
    workspace passes the quota, and the next run says why."""
    settings.SANDBOX_WORKSPACE_QUOTA_MB = 8
    settings.SANDBOX_QUOTA_CHECK_S = 0.1
    await python_says(fresh, "import subprocess\nwriter = subprocess.Popen(['/bin/sh', '-c', "
                             "'i=0; while [ $i -lt 40 ]; do head -c 1048576 /dev/zero > bg$i; i=$((i+1)); sleep 0.1; done'])\n"
                             "print('started')")
    await asyncio.sleep(6)  # unchecked, it writes 40 MiB in ~4.5 s
    assert files.usage_bytes(str(fresh.workspace)) <= 14 * 2**20
    outcome, events = await run(fresh, "import glob\nprint(len(glob.glob('bg*')) < 40)")
    assert (outcome.status, events.stdout) == ("ok", "True\n")  # killed, not finished (the kernel reaps it: no exit code)
    assert "Note: What earlier runs left running was stopped: the workspace passed its quota of 8 MiB" in events.stderr


async def test_a_command_writing_past_the_quota_is_killed_saying_why(fresh: Sandbox, settings) -> None:
    settings.SANDBOX_WORKSPACE_QUOTA_MB = 8
    settings.SANDBOX_QUOTA_CHECK_S = 0.1
    said: list[object] = []
    code = await fresh.command(["/bin/sh", "-c", "for i in $(seq 32); do head -c 1048576 /dev/zero > c$i; sleep 0.1; done; echo done"],
                               on_event=said.append, timeout_s=60)
    assert code == -9
    text = "".join(getattr(e, "text", "") for e in said)
    assert "The command was stopped: the workspace passed its quota of 8 MiB" in text and "done" not in text
    assert files.usage_bytes(str(fresh.workspace)) <= 14 * 2**20


# --- resources ----------------------------------------------------------------------------


async def test_a_huge_print_keeps_the_servers_memory_bounded(shared: Sandbox) -> None:
    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    before = rss_mb()
    peak = [before]
    received = [0]

    def on_event(event: object) -> None:
        if isinstance(event, Stdout):
            received[0] += len(event.text)
            peak[0] = max(peak[0], rss_mb())

    outcome = await shared.run("print('x' * 100_000_000)", language="python", on_event=on_event, timeout_s=60)
    assert outcome.status == "ok"
    assert received[0] == 100_000_001
    assert peak[0] - before < 40, f"the server grew by {peak[0] - before:.0f} MB"


async def test_a_slow_reader_still_gets_every_byte_of_a_huge_print(shared: Sandbox) -> None:
    received = [0]

    async def slow_reader(event: object) -> None:
        if isinstance(event, Stdout):
            received[0] += len(event.text)
        await asyncio.sleep(0.001)  # e.g. a database write per chunk, while the kernel races ahead

    outcome = await shared.run("print('x' * 100_000_000)", language="python", on_event=slow_reader, timeout_s=120)
    assert outcome.status == "ok"
    assert received[0] == 100_000_001


async def test_a_fork_bomb_leaves_the_server_responsive_and_the_sandbox_usable(local: LocalBackend, fresh: Sandbox) -> None:
    needs_cgroups(local)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - t - 0.01)

    ticking = asyncio.create_task(ticker())
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    outcome, _ = await run(fresh, bomb, timeout_s=3)
    stop.set()
    await ticking
    assert outcome.status in ("timeout", "gone")
    assert max(lags) < 0.5, f"the event loop stalled for {max(lags):.2f} s"
    after, events = await run(fresh, "import subprocess; print(subprocess.run(['echo', 'alive'], capture_output=True, text=True).stdout)")
    assert (after.status, events.stdout) == ("ok", "alive\n\n")


async def test_a_memory_hog_is_stopped_with_a_clear_message_and_the_next_run_works(local: LocalBackend, fresh: Sandbox) -> None:
    needs_cgroups(local)
    outcome, events = await run(fresh, "hog = []\nwhile True:\n    hog.append(b'x' * 50_000_000)", timeout_s=60)
    assert outcome.status == "gone"
    assert f"ran out of memory ({settings.SANDBOX_MEMORY_MB} MiB)" in events.text
    after, events = await run(fresh, "print('fresh')")
    assert (after.status, events.stdout) == ("ok", "fresh\n")


async def test_the_process_limit_holds(local: LocalBackend, fresh: Sandbox) -> None:
    needs_cgroups(local)
    code = (
        "import subprocess\nprocs = []\n"
        "try:\n"
        f"    for _ in range({settings.SANDBOX_PIDS + 50}):\n"
        "        procs.append(subprocess.Popen(['sleep', '30']))\n"
        "except OSError as exc:\n    print('capped', len(procs))\n"
        "for p in procs:\n    p.kill(); p.wait()\n"
    )
    out = await python_says(fresh, code)
    assert out.startswith("capped") and int(out.split()[1]) < settings.SANDBOX_PIDS


async def test_exited_child_processes_are_reaped_after_each_run(fresh: Sandbox) -> None:
    code = (
        "import os\n"
        "for _ in range(20):\n"
        "    if os.fork() == 0:\n"
        "        os._exit(0)\n"
    )
    await python_says(fresh, code + "print('forked')")
    zombies = await python_says(
        fresh,
        "import os\nstates = []\nfor p in os.listdir('/proc'):\n"
        "    if p.isdigit():\n"
        "        try:\n            states.append(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0])\n"
        "        except OSError:\n            pass\n"
        "print(states.count('Z'))",
    )
    assert zombies == "0"


# --- the backend's bookkeeping ------------------------------------------------------------


async def test_health_names_the_isolation(local: LocalBackend) -> None:
    health = await local.health()
    assert health.ok
    assert health.isolation.startswith("bwrap")
    if local.isolation.as_root and local.isolation.cgroup_version:
        assert f"cgroup-v{local.isolation.cgroup_version}" in health.isolation


async def test_without_bwrap_the_backend_is_unavailable_and_says_how_to_fix_it(settings) -> None:
    settings.SANDBOX_BWRAP = "no-such-bwrap-binary"
    backend = LocalBackend()
    health = await backend.health()
    assert not health.ok
    assert "bubblewrap" in health.detail and "apt-get install" in health.detail
    assert health.isolation == "none"
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        await backend.create(owner_id=7, session_id=str(uuid.uuid4()))


async def test_the_warm_pool_hands_out_a_running_kernel(local: LocalBackend, settings) -> None:
    settings.SANDBOX_POOL_SIZE = 1
    local.fill_pool()
    for _ in range(300):
        if local.warm_count:
            break
        await asyncio.sleep(0.05)
    assert local.warm_count == 1
    started = time.monotonic()
    sandbox = await local.create(owner_id=4, session_id=str(uuid.uuid4()))
    try:
        outcome, events = await run(sandbox, "print('warm')")
        first_output_s = time.monotonic() - started
    finally:
        await sandbox.close()
    assert (outcome.status, events.stdout) == ("ok", "warm\n")
    assert first_output_s < 0.5


async def test_stop_while_the_kernel_is_still_starting_interrupts_the_run(local: LocalBackend, settings) -> None:
    settings.SANDBOX_POOL_SIZE = 0
    for _ in range(5):  # skip past warm sandboxes: this needs a kernel that is still starting
        sandbox = await local.create(owner_id=6, session_id=str(uuid.uuid4()))
        if "python" not in sandbox.kernels:  # type: ignore[attr-defined]
            break
        await sandbox.close()
    try:
        running = asyncio.create_task(run(sandbox, "import time\ntime.sleep(60)", language="python"))
        await asyncio.sleep(0)  # the run is waiting for its kernel
        await sandbox.interrupt()
        outcome, _ = await asyncio.wait_for(running, 30)
    finally:
        await sandbox.close()
    assert outcome.status == "interrupted"


async def test_a_stop_at_any_moment_of_a_runs_start_interrupts_it_and_keeps_variables(fresh: Sandbox) -> None:
    await python_says(fresh, "kept = 'yes'\nprint('ok')")
    statuses = []
    for delay_s in (0, 0, 0.001, 0.002, 0.003, 0.005, 0.008, 0.013, 0.021, 0.034):
        running = asyncio.create_task(run(fresh, "import time\nfor _ in range(600):\n    time.sleep(0.1)", timeout_s=120))
        await asyncio.sleep(delay_s)
        await fresh.interrupt()
        outcome, _ = await asyncio.wait_for(running, 30)
        statuses.append(outcome.status)
    assert statuses == ["interrupted"] * 10
    assert await python_says(fresh, "print(kept)") == "yes"


async def test_closing_a_sandbox_mid_run_ends_the_run_as_gone(local: LocalBackend) -> None:
    sandbox = await local.create(owner_id=8, session_id=str(uuid.uuid4()))
    running = asyncio.create_task(run(sandbox, "import time\nprint('going', flush=True)\ntime.sleep(60)", timeout_s=120))
    await asyncio.sleep(1.0)
    await sandbox.close()
    outcome, events = await asyncio.wait_for(running, 10)
    assert outcome.status == "gone"
    assert "closed" in events.text


async def test_too_many_live_sandboxes_is_busy(local: LocalBackend, shared: Sandbox, settings) -> None:
    settings.SANDBOX_MAX_LIVE = local.live_count
    with pytest.raises(SandboxUnavailable, match="^busy: "):
        await local.create(owner_id=5, session_id=str(uuid.uuid4()))


async def test_idle_sandboxes_are_reaped(local: LocalBackend, fresh: Sandbox) -> None:
    await python_says(fresh, "print(1)")
    fresh.last_used -= settings.SANDBOX_IDLE_TIMEOUT_S + REAPER_GRACE_S + 1  # type: ignore[attr-defined]
    assert await local.reap_idle() == [fresh.id]
    with pytest.raises(SandboxGone):
        await local.connect(fresh.id)
    assert not Path(fresh.root).exists()  # type: ignore[attr-defined]


async def test_the_start_up_sweep_removes_only_what_dead_servers_left(local: LocalBackend) -> None:
    state = Path(settings.SANDBOX_STATE_DIR)
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        dead_owner = f"{dead.pid}.12345"
        alive_owner = f"{alive.pid}.{processes.process_start_time(alive.pid)}"
        for owner in (dead_owner, alive_owner):
            control = state / "sbx" / owner / "abc123" / "py"
            control.mkdir(parents=True)
            (control / "kernel.json").write_text('{"key": "secret"}')
            (state / "sbx" / owner / "boot_id").write_text(processes.boot_id())
        pidns = processes.pid_namespace()
        cgroups = [parent / f"{pidns}.{owner}.abc123" for parent in local.isolation.cgroup_parents.values()
                   for owner in (dead_owner, alive_owner)]
        other_namespace = [parent / f"1.{dead_owner}.abc123" for parent in local.isolation.cgroup_parents.values()]
        for path in other_namespace:  # a "dead" owner in another pid namespace: not ours to judge
            path.mkdir()
        for path in cgroups:
            path.mkdir()
        sweep(state, local.isolation)
        assert not (state / "sbx" / dead_owner).exists()
        assert (state / "sbx" / alive_owner / "abc123" / "py" / "kernel.json").exists()
        assert [p.exists() for p in cgroups] == [owner == alive_owner for p in local.isolation.cgroup_parents.values()
                                                 for owner in (dead_owner, alive_owner)]
        assert (state / "sbx" / local.owner_dir.name).exists()  # this process's own state survives
        assert all(p.exists() for p in other_namespace)
    finally:
        alive.kill()
        alive.wait()
        sweep(state, local.isolation)
        for path in other_namespace:
            path.rmdir()
    assert not (state / "sbx" / alive_owner).exists()


async def test_the_sweep_unmounts_what_a_dead_server_left_and_keeps_the_workspace(local: LocalBackend) -> None:
    if not local.isolation.as_root:
        pytest.skip("as non-root nothing is mounted")
    state = Path(settings.SANDBOX_STATE_DIR)
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"{dead.pid}.12345"
    owner_dir = state / "sbx" / owner
    workspaces = Path(settings.SANDBOX_WORKSPACES_DIR)
    workspaces.mkdir(parents=True, exist_ok=True)
    home = workspaces / str(uuid.uuid4())
    home.mkdir()
    (home / "keep.txt").write_text("mine")
    scratch = workspaces / f".ovl-{owner}.abc123"
    scratch.mkdir()
    (owner_dir / "abc123" / "ws").mkdir(parents=True)
    (owner_dir / "empty").mkdir()
    (owner_dir / "boot_id").write_text(processes.boot_id())
    control = owner_dir / "abc123" / "py-1"
    control.mkdir()
    try:
        # What a server killed mid-run leaves: its sandbox's workspace overlay and a kernel's tmpfs.
        mounts.mount_workspace(owner_dir / "abc123" / "ws", home, scratch, owner_dir / "empty")
        mounts.mount_tmpfs(control, size_bytes=65536)
        (control / "kernel.json").write_text("{}")
        assert (owner_dir / "abc123" / "ws" / "keep.txt").exists()
        sweep(state, local.isolation)
        assert mounts.mount_points_under(owner_dir) == []
        assert not owner_dir.exists() and not scratch.exists()
        assert (home / "keep.txt").read_text() == "mine"  # not removed through the overlay
    finally:
        mounts.remove_tree(owner_dir)
        mounts.remove_tree(scratch)
        mounts.remove_tree(home)
