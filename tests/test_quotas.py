"""Per-user limits: each one's `quota` rejection names the limit, its value and when it resets;
budgets close idle sandboxes; the idle reaper (1 s) records its reason on the lease for each
backend; an admin's kill ends the leases with reason "admin" and is audited."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.test import AsyncClient, override_settings
from django.utils import timezone

from runner import services
from runner.models import AdminAction, ChatSession, Execution, SandboxLease, UserQuota
from runner.sandboxes.e2b import E2BBackend
from runner.services.quotas import quota_check_sync, quota_status_sync
from tests.fixtures_daphne import _free_port
from tests.fixtures_e2b import e2b_settings
from tests.fixtures_runs import receive, receive_until_finished, run

UTC = ZoneInfo("UTC")
NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
PRICES = {"E2B_PRICE_PER_VCPU_S": 0.001, "E2B_PRICE_PER_GIB_S": 0.0}


def _lease(user, seconds: int, *, end: datetime = NOW, backend: str = "e2b") -> SandboxLease:
    return SandboxLease.objects.create(
        user=user, backend=backend, sandbox_id=f"q-{seconds}", vcpus=2, memory_mb=512,
        started_at=end - timedelta(seconds=seconds), ended_at=end,
    )


@pytest.mark.django_db
@override_settings(TIME_ZONE="UTC", QUOTA_SANDBOX_SECONDS_PER_DAY=3600, **PRICES)
def test_the_sandbox_time_limit_names_its_value_and_midnight(alice) -> None:
    _lease(alice, 3600)
    message, _ = quota_check_sync(user_id=alice.pk, now=NOW)
    assert message == "Daily sandbox time limit reached: 60 of 60 sandbox-minutes today. It resets at 00:00 on 2026-03-11 (UTC)."


@pytest.mark.django_db
@override_settings(TIME_ZONE="Europe/London", QUOTA_USD_PER_MONTH=5, **PRICES)
def test_the_monthly_budget_names_its_value_and_the_first_of_next_month(alice) -> None:
    _lease(alice, 2500)  # 2500 s x 2 vCPU x $0.001 = $5.00
    message, _ = quota_check_sync(user_id=alice.pk, now=NOW)
    assert message == "Monthly budget reached: $5.00 of $5.00 this month. It resets on 2026-04-01 at 00:00 (Europe/London)."


@pytest.mark.django_db
@override_settings(TIME_ZONE="UTC", QUOTA_RUNS_PER_DAY=50)
def test_a_user_override_beats_the_default_and_zero_means_no_limit(alice, bob, alice_session) -> None:
    Execution.objects.create(session=alice_session, seq=1, code="1", language="python", user=alice, status="succeeded", created_at=NOW)
    UserQuota.objects.create(user=alice, runs_per_day=1)
    UserQuota.objects.create(user=bob, runs_per_day=0)
    assert quota_check_sync(user_id=alice.pk, now=NOW)[0] == (
        "Daily run limit reached: 1 of 1 runs today. It resets at 00:00 on 2026-03-11 (UTC)."
    )
    message, limits = quota_check_sync(user_id=bob.pk, now=NOW)
    assert message is None and limits.runs_per_day == 0


@pytest.mark.django_db
@override_settings(TIME_ZONE="UTC", QUOTA_SANDBOX_SECONDS_PER_DAY=3600)
def test_usage_against_a_limit_reads_like_the_page_and_warns_at_80_percent(alice) -> None:
    _lease(alice, 38 * 60)
    (status,) = quota_status_sync(user_id=alice.pk, now=NOW)
    assert (status.text, status.percent, status.warn) == ("38 of 60 sandbox-minutes today", 63, False)
    _lease(alice, 10 * 60, end=NOW - timedelta(hours=1))
    (status,) = quota_status_sync(user_id=alice.pk, now=NOW)
    assert (status.text, status.warn) == ("48 of 60 sandbox-minutes today", True)



@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_the_daily_run_limit_rejects_the_next_run_over_the_socket(connect, alice, alice_session) -> None:
    with override_settings(QUOTA_RUNS_PER_DAY=2):
        ws = await connect(alice, alice_session)
        await receive(ws)
        for code in ("1", "2"):
            await receive_until_finished(ws, await run(ws, code))
        await ws.send_json_to({"type": "run", "code": "3", "language": "python", "client_id": "c"})
        error = await receive(ws)
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    assert error == {
        "type": "error", "code": "quota",
        "message": f"Daily run limit reached: 2 of 2 runs today. It resets at 00:00 on {tomorrow} (UTC).",
    }
    assert await Execution.objects.filter(user=alice).acount() == 2  # nothing stored for the refused run


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_the_concurrency_limit_counts_runs_in_every_session(connect, alice, alice_session) -> None:
    other = await asyncio.to_thread(services.session_create, owner=alice, title="second")
    with override_settings(QUOTA_CONCURRENT_RUNS=1):
        first, second = await connect(alice, alice_session), await connect(alice, other)
        await receive(first), await receive(second)
        long_run = await run(first, "import time\ntime.sleep(30)")
        await second.send_json_to({"type": "run", "code": "1", "language": "python", "client_id": "c"})
        error = await receive(second)
        assert error["code"] == "quota" and error["message"] == (
            "Concurrent run limit reached: 1 of 1 run at once. It resets when one of your runs finishes."
        )
        await first.send_json_to({"type": "stop", "execution_id": long_run})
        frames = await receive_until_finished(first, long_run)
        assert frames[-1]["status"] == "cancelled"
        after = await run(second, "print('now')")
        assert (await receive_until_finished(second, after))[-1]["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_twenty_simultaneous_runs_over_several_sockets_with_one_allowed_store_exactly_one(connect, alice, alice_session) -> None:
    other = await asyncio.to_thread(services.session_create, owner=alice, title="second")
    with override_settings(QUOTA_CONCURRENT_RUNS=1, WS_MESSAGES_PER_10S=100):
        sockets = [await connect(alice, session) for session in (alice_session, alice_session, other, other)]
        for ws in sockets:
            await receive(ws)
        await asyncio.gather(*(
            ws.send_json_to({"type": "run", "code": "import time\ntime.sleep(2)", "language": "python", "client_id": f"{i}-{n}"})
            for i, ws in enumerate(sockets) for n in range(5)
        ))
        errors = 0
        for ws in sockets:
            while not await ws.receive_nothing(timeout=1.5):
                frame = await ws.receive_json_from()
                errors += frame["type"] == "error" and frame["code"] == "quota"
    assert errors == 19
    assert await Execution.objects.filter(user=alice).acount() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_a_user_past_the_sandbox_time_limit_has_idle_sandboxes_closed_with_reason_budget(connect, alice, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "1"))
    await asyncio.to_thread(_lease, alice, 120, end=timezone.now())
    with override_settings(QUOTA_SANDBOX_SECONDS_PER_DAY=60):
        result = await services.budget_enforce()
        assert result.sandboxes_closed == 1
        closed = await receive(ws)  # the chip learns why (issue 20)
        assert closed["type"] == "sandbox.state" and closed["reason"] == "budget", closed
        await ws.send_json_to({"type": "run", "code": "2", "language": "python", "client_id": "c"})
        error = await receive(ws)
    lease = await SandboxLease.objects.aget(session=alice_session)
    assert lease.end_reason == "budget" and lease.ended_at is not None
    assert error["code"] == "quota" and error["message"].startswith("Daily sandbox time limit reached")


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_the_reaper_with_a_1_s_timeout_closes_a_local_sandbox_and_records_idle(connect, alice, alice_session) -> None:
    with override_settings(SANDBOX_IDLE_TIMEOUT_S=1):
        ws = await connect(alice, alice_session)
        await receive(ws)
        await receive_until_finished(ws, await run(ws, "1"))
        assert await services.sandbox_reap_idle() == 0  # just used
        await asyncio.sleep(1.2)
        assert await services.sandbox_reap_idle() == 1
    lease = await SandboxLease.objects.aget(session=alice_session)
    assert (lease.backend, lease.end_reason) == ("local", "idle") and lease.ended_at is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_the_reaper_with_a_1_s_timeout_closes_an_e2b_sandbox_and_records_idle(e2b_server, connect, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        # Created with the usual idle timeout, which E2B also gets as the sandbox's own timeout
        # (the backstop): with 1 s there, E2B could end it first, under a slow run.
        ws = await connect(alice, alice_session)
        await receive(ws)
        await receive_until_finished(ws, await run(ws, "1"))
        with override_settings(SANDBOX_IDLE_TIMEOUT_S=1):
            await asyncio.sleep(1.2)
            assert await services.sandbox_reap_idle() == 1
    lease = await SandboxLease.objects.aget(session=alice_session)
    assert (lease.backend, lease.end_reason) == ("e2b", "idle") and lease.ended_at is not None
    assert lease.sandbox_id not in e2b_server.sandboxes()  # killed at E2B, not only forgotten here


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_an_admin_kill_from_the_usage_page_ends_the_leases_with_reason_admin_and_is_audited(connect, alice, admin_user, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "v = 1"))
    client = AsyncClient()
    await client.aforce_login(admin_user)
    response = await client.post(f"/admin/usage/users/{alice.pk}/kill/", {"reason": "left open overnight"})
    assert response.status_code == 302
    lease = await SandboxLease.objects.aget(session=alice_session)
    assert lease.end_reason == "admin" and lease.ended_at is not None
    action = await AdminAction.objects.select_related("actor", "target_user").aget()
    assert (action.actor, action.target_user, action.kind, action.reason) == (admin_user, alice, "kill_sandboxes", "left open overnight")
    assert action.outcome == "closed the sandboxes of 1 session"
    execution_id = await run(ws, "print('v' in dir())")
    started = [f for f in await receive_until_finished(ws, execution_id) if f["type"] == "execution.started"]
    assert started[0]["notice"] == services.sandboxes.NOTICE_NEW_SANDBOX


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
async def test_the_live_sandbox_limit_replaces_the_oldest_idle_sandbox_and_refuses_when_none_is_idle(connect, alice, alice_session) -> None:
    other = await asyncio.to_thread(services.session_create, owner=alice, title="second")
    with override_settings(QUOTA_LIVE_SANDBOXES=1):
        first, second = await connect(alice, alice_session), await connect(alice, other)
        await receive(first), await receive(second)
        await receive_until_finished(first, await run(first, "v = 1"))
        # A second session's first run closes the first one's idle sandbox to make room.
        assert (await receive_until_finished(second, await run(second, "1")))[-1]["status"] == "succeeded"
        lease = await SandboxLease.objects.aget(session=alice_session)
        assert lease.end_reason == "replaced" and lease.ended_at is not None
        assert services.sandboxes.sandboxes_held_count() == 1
        # With the one sandbox running code, a run that needs another is refused, naming the limit.
        long_run = await run(second, "import time\ntime.sleep(30)")
        refused = await run(first, "print('v' in dir())")
        frames = await receive_until_finished(first, refused)
        errors = [f for f in frames if f["type"] == "error"]
        assert errors and errors[0]["code"] == "quota" and errors[0]["message"] == (
            "Live sandbox limit reached: 1 of 1 sandbox open, each running code. Stop a run or wait for one to finish, then try again."
        )
        assert frames[-1]["status"] == "rejected"
        row = await Execution.objects.aget(pk=refused)
        assert (row.status, row.error_name) == ("rejected", "QuotaExceeded")
        await second.send_json_to({"type": "stop", "execution_id": long_run})
        assert (await receive_until_finished(second, long_run))[-1]["status"] == "cancelled"
        # Idle again: the first session gets a fresh sandbox (its variables are gone, and it says so).
        again = await run(first, "print('v' in dir())")
        frames = await receive_until_finished(first, again)
        started = [f for f in frames if f["type"] == "execution.started"]
        assert started[0]["notice"] == services.sandboxes.NOTICE_NEW_SANDBOX and frames[-1]["status"] == "succeeded"
    assert (await SandboxLease.objects.filter(session=other).order_by("started_at").afirst()).end_reason == "replaced"
    assert await SandboxLease.objects.open().acount() == 1


@pytest.mark.django_db
@override_settings(QUOTA_LIVE_SANDBOXES=3)
def test_the_live_sandbox_limit_has_a_per_user_override(alice, bob) -> None:
    UserQuota.objects.create(user=alice, live_sandboxes=5)
    UserQuota.objects.create(user=bob, live_sandboxes=0)
    assert services.quotas.live_sandboxes_limit_sync(user_id=alice.pk) == 5
    assert services.quotas.live_sandboxes_limit_sync(user_id=bob.pk) == 0  # no limit
    UserQuota.objects.filter(user=alice).update(live_sandboxes=None)
    assert services.quotas.live_sandboxes_limit_sync(user_id=alice.pk) == 3


@pytest.mark.django_db
def test_quota_rows_round_trip_decimal_budgets(alice) -> None:
    UserQuota.objects.create(user=alice, usd_per_month=Decimal("12.50"))
    assert quota_check_sync(user_id=alice.pk)[1].usd_per_month == Decimal("12.50")


def _zone_far_from_midnight() -> str:
    """A zone where it is now between 02:00 and 22:00, so the last 50 minutes fall on one day
    (in UTC, a test run just after midnight would count only part of them as today)."""
    return "UTC" if 2 <= timezone.now().hour < 22 else "Etc/GMT-12"  # Etc/GMT-12 is UTC+12


@pytest.mark.django_db
@override_settings(QUOTA_SANDBOX_SECONDS_PER_DAY=3600, QUOTA_RUNS_PER_DAY=0)
def test_the_chat_page_and_its_json_show_usage_against_the_limit(alice, alice_session, client) -> None:
    _lease(alice, 50 * 60, end=timezone.now())
    client.force_login(alice)
    with override_settings(TIME_ZONE=_zone_far_from_midnight()):
        html = client.get(f"/sessions/{alice_session.id}/").content.decode()
        body = client.get("/account/usage.json").json()
    assert 'id="usage-meter"' in html and "50 of 60 sandbox-minutes today · 83% used" in html
    assert body == {"limits": [{"name": "sandbox_seconds_per_day", "text": "50 of 60 sandbox-minutes today", "percent": 83, "warn": True}]}


@pytest.mark.django_db
def test_without_limits_the_meter_is_hidden(alice, alice_session, client) -> None:
    client.force_login(alice)
    assert 'id="usage-meter" aria-live="polite" hidden' in client.get(f"/sessions/{alice_session.id}/").content.decode()
    assert client.get("/account/usage.json").json() == {"limits": []}


@pytest.mark.django_db
@override_settings(HTTP_POSTS_PER_MINUTE=3)
def test_http_posts_are_rate_limited_per_user_with_a_clear_error(alice, bob, alice_session, client) -> None:
    from django.test import Client

    client.force_login(alice)
    other_tab = Client()
    other_tab.force_login(alice)
    for c in (client, other_tab, client):
        assert c.post(f"/sessions/{alice_session.id}/rename/", {"title": "t"}).status_code in (200, 302)
    refused = other_tab.post(f"/sessions/{alice_session.id}/rename/", {"title": "t"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    body = refused.json()["error"]
    assert body["code"] == "rate_limited" and body["message"].startswith("Too many requests from you: at most 3 per 60 seconds")
    bob_client = Client()
    bob_client.force_login(bob)
    assert bob_client.post("/sessions/new/").status_code == 302  # bob has his own allowance


@pytest.mark.django_db
def test_with_the_rate_limit_cache_down_requests_still_go_through(alice, alice_session, client, caplog) -> None:
    """Redis (the shared cache) restarting must not fail every request: the limit fails open, and
    says so in the log at most every 30 s (not once a request)."""
    dead = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there: connecting is refused
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}}
    client.force_login(alice)
    with override_settings(CACHES=caches, REDIS_URL=dead, HTTP_POSTS_PER_MINUTE=1), caplog.at_level("WARNING"):
        for _ in range(3):  # past the limit of 1, which nothing can count
            assert client.post(f"/sessions/{alice_session.id}/rename/", {"title": "t"}).status_code in (200, 302)
    failures = [r for r in caplog.records if "rate limit not counted" in r.getMessage()]
    assert len(failures) <= 1
    assert all("ConnectionError" in r.getMessage() for r in failures)
    alice_session.refresh_from_db()
    assert alice_session.title == "t"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_an_admin_stop_of_a_running_run_cancels_it_and_is_audited(connect, alice, admin_user, alice_session) -> None:
    ws = await connect(alice, alice_session)
    await receive(ws)
    execution_id = await run(ws, "import time\nprint('go', flush=True)\ntime.sleep(30)")
    while (await receive(ws)).get("type") != "execution.output":
        pass
    client = AsyncClient()
    await client.aforce_login(admin_user)
    response = await client.post(f"/admin/usage/runs/{execution_id}/stop/", {"reason": "stuck for an hour"})
    assert response.status_code == 302
    frames = await receive_until_finished(ws, execution_id)
    assert frames[-1]["status"] == "cancelled"
    action = await AdminAction.objects.aget()
    assert (action.kind, action.execution_id, action.reason) == ("stop_run", execution_id, "stuck for an hour")
    assert action.outcome == f"run {execution_id} was running; stop sent"


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_the_sweep_kills_a_dead_process_e2b_sandbox_that_no_session_names_and_ends_its_lease(e2b_server, runs_cleanup, alice, alice_session) -> None:
    with e2b_settings(e2b_server):
        orphan = await E2BBackend(e2b_server.config()).create(owner_id=alice.pk, session_id=str(alice_session.id))
        kept = await E2BBackend(e2b_server.config()).create(owner_id=alice.pk, session_id=str(alice_session.id))
        # A dead process left two open leases; the session names only `kept` (a restart reconnects to it).
        await ChatSession.objects.filter(pk=alice_session.pk).aupdate(backend="e2b", sandbox_id=kept.id)
        for sandbox in (orphan, kept):
            await SandboxLease.objects.acreate(user=alice, session=alice_session, backend="e2b", sandbox_id=sandbox.id, owner_boot_id="dead")
        assert await services.lease_sweep() == 1
    ended = await SandboxLease.objects.aget(sandbox_id=orphan.id)
    assert ended.end_reason == "shutdown" and ended.ended_at is not None
    assert (await SandboxLease.objects.aget(sandbox_id=kept.id)).ended_at is None
    alive = e2b_server.sandboxes()
    assert orphan.id not in alive and kept.id in alive
