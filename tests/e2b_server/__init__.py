"""A local server that speaks E2B's wire protocol, backed by real Jupyter kernels.

Run it on its own with `python -m tests.e2b_server --api-key e2b_test --port 0`; it prints
`READY <url>` once it listens. Tests start it through `tests/fixtures_e2b.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningServer:
    url: str
    api_key: str
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(*, api_key: str, kernel_env: Path, python: str = sys.executable, timeout_s: float = 30) -> RunningServer:
    """Start the server in a subprocess on a random port and wait until it listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    process = subprocess.Popen(
        [python, "-m", "tests.e2b_server", "--api-key", api_key, "--kernel-env", str(kernel_env), "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(f"the E2B test server did not start: {line!r}")
    return RunningServer(url=line.split()[1], api_key=api_key, process=process)
