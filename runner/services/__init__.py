"""Writes and workflows. Keyword-only, typed, named <entity>_<action>.

One module per area; everything is re-exported here so callers write `services.<name>`.
The modules form layers (pyproject.toml's import-linter contracts hold them), top to bottom:
housekeeping; admission, sessions; lifecycle; cancel; sandboxes, sweep; output, runs; runtime.
"""

from runner.services.admission import execution_quota_check, execution_start
from runner.services.cancel import execution_cancel, execution_cancel_local, execution_input_reply
from runner.services.housekeeping import runtime_ensure_started, runtime_stop
from runner.services.runs import RunRejected, execution_inputs_pending
from runner.services.runtime import BOOT_ID
from runner.services.sandboxes import (
    AcquiredSandbox,
    backend_name,
    lease_sweep,
    sandbox_acquire,
    sandbox_reap_idle,
    sandbox_release,
    sandbox_restart,
    sandboxes_close_all,
)
from runner.services.sessions import SessionBusy, session_create, session_rename, session_sandbox_restart
from runner.services.sweep import execution_sweep

__all__: list[str] = [
    # executions (runs)
    "RunRejected",
    "execution_cancel",
    "execution_cancel_local",
    "execution_input_reply",
    "execution_inputs_pending",
    "execution_quota_check",
    "execution_start",
    "execution_sweep",
    # this server process
    "BOOT_ID",
    "runtime_ensure_started",
    "runtime_stop",
    # sandboxes and leases
    "AcquiredSandbox",
    "backend_name",
    "lease_sweep",
    "sandbox_acquire",
    "sandbox_reap_idle",
    "sandbox_release",
    "sandbox_restart",
    "sandboxes_close_all",
    # sessions
    "SessionBusy",
    "session_create",
    "session_rename",
    "session_sandbox_restart",
]
