"""Every URL and websocket route, tried as every role: the owner student, a classmate, a student of
another class, the class's teacher, a teacher of another class, an admin, anonymous, and a request
with a foreign Origin. The cast is in tests/fixtures_classrooms.py.

The test walks the URL resolver itself: a URL name without a row in ROWS fails
`test_every_url_has_a_row`, so a new URL can't ship without its access decided here. To add a
row, map the URL name to `Row(method, path, expected)`, building `expected` with one of the
helpers below (or a dict role -> status). Admin URLs (namespace "admin") are checked by prefix:
every registered model's changelist and a change page per model row that exists, as staff (200)
and as each non-staff role (redirect to the admin login).

A 404 is also compared with the answer for an unknown id (`unknown`): same status, same body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from runner.routing import websocket_urlpatterns
from runner.selectors import sessions_visible_to
from tests.fixtures_classrooms import ROLES, Cast

pytestmark = pytest.mark.django_db

LOGIN = "login"  # expected: a redirect to the login page
HEALTH = "health"  # expected: 200 or 503, whatever the sandbox's health
EVIL_ORIGIN = "http://evil.example"
ELEVATED = ("owner", "teacher", "admin")
STRANGERS = ("classmate", "other_student", "other_teacher")

Expected = dict[str, int | str]
PathFn = Callable[[Cast], str]


def public(ok: int | str = 200) -> Expected:
    return {role: ok for role in ROLES}


def any_user(ok: int) -> Expected:
    return {**{role: ok for role in ROLES}, "anonymous": LOGIN}


def visible(ok: int = 200) -> Expected:
    """Those who may see olive's session (she, her teacher, the admin); 404 for everyone else."""
    return {**{r: ok for r in ELEVATED}, **{r: 404 for r in STRANGERS}, "anonymous": LOGIN}


def owner_only(ok: int) -> Expected:
    """Changes to olive's session: hers; 403 for those who only watch it; 404 for the rest."""
    return {**visible(403), "owner": ok}


def teacher_only(ok: int) -> Expected:
    """Comments: her teacher writes them; 403 for the others who see the session; 404 for the rest."""
    return {**visible(403), "teacher": ok}


def class_teacher(ok: int) -> Expected:
    return {**{role: 404 for role in ROLES}, "teacher": ok, "anonymous": LOGIN}


def staff(ok: int) -> Expected:
    """The usage view: active staff only; everyone else, anonymous included, gets an unknown URL's 404."""
    return {**{role: 404 for role in ROLES}, "admin": ok}


def class_member(ok: int) -> Expected:
    return {**{role: 404 for role in ROLES}, "owner": ok, "classmate": ok, "teacher": ok, "anonymous": LOGIN}


def class_student(ok: int) -> Expected:
    """Assignments of class A, the student's side: its students (olive, carl); 404 for the rest."""
    return {**{role: 404 for role in ROLES}, "owner": ok, "classmate": ok, "anonymous": LOGIN}


@dataclass(frozen=True)
class Row:
    method: str
    path: PathFn
    expected: Expected
    unknown: PathFn | None = None  # the same URL with an id nobody has (its 404 must be identical)
    data: dict[str, str] = field(default_factory=dict)


def _session(c: Cast) -> str:
    return f"/sessions/{c.session.id}/"


_NOBODY_UUID = "00000000-0000-4000-8000-000000000000"
_NOBODY_INT = 987654321

