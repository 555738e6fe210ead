"""Starts a Sandpit kernel: `launcher.py python|bash -f CONNECTION_FILE [ipykernel options]`.

- debugpy is not imported: the server never uses Jupyter's debugger, and importing it costs
  ~80 ms of every kernel start (plus warnings on stderr);
- bash_kernel runs without pexpect's 50 ms pause before every line it sends to bash, which made
  the kernel take 2.5 s to start (~40 set-up lines) and every cell 50 ms per line. bash runs with
  echo off, which that pause exists to wait for;
- it runs under `python -I`, so nothing of the user's runs before the server has locked the
  kernel's socket dir (/run/k/s): not PYTHONPATH (~/.local/packages, where a sitecustomize.py
  may be), not ~/.jupyter's config (read as Python). Once the dir is locked (no longer writable
  here), PYTHONPATH goes on sys.path and a sitecustomize.py there runs, as it would have at start.
"""

import os
import sys

sys.modules["debugpy"] = None  # type: ignore[assignment]  # ipykernel then runs without a debugger
sys.dont_write_bytecode = True  # -I ignores PYTHONDONTWRITEBYTECODE
SOCKETS = "/run/k/s"
LOCK_WAIT_S = 30.0
# The pipe the server reads (ipykernel points fd 2 at its own capture later); not inherited.
_SERVER_STDERR = os.dup(2)
# Jupyter reads config (Python files) from ~/.jupyter, i.e. the workspace: not here.
os.environ["JUPYTER_CONFIG_DIR"] = "/opt/sandpit/no-jupyter-config"


def _after_the_lock() -> None:
    """Wait until the server has locked SOCKETS (it does once every socket exists), then let the
    user's things in: PYTHONPATH on sys.path, its sitecustomize.py, the environment as it was."""
    import time

    deadline = time.monotonic() + LOCK_WAIT_S
    while os.access(SOCKETS, os.W_OK) and time.monotonic() < deadline:
        time.sleep(0.005)
    del os.environ["JUPYTER_CONFIG_DIR"]
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    sys.path[:0] = entries
    for entry in entries:
        path = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(path):
            import importlib.util

            spec = importlib.util.spec_from_file_location("sitecustomize", path)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                sys.modules["sitecustomize"] = module
                try:
                    spec.loader.exec_module(module)
                except Exception:  # as Python's own start-up does: report it and go on
                    import traceback

                    os.write(_SERVER_STDERR, traceback.format_exc().encode(errors="replace"))
            break


def _init_kernel_after_the_lock(app_class: type) -> None:
    """Run _after_the_lock just before the app makes its kernel (its sockets are bound by then;
    user code, bash's ~/.bashrc included, can only start from the kernel on)."""
    init_kernel = app_class.init_kernel

    def init(self):
        _after_the_lock()
        return init_kernel(self)

    app_class.init_kernel = init


def _without_send_delay() -> None:
    import pexpect.spawnbase

    spawn_init = pexpect.spawnbase.SpawnBase.__init__

    def init(self, *args, **kwargs):
        spawn_init(self, *args, **kwargs)
        self.delaybeforesend = None

    pexpect.spawnbase.SpawnBase.__init__ = init


if __name__ == "__main__":
    kind = sys.argv.pop(1)
    from ipykernel.kernelapp import IPKernelApp

    _init_kernel_after_the_lock(IPKernelApp)

    if kind == "bash":
        _without_send_delay()
        from bash_kernel.kernel import BashKernel

        IPKernelApp.launch_instance(kernel_class=BashKernel)
    else:
        IPKernelApp.launch_instance()
