"""Reads that span models or backends. Keyword-only, typed, named <entity>_<action>.

One module per area; everything is re-exported here so callers write `selectors.<name>`.
"""

from runner.selectors.api import api_keys_for_owner, api_sandbox_get_sync, api_sandbox_id, api_sandboxes_for_owner_sync
from runner.selectors.access import SessionAccess, session_access, session_with_access
from runner.selectors.executions import execution_last_pointer, execution_replay
from runner.selectors.health import SandboxStatus, sandbox_status
from runner.selectors.sessions import (
    SessionListItem,
    Turn,
    execution_for_session,
    session_export_markdown,
    session_export_notebook,
    session_for_user,
    session_history,
    session_latest_for_user,
    session_resume_point,
    sessions_for_sidebar,
)

__all__ = [
    # the E2B-compatible API
    "api_keys_for_owner",
    "api_sandbox_get_sync",
    "api_sandbox_id",
    "api_sandboxes_for_owner_sync",
    # access
    "SessionAccess",
    "session_access",
    "session_with_access",
    # executions (the live stream)
    "execution_last_pointer",
    "execution_replay",
    "SandboxStatus",
    "sandbox_status",
    # sessions (the chat page)
    "SessionListItem",
    "Turn",
    "execution_for_session",
    "session_export_markdown",
    "session_export_notebook",
    "session_for_user",
    "session_history",
    "session_latest_for_user",
    "session_resume_point",
    "sessions_for_sidebar",
]