ROWS: dict[str, Row] = {
    # Django's auth views
    "login": Row("GET", lambda c: "/accounts/login/", public()),
    "logout": Row("POST", lambda c: "/accounts/logout/", public(302)),
    "password_change": Row("GET", lambda c: "/accounts/password_change/", any_user(200)),
    "password_change_done": Row("GET", lambda c: "/accounts/password_change/done/", any_user(200)),
    "password_reset": Row("GET", lambda c: "/accounts/password_reset/", public()),
    "password_reset_done": Row("GET", lambda c: "/accounts/password_reset/done/", public()),
    "password_reset_confirm": Row("GET", lambda c: "/accounts/reset/MQ/not-a-token/", public()),
    "password_reset_complete": Row("GET", lambda c: "/accounts/reset/done/", public()),
    # the chat
    "healthz": Row("GET", lambda c: "/healthz", public(HEALTH)),
    "chat_home": Row("GET", lambda c: "/", any_user(200)),
    "sessions_activity": Row("GET", lambda c: "/sessions/activity.json", any_user(200)),
    "session_new": Row("POST", lambda c: "/sessions/new/", any_user(302), data={"language": "python"}),
    "session_detail": Row("GET", _session, visible(), unknown=lambda c: f"/sessions/{_NOBODY_UUID}/"),
    "session_rename": Row(
        "POST", lambda c: _session(c) + "rename/", owner_only(302),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/rename/", data={"title": "renamed"},
    ),
    "session_classroom": Row(
        "POST", lambda c: _session(c) + "classroom/", owner_only(302),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/classroom/", data={"classroom": ""},  # to private
    ),
    "session_restart": Row(
        "POST", lambda c: _session(c) + "restart/", owner_only(302), unknown=lambda c: f"/sessions/{_NOBODY_UUID}/restart/",
    ),
    "session_export_ipynb": Row(
        "GET", lambda c: _session(c) + "export.ipynb", visible(), unknown=lambda c: f"/sessions/{_NOBODY_UUID}/export.ipynb",
    ),
    "session_export_markdown": Row(
        "GET", lambda c: _session(c) + "export.md", visible(), unknown=lambda c: f"/sessions/{_NOBODY_UUID}/export.md",
    ),
    "execution_output": Row(
        "GET", lambda c: _session(c) + f"executions/{c.execution.id}/output/", visible(),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/executions/{c.execution.id}/output/",
    ),
    # comments
    "comment_new": Row(
        "POST", lambda c: _session(c) + "comments/", teacher_only(302),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/comments/", data={"execution_id": "{execution}", "body": "Try a while loop."},
    ),
    "comment_edit": Row(
        "POST", lambda c: f"/comments/{c.comment.id}/edit/", teacher_only(302),
        unknown=lambda c: f"/comments/{_NOBODY_INT}/edit/", data={"body": "Edited."},
    ),
    "comments_seen": Row(
        "POST", lambda c: _session(c) + "comments/seen/", owner_only(302),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/comments/seen/", data={"comment_id": "{comment}"},
    ),
    "comment_delete": Row(
        "POST", lambda c: f"/comments/{c.comment.id}/delete/", teacher_only(302), unknown=lambda c: f"/comments/{_NOBODY_INT}/delete/",
    ),
    # classrooms
    "teach": Row("GET", lambda c: "/teach/", any_user(200)),
    "classroom_new": Row("POST", lambda c: "/teach/classrooms/new/", any_user(302), data={"name": "New class"}),
    "classroom_detail": Row(
        "GET", lambda c: f"/teach/classrooms/{c.class_a.id}/", class_teacher(200), unknown=lambda c: f"/teach/classrooms/{_NOBODY_INT}/",
    ),
    "classroom_live": Row(
        "GET", lambda c: f"/teach/classrooms/{c.class_a.id}/live.json", class_teacher(200),
        unknown=lambda c: f"/teach/classrooms/{_NOBODY_INT}/live.json",
    ),
    "classroom_grid": Row(
        "GET", lambda c: f"/teach/classrooms/{c.class_a.id}/grid.json", class_teacher(200),
        unknown=lambda c: f"/teach/classrooms/{_NOBODY_INT}/grid.json",
    ),
    "classroom_code_regenerate": Row(
        "POST", lambda c: f"/teach/classrooms/{c.class_a.id}/code/", class_teacher(302),
        unknown=lambda c: f"/teach/classrooms/{_NOBODY_INT}/code/",
    ),
    "classroom_student_remove": Row(
        "POST", lambda c: f"/teach/classrooms/{c.class_a.id}/students/{c.owner.id}/remove/", class_teacher(302),
        unknown=lambda c: f"/teach/classrooms/{_NOBODY_INT}/students/{c.owner.id}/remove/",
    ),
    "classroom_student_remove_picked": Row(
        "POST", lambda c: f"/teach/classrooms/{c.class_a.id}/students/remove/", class_teacher(302),
        unknown=lambda c: f"/teach/classrooms/{_NOBODY_INT}/students/remove/", data={"student": "{owner}"},
    ),
    "classroom_leave": Row(
        "POST", lambda c: f"/classrooms/{c.class_a.id}/leave/", class_member(302), unknown=lambda c: f"/classrooms/{_NOBODY_INT}/leave/",
    ),
    # assignments: the student's side (class A's students), then the teacher's (class A's teachers)
    "assignments": Row("GET", lambda c: "/assignments/", any_user(200)),
    "assignment_detail": Row(
        "GET", lambda c: f"/assignments/{c.assignment.id}/", class_student(200), unknown=lambda c: f"/assignments/{_NOBODY_INT}/",
    ),
    "assignment_status": Row(
        "GET", lambda c: f"/assignments/{c.assignment.id}/status.json", class_student(200),
        unknown=lambda c: f"/assignments/{_NOBODY_INT}/status.json",
    ),
    "assignment_start": Row(
        "POST", lambda c: f"/assignments/{c.assignment.id}/start/", class_student(302),
        unknown=lambda c: f"/assignments/{_NOBODY_INT}/start/",
    ),
    "assignment_hand_in": Row(
        "POST", lambda c: f"/assignments/{c.assignment.id}/hand-in/", class_student(302),
        unknown=lambda c: f"/assignments/{_NOBODY_INT}/hand-in/",
    ),
    "assignment_check": Row(
        "POST", lambda c: f"/assignments/{c.assignment.id}/check/", class_student(302),
        unknown=lambda c: f"/assignments/{_NOBODY_INT}/check/",
    ),
    "assignment_new": Row(
        "POST", lambda c: f"/teach/classrooms/{c.class_a.id}/assignments/new/", class_teacher(302),
        unknown=lambda c: f"/teach/classrooms/{_NOBODY_INT}/assignments/new/", data={"title": "Functions"},
    ),
    "classroom_export": Row(
        "GET", lambda c: f"/teach/classrooms/{c.class_a.id}/export.zip", class_teacher(200),
        unknown=lambda c: f"/teach/classrooms/{_NOBODY_INT}/export.zip",
    ),
    "teach_assignment": Row(
        "GET", lambda c: f"/teach/assignments/{c.assignment.id}/", class_teacher(200),
        unknown=lambda c: f"/teach/assignments/{_NOBODY_INT}/",
    ),
    "assignment_edit": Row(
        "POST", lambda c: f"/teach/assignments/{c.assignment.id}/edit/", class_teacher(302),
        unknown=lambda c: f"/teach/assignments/{_NOBODY_INT}/edit/", data={"title": "Loops, again"},
    ),
    "assignment_grades_csv": Row(
        "GET", lambda c: f"/teach/assignments/{c.assignment.id}/grades.csv", class_teacher(200),
        unknown=lambda c: f"/teach/assignments/{_NOBODY_INT}/grades.csv",
    ),
    "submission_detail": Row(
        "GET", lambda c: f"/teach/submissions/{c.submission.id}/", class_teacher(200),
        unknown=lambda c: f"/teach/submissions/{_NOBODY_INT}/",
    ),
    "submission_grade": Row(
        "POST", lambda c: f"/teach/submissions/{c.submission.id}/grade/", class_teacher(302),
        unknown=lambda c: f"/teach/submissions/{_NOBODY_INT}/grade/", data={"score": "7", "feedback": "Good."},
    ),
    "join": Row("GET", lambda c: "/join/", any_user(200)),
    "join_code": Row("GET", lambda c: f"/join/{c.class_a.join_code}/", any_user(200)),
    # the session's workspace and search
    "files": Row("GET", lambda c: _session(c) + "files/", visible(), unknown=lambda c: f"/sessions/{_NOBODY_UUID}/files/"),
    "files_download": Row(
        "GET", lambda c: _session(c) + "files/download?path=../x", visible(400),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/files/download?path=../x",
    ),
    "files_preview": Row(
        "GET", lambda c: _session(c) + "files/preview?path=../x", visible(400),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/files/preview?path=../x",
    ),
    "files_delete": Row(
        "POST", lambda c: _session(c) + "files/delete", owner_only(400),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/files/delete", data={"path": "../x"},
    ),
    "files_rename": Row(
        "POST", lambda c: _session(c) + "files/rename", owner_only(400),
        unknown=lambda c: f"/sessions/{_NOBODY_UUID}/files/rename", data={"path": "../x", "to": "b.txt"},
    ),
    "packages": Row("GET", lambda c: _session(c) + "packages/", visible(), unknown=lambda c: f"/sessions/{_NOBODY_UUID}/packages/"),
    "search": Row("GET", lambda c: "/search/?q=hello", any_user(200)),
    # keys for the E2B-compatible API (a key id of someone else's is a no-op, as an unknown one)
    "api_keys": Row("GET", lambda c: "/account/keys/", any_user(200)),
    "api_key_revoke": Row("POST", lambda c: f"/account/keys/{_NOBODY_INT}/revoke/", any_user(302)),
    # usage, cost and budgets
    "account_usage": Row("GET", lambda c: "/account/usage.json", any_user(200)),
    "usage": Row("GET", lambda c: "/admin/usage/", staff(200), unknown=lambda c: "/no-such-page/"),
    "usage_csv": Row("GET", lambda c: "/admin/usage.csv", staff(200), unknown=lambda c: "/no-such-page/"),
    "usage_user": Row(
        "GET", lambda c: f"/admin/usage/users/{c.owner.id}/", staff(200), unknown=lambda c: f"/admin/usage/users/{_NOBODY_INT}/",
    ),
    "usage_user_kill": Row(
        "POST", lambda c: f"/admin/usage/users/{c.owner.id}/kill/", staff(302),
        unknown=lambda c: f"/admin/usage/users/{_NOBODY_INT}/kill/", data={"reason": "matrix"},
    ),
    "usage_run_stop": Row(
        "POST", lambda c: f"/admin/usage/runs/{c.execution.id}/stop/", staff(302),
        unknown=lambda c: f"/admin/usage/runs/{_NOBODY_INT}/stop/", data={"reason": "matrix"},
    ),
    # the admin's view of now (issue 20, section 1)
    "live": Row("GET", lambda c: "/admin/live/", staff(200), unknown=lambda c: "/no-such-page/"),
    "live_json": Row("GET", lambda c: "/admin/live.json", staff(200), unknown=lambda c: "/no-such-page/"),
    "live_kill": Row(
        "POST", lambda c: f"/admin/live/sessions/{c.session.id}/kill/", staff(302),
        unknown=lambda c: f"/admin/live/sessions/{_NOBODY_UUID}/kill/", data={"reason": "matrix"},
    ),
    "live_stop": Row(
        "POST", lambda c: f"/admin/live/runs/{c.execution.id}/stop/", staff(302),
        unknown=lambda c: f"/admin/live/runs/{_NOBODY_INT}/stop/", data={"reason": "matrix"},
    ),
}


