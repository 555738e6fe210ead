from django.urls import path

from runner import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("", views.chat_home, name="chat_home"),
    path("sessions/new/", views.session_new, name="session_new"),
    path("sessions/activity.json", views.sessions_activity, name="sessions_activity"),
    path("sessions/<uuid:session_id>/", views.session_detail, name="session_detail"),
    path("sessions/<uuid:session_id>/rename/", views.session_rename, name="session_rename"),
    path("sessions/<uuid:session_id>/restart/", views.session_restart, name="session_restart"),
    path("sessions/<uuid:session_id>/export.ipynb", views.session_export_ipynb, name="session_export_ipynb"),
    path("sessions/<uuid:session_id>/export.md", views.session_export_markdown, name="session_export_markdown"),
    path(
        "sessions/<uuid:session_id>/executions/<int:execution_id>/output/",
        views.execution_output,
        name="execution_output",
    ),
]
