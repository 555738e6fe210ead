"""The deploy profile (issue 12, part 3): `HTTPS=true` with `DEBUG=false` passes `check --deploy`,
and the login locks a username out from one address after repeated wrong passwords (django-axes),
with a clear message, until an admin unlocks it. Behind the proxy (HTTPS=true) the address is the
proxy's X-Real-IP, and only there (issue 17 finding 8)."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client

from axes.models import AccessAttempt
from tests.fixtures_daphne import Daphne

BASE_DIR = Path(__file__).resolve().parent.parent
LOCKED = "Too many wrong passwords"


def _check_deploy(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_ALLOW"))}
    env.update({"DEBUG": "false", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "sandpit.example.org"})
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_reports_no_issues_with_https_on() -> None:
    result = _check_deploy(HTTPS="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_without_https_names_what_is_missing() -> None:
    result = _check_deploy(HTTPS="false")
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


def _login(client: Client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def _lock_out(username: str, address: str = "127.0.0.1") -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = _login(Client(), username, "wrong-password", address)
        assert response.status_code in (200, 429)


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_that_user_out_from_that_address_only(alice, bob) -> None:
    assert _login(Client(), "alice", "wrong-password").status_code == 200  # the usual "didn't match"
    _lock_out("alice")
    locked = _login(Client(), "alice", "pw-alice-123")  # even the right password
    assert locked.status_code == 429
    assert LOCKED in locked.content.decode() and "ask a teacher or an admin" in locked.content.decode()
    assert "_auth_user_id" not in locked.client.session

    # Per user and address: alice elsewhere, and bob here, still log in.
    assert _login(Client(), "alice", "pw-alice-123", address="10.0.0.7").status_code == 302
    assert _login(Client(), "bob", "pw-bob-123").status_code == 302


@pytest.mark.django_db
def test_an_admin_unlocks_a_locked_user_in_the_admin(alice, admin_user) -> None:
    _lock_out("alice")
    assert _login(Client(), "alice", "pw-alice-123").status_code == 429

    admin = Client()
    admin.force_login(admin_user)
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "alice" in listing.content.decode()
    attempt = AccessAttempt.objects.get(username="alice")
    deleted = admin.post(
        "/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"}
    )
    assert deleted.status_code == 302
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert _login(Client(), "alice", "pw-alice-123").status_code == 302


def _proxied_login(server: Daphne, username: str, password: str, real_ip: str) -> int:
    """A login through the README's proxy, as the proxy forwards it (X-Forwarded-Proto: https and
    the client's X-Real-IP) to a server on the deploy profile; the POST's status."""
    base = {"Host": f"127.0.0.1:{server.port}", "X-Forwarded-Proto": "https", "X-Real-IP": real_ip}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/accounts/login/", headers=base)
        page = conn.getresponse()
        html = page.read().decode()
        assert page.status == 200, page.status
        cookie = re.search(r"csrftoken=([^;]+)", page.getheader("Set-Cookie") or "")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        assert cookie and token
        body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)})
        conn.request("POST", "/accounts/login/", body=body, headers={
            **base, "Cookie": f"csrftoken={cookie.group(1)}", "Origin": f"https://127.0.0.1:{server.port}",
            "Content-Type": "application/x-www-form-urlencoded",
        })
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def test_behind_the_proxy_two_clients_are_counted_apart(daphnes: Callable[..., Daphne], alice) -> None:
    server = daphnes(HTTPS="true")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        assert _proxied_login(server, "alice", "wrong-password", "203.0.113.5") in (200, 429)
    assert _proxied_login(server, "alice", "pw-alice-123", "203.0.113.5") == 429  # locked out there
    assert _proxied_login(server, "alice", "pw-alice-123", "198.51.100.7") == 302  # not here
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.5"}


@pytest.mark.django_db
def test_without_the_proxy_profile_a_forged_x_real_ip_is_not_trusted(alice) -> None:
    assert not settings.HTTPS
    for n in range(settings.AXES_FAILURE_LIMIT):
        response = Client().post("/accounts/login/", {"username": "alice", "password": "wrong"}, HTTP_X_REAL_IP=f"192.0.2.{n}")
        assert response.status_code in (200, 429)
    fresh_address = Client().post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"}, HTTP_X_REAL_IP="192.0.2.99")
    assert fresh_address.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}