def _walk(patterns: list[Any], prefix: str = "", namespace: str | None = None) -> Iterator[tuple[str, str, str | None]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.name or prefix + str(pattern.pattern), namespace


def _project_urls() -> list[tuple[str, str, str | None]]:
    return list(_walk(get_resolver().url_patterns))


def test_every_url_has_a_row() -> None:
    missing = sorted(name for route, name, ns in _project_urls() if ns != "admin" and name not in ROWS)
    assert not missing, f"URLs without a row in tests/test_access_matrix.py ROWS: {missing}"
    stale = sorted(set(ROWS) - {name for _, name, _ in _project_urls()})
    assert not stale, f"rows for URLs that no longer exist: {stale}"


def test_every_admin_url_sits_under_the_admin_prefix() -> None:
    outside = [route for route, _, ns in _project_urls() if ns == "admin" and not route.startswith("admin/")]
    assert outside == []


def _client(cast: Cast, role: str, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    user = cast.user(role)
    if user is not None:
        client.force_login(user)
    return client


def _request(client: Client, row: Row, path: str, cast: Cast, **extra: Any) -> Any:
    ids = {"{execution}": cast.execution.id, "{owner}": cast.owner.id, "{comment}": cast.comment.id}
    data = {}
    for key, value in row.data.items():
        for placeholder, pk in ids.items():
            value = value.replace(placeholder, str(pk))
        data[key] = value
    if row.method == "POST":
        return client.post(path, data, **extra)
    return client.get(path, **extra)


def _check(response: Any, expected: int | str, where: str) -> None:
    if expected == LOGIN:
        assert response.status_code == 302 and response["Location"].startswith(settings.LOGIN_URL), where
    elif expected == HEALTH:
        assert response.status_code in (200, 503), where
    else:
        assert response.status_code == expected, f"{where}: {response.status_code} != {expected}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(ROWS))
def test_matrix(cast: Cast, name: str, role: str) -> None:
    row = ROWS[name]
    assert set(row.expected) == set(ROLES), f"row {name} must name every role"
    client = _client(cast, role)
    response = _request(client, row, row.path(cast), cast)
    _check(response, row.expected[role], f"{row.method} {name} as {role}")
    if row.expected[role] == 404:
        assert row.unknown is not None, f"row {name} answers 404: give it an `unknown` path to compare with"
        unknown = _request(client, row, row.unknown(cast), cast)
        assert (unknown.status_code, unknown.content) == (response.status_code, response.content), (
            f"{name} as {role}: an id they may not see must answer exactly as an unknown one"
        )


@pytest.mark.parametrize("name", sorted(ROWS))
def test_matrix_foreign_origin(cast: Cast, name: str) -> None:
    """A page on another site can't act as a logged-in user: every POST with a foreign Origin is
    refused by the CSRF check (even with a valid token); no GET grants cross-origin reads."""
    row = ROWS[name]
    role = next((r for r in ROLES if row.expected[r] not in (404, 403, LOGIN)), "owner")
    client = _client(cast, role, enforce_csrf_checks=True)
    client.get("/accounts/login/")  # sets the CSRF cookie
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    extra = {"HTTP_ORIGIN": EVIL_ORIGIN, "HTTP_X_CSRFTOKEN": token}
    response = _request(client, row, row.path(cast), cast, **extra)
    if row.method == "POST":
        assert response.status_code == 403, f"POST {name} from {EVIL_ORIGIN}"
    else:
        _check(response, row.expected[role], f"GET {name} from {EVIL_ORIGIN}")
    assert "Access-Control-Allow-Origin" not in response.headers


# --- whose class the session is in ---------------------------------------------------------------

# Who sees olive's session, by where it is. "class_b": olive is also a student of class B and the
# session is in B (tom, B's teacher, watches it; tess, A's, no longer does). "left_a": the session is
# still in class A but olive has left A. Everyone not named answers as for an unknown id.
SESSION_SCOPES: dict[str, tuple[str, ...]] = {
    "private": ("owner", "admin"),
    "class_a": ("owner", "teacher", "admin"),
    "class_b": ("owner", "other_teacher", "admin"),
    "left_a": ("owner", "admin"),
}


def _scope(cast: Cast, scope: str) -> None:
    if scope == "private":
        cast.session.classroom = None
    elif scope == "class_b":
        cast.class_b.students.add(cast.owner)
        cast.session.classroom = cast.class_b
    elif scope == "left_a":
        cast.class_a.students.remove(cast.owner)
    cast.session.save()


def _scoped_expected(row: Row, role: str, scope: str) -> int | str:
    """The row's answer for `role` when the session is in `scope`: a watcher answers as the class's
    teacher does in the base matrix; whoever may not see it answers 404."""
    if role == "anonymous":
        return row.expected[role]
    if role not in SESSION_SCOPES[scope]:
        return 404
    return row.expected["teacher" if role == "other_teacher" else role]


@pytest.mark.parametrize("scope", sorted(SESSION_SCOPES))
@pytest.mark.parametrize("role", ROLES)
def test_matrix_by_session_scope(cast: Cast, scope: str, role: str) -> None:
    """Every URL of olive's session, as every role, with the session private, in class A, in class
    B, and in class A after olive left it."""
    _scope(cast, scope)
    client = _client(cast, role)
    rows = {name: row for name, row in ROWS.items() if row.path(cast).startswith(_session(cast))}
    assert {"session_detail", "session_classroom", "comment_new", "files"} <= set(rows)
    for name, row in sorted(rows.items()):
        expected = _scoped_expected(row, role, scope)
        response = _request(client, row, row.path(cast), cast)
        _check(response, expected, f"{row.method} {name} as {role}, session {scope}")
        if expected == 404:
            assert row.unknown is not None
            unknown = _request(client, row, row.unknown(cast), cast)
            assert (unknown.status_code, unknown.content) == (response.status_code, response.content), f"{name} as {role}"


@pytest.mark.parametrize("scope", sorted(SESSION_SCOPES))
def test_sessions_visible_to_follows_the_session_scope(cast: Cast, scope: str) -> None:
    """The queryset form of the rule (admin changelists, lists) shows the session to exactly the
    roles that `session_access` lets see it."""
    _scope(cast, scope)
    for role in ROLES[:-1]:
        visible = set(sessions_visible_to(user=cast.user(role)).values_list("pk", flat=True))
        assert (cast.session.pk in visible) == (role in SESSION_SCOPES[scope]), f"{role}, session {scope}"


def test_new_session_in_a_class_not_theirs_answers_as_unknown(cast: Cast) -> None:
    """olive may start a session in class A (hers); class B's id answers exactly as an id nobody has."""
    client = _client(cast, "owner")
    theirs = client.post("/sessions/new/", {"language": "python", "classroom": str(cast.class_b.id)})
    unknown = client.post("/sessions/new/", {"language": "python", "classroom": str(_NOBODY_INT)})
    garbage = client.post("/sessions/new/", {"language": "python", "classroom": "A"})
    assert theirs.status_code == 404
    assert (theirs.status_code, theirs.content) == (unknown.status_code, unknown.content) == (garbage.status_code, garbage.content)
    assert cast.owner.chat_sessions.count() == 1
    ok = client.post("/sessions/new/", {"language": "python", "classroom": str(cast.class_a.id)})
    assert ok.status_code == 302
    assert cast.owner.chat_sessions.exclude(pk=cast.session.pk).get().classroom_id == cast.class_a.id


def test_move_to_a_class_not_theirs_answers_as_unknown(cast: Cast) -> None:
    client = _client(cast, "owner")
    theirs = client.post(_session(cast) + "classroom/", {"classroom": str(cast.class_b.id)})
    unknown = client.post(_session(cast) + "classroom/", {"classroom": str(_NOBODY_INT)})
    assert theirs.status_code == 404 and (theirs.status_code, theirs.content) == (unknown.status_code, unknown.content)
    cast.session.refresh_from_db()
    assert cast.session.classroom_id == cast.class_a.id


# --- the admin ----------------------------------------------------------------------------------


# Admin pages that are not a registered model's changelist or change page (custom admin views such
# as a usage report): add them here and they get the same staff-only check.
EXTRA_ADMIN_PATHS: list[str] = []


def _admin_paths(cast: Cast) -> list[str]:
    """The admin index, every registered model's changelist, a change page for one row of each
    model that has one, and EXTRA_ADMIN_PATHS."""
    paths = ["/admin/", *EXTRA_ADMIN_PATHS]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        paths.append(reverse("admin:%s_%s_changelist" % info))
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            paths.append(reverse("admin:%s_%s_change" % info, args=[obj.pk]))
    return paths


@pytest.mark.parametrize("role", ROLES)
def test_admin_is_staff_only(cast: Cast, role: str) -> None:
    client = _client(cast, role)
    for path in _admin_paths(cast):
        response = client.get(path)
        if role == "admin":
            assert response.status_code == 200, path
        else:
            assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), f"{path} as {role}"


def test_admin_changelists_ask_the_access_rule(cast: Cast) -> None:
    """Staff see every session, run and comment; the admin edits none of them (read-only)."""
    client = _client(cast, "admin")
    for model in ("chatsession", "execution", "comment"):
        page = client.get(f"/admin/runner/{model}/")
        assert page.context["cl"].result_count == 1, model
        assert not page.context["has_add_permission"]
    change = client.post(f"/admin/runner/comment/{cast.comment.id}/change/", {"body": "rewritten by admin"})
    assert change.status_code == 403
    cast.comment.refresh_from_db()
    assert cast.comment.body.startswith("Nice loop")


# --- websocket routes ---------------------------------------------------------------------------

WS_ROWS: dict[str, Expected] = {
    # close code, or "hello:<can_run>/<can_comment>" for an accepted socket; anonymous 4403
    "ws/sessions/<uuid:session_id>/": {
        "owner": "hello:run", "teacher": "hello:comment", "admin": "hello:watch",
        "classmate": 4403, "other_student": 4403, "other_teacher": 4403, "anonymous": 4403,
    },
}


def test_every_websocket_route_has_a_row() -> None:
    routes = {str(p.pattern) for p in websocket_urlpatterns}
    assert routes == set(WS_ROWS), f"websocket routes without a row: {routes - set(WS_ROWS)}"
