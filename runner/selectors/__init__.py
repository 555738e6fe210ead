"""Reads that span models or backends. Keyword-only, typed, named <entity>_<action>.

One module per area; everything is re-exported here so callers write `selectors.<name>`.
"""

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
from runner.selectors.search import SearchHit, runs_search
from runner.selectors.workspace import packages_installed, workspace_file, workspace_listing, workspace_preview

__all__ = [
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
    # search
    "SearchHit",
    "runs_search",
    # a session's files and packages
    "packages_installed",
    "workspace_file",
    "workspace_listing",
    "workspace_preview",
]
