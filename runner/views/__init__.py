"""Thin HTTP layer: each view calls a selector or a service, then renders.

One module per area; every view is re-exported here for runner/urls.py.
"""

from runner.views.assignments import (
    assignment_check,
    assignment_detail,
    assignment_edit,
    assignment_grades_csv,
    assignment_hand_in,
    assignment_new,
    assignment_start,
    assignment_status,
    assignments,
    classroom_export,
    submission_detail,
    submission_grade,
    teach_assignment,
)
from runner.views.classrooms import (
    classroom_code_regenerate,
    classroom_detail,
    classroom_leave,
    classroom_live,
    classroom_new,
    classroom_student_remove,
    join,
    join_code,
    teach,
)
from runner.views.comments import comment_delete, comment_edit, comment_new
from runner.views.keys import api_key_revoke, api_keys
from runner.views.search import search
from runner.views.sessions import (
    account_usage,
    chat_home,
    execution_output,
    healthz,
    session_detail,
    session_export_ipynb,
    session_export_markdown,
    session_classroom,
    session_new,
    session_rename,
    session_restart,
    sessions_activity,
)

from runner.views.workspace import files, files_delete, files_download, files_preview, files_rename, packages

__all__ = [
    "assignment_check",
    "assignment_detail",
    "assignment_edit",
    "assignment_grades_csv",
    "assignment_hand_in",
    "assignment_new",
    "assignment_start",
    "assignment_status",
    "assignments",
    "classroom_export",
    "submission_detail",
    "submission_grade",
    "teach_assignment",
    "api_key_revoke",
    "api_keys",
    "files",
    "files_delete",
    "files_download",
    "files_preview",
    "files_rename",
    "packages",
    "search",
    "account_usage",
    "chat_home",
    "classroom_code_regenerate",
    "classroom_detail",
    "classroom_leave",
    "classroom_live",
    "classroom_new",
    "classroom_student_remove",
    "comment_delete",
    "comment_edit",
    "comment_new",
    "execution_output",
    "healthz",
    "join",
    "join_code",
    "session_detail",
    "session_export_ipynb",
    "session_export_markdown",
    "session_classroom",
    "session_new",
    "session_rename",
    "session_restart",
    "sessions_activity",
    "teach",
]
