"""API keys with an expiry date, driven by the real SDK against a real Daphne: past its expiry a
key is refused as a revoked one is (E2B's 401), and the sandboxes it made end when it expires."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from e2b import AuthenticationException, SandboxException
from e2b_code_interpreter import Sandbox

from runner import services
from runner.models import ApiKey, ApiSandbox, Execution, SandboxLease
from tests.fixtures_daphne import Daphne

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()


@pytest.fixture
def sandpit(daphnes: Callable[..., Daphne], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Daphne on the test database and the local backend, the SDK's env pointing at it."""
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="", RUN_TIMEOUT_S="30")
    url = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    yield url


def test_an_expired_key_is_refused_with_401_as_a_revoked_key_is(sandpit: str) -> None:
    alice = User.objects.create_user(username="alice", password="pw")
    row, key = services.api_key_create(owner=alice, name="old", expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key=key)
    listed = httpx.get(f"{sandpit}/v2/sandboxes", headers={"X-API-Key": key}, timeout=60)
    assert listed.status_code == 401 and listed.json()["code"] == 401
    assert not ApiSandbox.objects.exists()
    # The same key without the expiry works: the refusal is the expiry's.
    ApiKey.objects.filter(pk=row.pk).update(expires_at=None)
    with Sandbox.create(api_key=key) as sandbox:
        assert sandbox.run_code("6 * 7").text == "42"


def test_a_sandbox_ends_when_its_key_expires_and_is_refused_after(sandpit: str) -> None:
    alice = User.objects.create_user(username="alice", password="pw")
    expires_at = timezone.now() + timedelta(seconds=8)
    _row, key = services.api_key_create(owner=alice, name="short", expires_at=expires_at)
    sandbox = Sandbox.create(api_key=key, timeout=3600)
    try:
        # The sandbox's end is the key's expiry, not the hour asked for, and extending can't pass it.
        assert ApiSandbox.objects.get().end_at <= expires_at
        sandbox.set_timeout(3600)
        assert ApiSandbox.objects.get().end_at <= expires_at
        assert sandbox.get_info().end_at <= expires_at
        assert sandbox.run_code("1 + 1").text == "2"

        while timezone.now() < expires_at + timedelta(seconds=1.2):  # past the routing's cache (RECENT_TTL_S)
            time.sleep(0.2)
        with pytest.raises(SandboxException, match="401.*expired"):
            sandbox.run_code("print('ran')")
        with pytest.raises(AuthenticationException):  # envd's Process/Start
            sandbox.commands.run("echo ran")
        assert not Execution.objects.filter(code__contains="ran").exists()
        deadline = time.monotonic() + 15
        while ApiSandbox.objects.filter(killed_at=None).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ApiSandbox.objects.get().killed_at is not None
        assert not SandboxLease.objects.open().exists()
        assert SandboxLease.objects.get().end_reason == SandboxLease.EndReason.REVOKED
    finally:
        ApiKey.objects.update(expires_at=None)
        sandbox.kill()


def test_setting_a_keys_expiry_in_the_admin_ends_its_sandboxes_by_then() -> None:
    staff = User.objects.create_superuser(username="root", password="pw")
    owner = User.objects.create_user(username="alice", password="pw")
    key, _secret = services.api_key_create(owner=owner, name="laptop")
    session = services.session_create(owner=owner, language="python", title="api")
    row = ApiSandbox.objects.create(session=session, api_key=key, end_at=timezone.now() + timedelta(hours=1))
    admin = Client()
    admin.force_login(staff)
    soon = timezone.localtime() + timedelta(minutes=10)
    saved = admin.post(f"/admin/runner/apikey/{key.pk}/change/", {"expires_at_0": soon.strftime("%Y-%m-%d"), "expires_at_1": soon.strftime("%H:%M:%S")})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    row.refresh_from_db()
    assert row.end_at <= soon


def test_the_keys_page_refuses_an_expiry_date_in_the_past_and_keeps_today_until_its_end() -> None:
    alice = User.objects.create_user(username="alice", password="pw")
    page = Client()
    page.force_login(alice)
    yesterday = timezone.localdate() - timedelta(days=1)
    refused = page.post("/account/keys/", {"name": "ci", "expires_on": yesterday.isoformat()})
    assert refused.status_code == 400 and "in the past" in refused.content.decode()
    assert not ApiKey.objects.exists()
    made = page.post("/account/keys/", {"name": "ci", "expires_on": timezone.localdate().isoformat()})
    assert made.status_code == 200
    expires_at = ApiKey.objects.get().expires_at
    assert expires_at is not None and timezone.localtime(expires_at).date() == timezone.localdate() + timedelta(days=1)
    assert timezone.localtime(expires_at).time().hour == 0
