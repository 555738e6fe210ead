"""Writes and workflows. Keyword-only, typed, named <entity>_<action>.

One module per area; everything is re-exported here so callers write `services.<name>`.
The modules form layers (pyproject.toml's import-linter contracts hold them), top to bottom:
housekeeping, apisandboxes; assignments, checks; admission, sessions, classrooms, comments, admin_actions, budgets,
workspace, accounts, live; lifecycle; cancel, coderun, waiting; sandboxes, sweep; output, runs, quotas, ratelimit, packages;
apikeys; runtime. Services may use selectors (reads), never the reverse.
"""

from runner.services.accounts import user_credentials_changed
from runner.services.admission import execution_quota_check, execution_start
from runner.services.apikeys import (
    api_key_authenticate_sync,
    api_key_create,
    api_key_expiry,
    api_key_expiry_changed,
    api_key_revoke,
    api_sandbox_access_token,
    api_sandbox_refusal,
    api_sandbox_token_ok,
    api_sandboxes_end_now,
)
from runner.services.apisandboxes import (
    api_context_create_sync,
    api_context_remove_sync,
    api_context_restart,
    api_context_stop,
    context_kernel,
    api_language,
    api_sandbox_handle,
    api_sandbox_create,
    api_sandbox_extend_sync,
    api_sandbox_kill,
    api_sandbox_killed_or_killing,
    api_sandbox_killing,
    api_sandboxes_expire,
)
from runner.services.assignments import (
    AssignmentFields,
    HandInRefused,
    assignment_hand_in,
    assignment_save,
    assignment_start,
    submission_grade,
)
from runner.services.budgets import BudgetPass, budget_enforce
from runner.services.cancel import execution_cancel, execution_cancel_local, execution_input_reply
from runner.services.checks import checks_count, checks_plan, submission_checks_run, submission_checks_work
from runner.services.classrooms import (
    JoinRefused,
    access_recheck_for_students,
    classroom_code_regenerate,
    classroom_create,
    classroom_join,
    classroom_leave,
    classroom_student_remove,
)
from runner.services.comments import CommentRateLimited, comment_create, comment_delete, comment_edit, comments_mark_seen
from runner.services.housekeeping import runtime_stop
from runner.services.ratelimit import RateVerdict, ratelimit_hit, ratelimit_hit_sync
from runner.services.runs import Command, RunRejected, execution_inputs_pending, execution_starting_pending
from runner.services.runtime import BOOT_ID, runtime_ensure_started
from runner.services.sandboxes import (
    AcquiredSandbox,
    LiveSandboxLimit,
    backend_name,
    lease_sweep,
    sandbox_acquire,
    sandbox_reap_idle,
    sandbox_release,
    sandbox_restart,
    STOPPED_CHIP_TEXT,
    sandboxes_close_all,
)
from runner.services.sessions import (
    SessionBusy,
    session_classroom_set,
    session_create,
    session_rename,
    session_sandbox_restart,
)
from runner.services.sweep import execution_sweep
from runner.services.workspace import NoWorkspace, Upload, workspace_delete, workspace_open, workspace_rename, workspace_upload

__all__: list[str] = [
    "user_credentials_changed",
    # assignments and their checks
    "AssignmentFields",
    "HandInRefused",
    "assignment_hand_in",
    "assignment_save",
    "assignment_start",
    "checks_count",
    "checks_plan",
    "submission_checks_run",
    "submission_checks_work",
    "submission_grade",
    # classrooms
    "JoinRefused",
    "access_recheck_for_students",
    "classroom_code_regenerate",
    "classroom_create",
    "classroom_join",
    "classroom_leave",
    "classroom_student_remove",
    # comments
    "CommentRateLimited",
    "comment_create",
    "comment_delete",
    "comment_edit",
    "comments_mark_seen",
    # the E2B-compatible API: keys, sandboxes, contexts
    "api_context_create_sync",
    "api_context_remove_sync",
    "api_context_restart",
    "api_context_stop",
    "context_kernel",
    "api_key_authenticate_sync",
    "api_key_create",
    "api_key_expiry",
    "api_key_expiry_changed",
    "api_key_revoke",
    "api_language",
    "api_sandbox_access_token",
    "api_sandbox_create",
    "api_sandbox_extend_sync",
    "api_sandbox_handle",
    "api_sandbox_kill",
    "api_sandbox_killed_or_killing",
    "api_sandbox_killing",
    "api_sandbox_refusal",
    "api_sandbox_token_ok",
    "api_sandboxes_end_now",
    "api_sandboxes_expire",
    # executions (runs)
    "Command",
    "LiveSandboxLimit",
    "RunRejected",
    "execution_cancel",
    "execution_cancel_local",
    "execution_input_reply",
    "execution_inputs_pending",
    "execution_starting_pending",
    "execution_quota_check",
    "execution_start",
    "execution_sweep",
    # rate limits (per user, over all sockets and processes)
    "RateVerdict",
    "ratelimit_hit",
    "ratelimit_hit_sync",
    # budgets
    "BudgetPass",
    "budget_enforce",
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
    "STOPPED_CHIP_TEXT",
    "sandboxes_close_all",
    # sessions
    "SessionBusy",
    "session_classroom_set",
    "session_create",
    "session_rename",
    "session_sandbox_restart",
    # a session's files
    "NoWorkspace",
    "Upload",
    "workspace_delete",
    "workspace_open",
    "workspace_rename",
    "workspace_upload",
]
