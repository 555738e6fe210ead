from django.urls import path

from runner import views

urlpatterns = [
    path("account/keys/", views.api_keys, name="api_keys"),
    path("account/keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("healthz", views.healthz, name="healthz"),
    path("", views.chat_home, name="chat_home"),
    path("account/usage.json", views.account_usage, name="account_usage"),
    path("sessions/new/", views.session_new, name="session_new"),
    path("search/", views.search, name="search"),
    path("sessions/activity.json", views.sessions_activity, name="sessions_activity"),
    path("sessions/<uuid:session_id>/", views.session_detail, name="session_detail"),
    path("sessions/<uuid:session_id>/rename/", views.session_rename, name="session_rename"),
    path("sessions/<uuid:session_id>/classroom/", views.session_classroom, name="session_classroom"),
    path("sessions/<uuid:session_id>/restart/", views.session_restart, name="session_restart"),
    path("sessions/<uuid:session_id>/export.ipynb", views.session_export_ipynb, name="session_export_ipynb"),
    path("sessions/<uuid:session_id>/export.md", views.session_export_markdown, name="session_export_markdown"),
    path("sessions/<uuid:session_id>/files/", views.files, name="files"),
    path("sessions/<uuid:session_id>/files/download", views.files_download, name="files_download"),
    path("sessions/<uuid:session_id>/files/preview", views.files_preview, name="files_preview"),
    path("sessions/<uuid:session_id>/files/delete", views.files_delete, name="files_delete"),
    path("sessions/<uuid:session_id>/files/rename", views.files_rename, name="files_rename"),
    path("sessions/<uuid:session_id>/packages/", views.packages, name="packages"),
    path(
        "sessions/<uuid:session_id>/executions/<int:execution_id>/output/",
        views.execution_output,
        name="execution_output",
    ),
    # classrooms and comments (issue 7)
    path("sessions/<uuid:session_id>/comments/", views.comment_new, name="comment_new"),
    path("comments/<int:comment_id>/edit/", views.comment_edit, name="comment_edit"),
    path("comments/<int:comment_id>/delete/", views.comment_delete, name="comment_delete"),
    path("teach/", views.teach, name="teach"),
    path("teach/classrooms/new/", views.classroom_new, name="classroom_new"),
    path("teach/classrooms/<int:classroom_id>/", views.classroom_detail, name="classroom_detail"),
    path("teach/classrooms/<int:classroom_id>/live.json", views.classroom_live, name="classroom_live"),
    path("teach/classrooms/<int:classroom_id>/code/", views.classroom_code_regenerate, name="classroom_code_regenerate"),
    path(
        "teach/classrooms/<int:classroom_id>/students/<int:student_id>/remove/",
        views.classroom_student_remove,
        name="classroom_student_remove",
    ),
    path("classrooms/<int:classroom_id>/leave/", views.classroom_leave, name="classroom_leave"),
    path("join/", views.join, name="join"),
    path("join/<str:code>/", views.join_code, name="join_code"),
]
