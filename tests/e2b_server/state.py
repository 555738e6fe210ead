"""What the test E2B server knows: its API key, its sandboxes (each with kernel contexts and a
workspace directory standing in for /home/user), and the faults armed for the next requests."""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from tests.e2b_server.kernels import KernelContext, write_kernel_specs

log = logging.getLogger(__name__)

ENVD_VERSION = "0.5.7"
HOME = "/home/user"


@dataclass
class Fault:
    """One injected fault.

    where: "api" (control plane), "execute", "envd" or "any".
    action: "status" (answer `status` with an E2B-shaped error body), "drop" (for execute: close
    the stream abruptly after `after_lines` output objects), or "delay" (sleep `delay_s` first).
    times: how many requests it hits; None means until cleared.
    """

    where: str
    action: str
    status: int = 500
    after_lines: int = 0
    delay_s: float = 0.0
    times: int | None = 1
    path_contains: str = ""
    hits: int = 0


@dataclass
class SandboxState:
    id: str
    template: str
    metadata: dict[str, str]
    access_token: str
    root: Path
    started_at: datetime
    end_at: datetime
    contexts: dict[str, KernelContext] = field(default_factory=dict)
    default_contexts: dict[str, str] = field(default_factory=dict)  # language -> context id
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def home(self) -> Path:
        return self.root / "home"

    def as_api(self) -> dict[str, Any]:
        return {
            "templateID": self.template,
            "sandboxID": self.id,
            "clientID": "local",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": self.access_token,
            "domain": None,
        }

    def as_listed(self) -> dict[str, Any]:
        return {
            **self.as_api(),
            "startedAt": self.started_at.isoformat(),
            "endAt": self.end_at.isoformat(),
            "cpuCount": 2,
            "memoryMB": 512,
            "diskSizeMB": 1024,
            "state": "running",
            "metadata": self.metadata,
        }


class E2BState:
    """Everything the server knows: the API key, sandboxes, and pending faults."""

    def __init__(self, *, api_key: str, kernel_env: Path, root: Path) -> None:
        self.api_key = api_key
        self.kernel_env = kernel_env
        self.root = root
        self.specs: KernelSpecManager = write_kernel_specs(root / "specs", kernel_env)
        self.sandboxes: dict[str, SandboxState] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.lock = threading.Lock()

    # --- faults ---------------------------------------------------------------------------------

    def take_fault(self, where: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.where not in (where, "any") or fault.path_contains not in path:
                    continue
                fault.hits += 1
                if fault.times is not None and fault.hits >= fault.times:
                    self.faults.remove(fault)
                return fault
        return None

    # --- sandboxes ------------------------------------------------------------------------------

    def kernel_env_vars(self, sandbox: SandboxState) -> dict[str, str]:
        site = sandbox.root / "site"
        return {
            "PATH": f"{self.kernel_env / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(sandbox.home),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(site),
            "DENO_DIR": str(sandbox.root / "deno"),
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "NO_COLOR": "1",
            # Kernel and library state lives beside the workspace, not in it.
            "IPYTHONDIR": str(sandbox.root / "dot" / "ipython"),
            "MPLCONFIGDIR": str(sandbox.root / "dot" / "matplotlib"),
            "XDG_CACHE_HOME": str(sandbox.root / "dot" / "cache"),
            "XDG_CONFIG_HOME": str(sandbox.root / "dot" / "config"),
            "E2B_SANDBOX": "true",
            "E2B_SANDBOX_ID": sandbox.id,
        }

    def create_sandbox(self, *, template: str, timeout_s: int, metadata: dict[str, str]) -> SandboxState:
        sandbox_id = "i" + secrets.token_hex(10)
        now = datetime.now(timezone.utc)
        sandbox = SandboxState(
            id=sandbox_id,
            template=template,
            metadata=metadata,
            access_token=secrets.token_urlsafe(24),
            root=self.root / sandbox_id,
            started_at=now,
            end_at=now + timedelta(seconds=timeout_s),
        )
        for sub in ("home", "site", "deno", "dot"):
            (sandbox.root / sub).mkdir(parents=True)
        # Like the template, the python context is up before the sandbox is handed out.
        self.context_for(sandbox, "python")
        with self.lock:
            self.sandboxes[sandbox_id] = sandbox
        return sandbox

    def context_for(self, sandbox: SandboxState, language: str) -> KernelContext:
        with sandbox.lock:
            context_id = sandbox.default_contexts.get(language)
            if context_id is None:
                context = KernelContext(
                    language=language, cwd=sandbox.home, env=self.kernel_env_vars(sandbox), specs=self.specs
                )
                sandbox.contexts[context.id] = context
                sandbox.default_contexts[language] = context.id
                context_id = context.id
            return sandbox.contexts[context_id]

    def get(self, sandbox_id: str) -> SandboxState | None:
        with self.lock:
            sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is not None and sandbox.end_at <= datetime.now(timezone.utc):
            self.kill(sandbox_id)  # its timeout passed: E2B has killed it
            return None
        return sandbox

    def kill(self, sandbox_id: str) -> bool:
        with self.lock:
            sandbox = self.sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            return False
        for context in list(sandbox.contexts.values()):
            context.shutdown()
        shutil.rmtree(sandbox.root, ignore_errors=True)
        return True

    def reap(self) -> None:
        for sandbox_id in list(self.sandboxes):
            self.get(sandbox_id)

    def shutdown(self) -> None:
        for sandbox_id in list(self.sandboxes):
            self.kill(sandbox_id)
