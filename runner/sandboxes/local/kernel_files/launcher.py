"""Starts a Sandpit kernel: `launcher.py python|bash -f CONNECTION_FILE [ipykernel options]`.

- debugpy is not imported: the server never uses Jupyter's debugger, and importing it costs
  ~80 ms of every kernel start (plus warnings on stderr);
- bash_kernel runs without pexpect's 50 ms pause before every line it sends to bash, which made
  the kernel take 2.5 s to start (~40 set-up lines) and every cell 50 ms per line. bash runs with
  echo off, which that pause exists to wait for.
"""

import sys

sys.modules["debugpy"] = None  # type: ignore[assignment]  # ipykernel then runs without a debugger


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

    if kind == "bash":
        _without_send_delay()
        from bash_kernel.kernel import BashKernel

        IPKernelApp.launch_instance(kernel_class=BashKernel)
    else:
        IPKernelApp.launch_instance()
