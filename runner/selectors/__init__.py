"""Reads that span models or backends. Keyword-only, typed, named <entity>_<action>.

One module per area; everything is re-exported here so callers write `selectors.<name>`.
"""

from runner.selectors.access import (
    SessionAccess,
    comment_visible,
    execution_of_session,
    session_access,
    session_access_now,
    user_credentials_current,
    session_visible,
    session_with_access,
    sessions_visible_to,
    user_is_admin,
)
from runner.selectors.assignments import (
    CheckRow,
    GridRow,
    StudentAssignmentRow,
    StudentState,
    SubmittedFile,
    assignment_for_student,
    assignment_for_teacher,
    assignment_grades_lines,
    assignment_grid,
    assignment_instructions_html,
    assignment_student_state,
    assignments_for_classroom,
    assignments_for_student,
    check_rows,
    classroom_export_chunks,
    due_text,
    student_has_assignments,
    submission_files,
    submission_for_teacher,
)
from runner.selectors.grid import GridTile, classroom_grid
from runner.selectors.classrooms import (
    ClassroomSummary,
    RunFilters,
    RunRow,
    classroom_sessions_for_sidebar,
    ClassroomOverview,
    ROSTER_SORTS,
    RUN_SORTS,
    RUNS_LIST_MAX,
    classroom_runs_count,
    classrooms_overview,
    StudentRow,
    classroom_for_member,
    classroom_for_teacher,
    classroom_live_students,
    classroom_runs,
    classroom_student_sessions,
    classroom_summary,
    classrooms_for_teacher,
    classroom_default_for_new_session,
    classrooms_for_sessions,
    classrooms_joined,
    user_teaches,
)
from runner.selectors.comments import CommentView, author_name, comment_frame, comment_replay, comment_snippets
from runner.selectors.api import (
    api_keys_for_owner,
    api_sandbox_get_sync,
    api_sandbox_id,
    api_sandbox_route_sync,
    api_sandboxes_for_owner_sync,
)
from runner.selectors.executions import execution_last_pointer, execution_replay
from runner.selectors.exports import session_export_markdown, session_export_notebook
from runner.selectors.health import SandboxStatus, sandbox_status
from runner.selectors.usage import usage_quota_status
from runner.selectors.sessions import (
    SessionListItem,
    Turn,
    execution_for_session,
    output_blocks,
    session_history,
    session_latest_for_user,
    session_resume_point,
    session_sandbox_stop_reason,
    sessions_for_sidebar,
)
from runner.selectors.rendering import ansi_to_html
from runner.selectors.search import SearchHit, runs_search
from runner.selectors.workspace import packages_installed, workspace_file, workspace_listing, workspace_preview

__all__ = [
    # the E2B-compatible API
    "api_keys_for_owner",
    "api_sandbox_get_sync",
    "api_sandbox_route_sync",
    "api_sandbox_id",
    "api_sandboxes_for_owner_sync",
    # assignments
    "CheckRow",
    "GridRow",
    "StudentAssignmentRow",
    "StudentState",
    "SubmittedFile",
    "assignment_for_student",
    "assignment_for_teacher",
    "assignment_grades_lines",
    "assignment_grid",
    "assignment_instructions_html",
    "assignment_student_state",
    "assignments_for_classroom",
    "assignments_for_student",
    "check_rows",
    "classroom_export_chunks",
    "due_text",
    "student_has_assignments",
    "submission_files",
    "submission_for_teacher",
    # access
    "SessionAccess",
    "comment_visible",
    "execution_of_session",
    "session_access",
    "session_access_now",
    "user_credentials_current",
    "session_visible",
    "session_with_access",
    "sessions_visible_to",
    "user_is_admin",
    # classrooms (/teach/)
    "ClassroomSummary",
    "RunFilters",
    "RunRow",
    "StudentRow",
    "classroom_for_member",
    "classroom_for_teacher",
    "classroom_live_students",
    "GridTile",
    "classroom_grid",
    "classroom_runs",
    "classroom_student_sessions",
    "classroom_summary",
    "classrooms_for_teacher",
    "classroom_default_for_new_session",
    "classrooms_for_sessions",
    "classrooms_joined",
    "user_teaches",
    # comments
    "CommentView",
    "author_name",
    "comment_frame",
    "comment_replay",
    "comment_snippets",
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
    "session_history",
    "session_latest_for_user",
    "session_resume_point",
    "session_sandbox_stop_reason",
    "output_blocks",
    "ansi_to_html",
    "sessions_for_sidebar",
    "classroom_sessions_for_sidebar",
    "ClassroomOverview",
    "ROSTER_SORTS",
    "RUN_SORTS",
    "RUNS_LIST_MAX",
    "classroom_runs_count",
    "classrooms_overview",
    # usage (the page's meter; the admin's reports live in runner.selectors.usage)
    "usage_quota_status",
    # search
    "SearchHit",
    "runs_search",
    # a session's files and packages
    "packages_installed",
    "workspace_file",
    "workspace_listing",
    "workspace_preview",
]
