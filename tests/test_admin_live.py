"""The admin's view of now (`/admin/live/`, `/admin/live.json`): every open lease on every process
with its owner, class, process, figures, run and cost; sorting; Kill and Stop through the same
audited actions as the usage drill-down; and real figures from a real sandbox's cgroup, published
by the process that holds it."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from django.test import AsyncClient, Client, override_settings
from django.utils import timezone

from runner.models import AdminAction, ChatSession, Classroom, Execution, SandboxLease, ServerProcess
from runner.services.runtime import BOOT_ID

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def staff_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _peer(boot_id: str, host: str, sandboxes: dict, *, seen_s_ago: float = 1, capacity: dict | None = None, queue=None) -> ServerProcess:
    """A server process's row as its heartbeat and live figures leave it (another host: no pid check)."""
    now = timezone.now()
    return ServerProcess.objects.create(
        boot_id=boot_id, hostname=host, pid=4242, started_at=now - timedelta(hours=2), seen_at=now - timedelta(seconds=seen_s_ago),
        live_stats={"backend": "local", "capacity": capacity or {}, "queue": queue or [], "sandboxes": sandboxes},
        live_stats_at=now - timedelta(seconds=seen_s_ago),
    )


@pytest.fixture
def school(alice, bob, django_user_model):
    """alice (in "Year 9 Physics", a running run, busy), bob (idle, on another process), and carol,
    whose process stopped beating: three open leases on three processes."""
    alice.first_name, alice.last_name, alice.email = "Alice", "Liddell", "alice@school.example"
    alice.save()
    carol = django_user_model.objects.create_user("carol", password="x")
    physics = Classroom.objects.create(name="Year 9 Physics")
    physics.students.add(alice)
    now = timezone.now()
    a = ChatSession.objects.create(owner=alice, title="Pendulum", classroom=physics, last_activity_at=now - timedelta(seconds=5))
    b = ChatSession.objects.create(owner=bob, title="Primes", last_activity_at=now - timedelta(minutes=20))
    c = ChatSession.objects.create(owner=carol, title="Orphan", last_activity_at=now - timedelta(hours=1))
    la = SandboxLease.objects.create(user=alice, session=a, backend="local", sandbox_id="sa", vcpus=1, memory_mb=512,
                                     started_at=now - timedelta(minutes=30), owner_boot_id="web-1")
    lb = SandboxLease.objects.create(user=bob, session=b, backend="e2b", sandbox_id="sb", vcpus=2, memory_mb=512,
                                     started_at=now - timedelta(hours=1), owner_boot_id="web-2")
    SandboxLease.objects.create(user=carol, session=c, backend="local", sandbox_id="sc", vcpus=1, memory_mb=512,
                                started_at=now - timedelta(minutes=10), owner_boot_id="web-dead")
    SandboxLease.objects.create(user=bob, session=b, backend="local", sandbox_id="old", started_at=now - timedelta(days=1),
                                ended_at=now - timedelta(hours=20), owner_boot_id="web-2")  # ended: not live
    _peer("web-1", "host-a", {"sa": {"session_id": str(a.pk), "lease_id": la.pk, "cpu_percent": 97.5, "memory_bytes": 180 * MIB,
                                     "memory_limit_bytes": 512 * MIB}},
          capacity={"live": 1, "max_live": None, "ceiling": 400, "cap_text": "memory", "sandboxes_memory_bytes": 230 * MIB,
                    "available_bytes": 3000 * MIB, "headroom_bytes": 512 * MIB, "left_bytes": 2488 * MIB, "warm": 1, "warming": 0, "has_room": True},
          queue=[{"session_id": str(c.pk), "since": (now - timedelta(seconds=12)).isoformat()}])
    _peer("web-2", "host-b", {"sb": {"session_id": str(b.pk), "lease_id": lb.pk, "cpu_percent": None, "memory_bytes": None,
                                     "memory_limit_bytes": None}})
    _peer("web-dead", "host-c", {"sc": {"cpu_percent": 50.0, "memory_bytes": 99 * MIB}}, seen_s_ago=600)
    run = Execution.objects.create(session=a, seq=1, code="while True: pass", language="python", user=alice, status="running",
                                   started_at=now - timedelta(seconds=75), owner_boot_id="web-1")
    return {"alice": a, "bob": b, "carol": c, "run": run, "carol_user": carol}


def _data(client: Client, **query) -> dict:
    response = client.get("/admin/live.json", query)
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    return json.loads(response.content)


def test_every_open_lease_is_listed_with_owner_class_process_figures_run_and_cost(admin_user, school) -> None:
    data = _data(staff_client(admin_user))
    rows = {r["session_title"]: r for r in data["sandboxes"]}
    assert set(rows) == {"Pendulum", "Primes", "Orphan"}  # the ended lease is not live
    alice = rows["Pendulum"]
    assert (alice["owner"], alice["email"], alice["classroom"], alice["backend"]) == ("Alice Liddell", "alice@school.example", "Year 9 Physics", "local")
    assert alice["process"] == "host-a:4242" and alice["process_alive"]
    assert (alice["cpu_text"], alice["memory_text"]) == ("97.5%", "180 MiB of 512 MiB")
    assert alice["run"]["status"] == "running" and alice["run"]["text"].startswith("#1 running, 1 min")
    assert alice["session_url"] == f"/sessions/{school['alice'].pk}/"  # view it as a chat
    assert alice["activity"] == "5 s ago"
    assert rows["Primes"]["cpu_text"] == "n/a" and rows["Primes"]["cost"] > 0  # E2B without metrics; E2B's price
    orphan = rows["Orphan"]
    assert not orphan["process_alive"] and orphan["cpu_text"] == "n/a"  # a silent process's figures are not shown as now
    assert data["summary"] == {"live": 3, "by_backend": "1 e2b, 2 local", "running": 1, "queued": 0, "waiting": 1, "processes": 2}


def test_capacity_shows_each_process_heartbeat_cap_memory_warm_pool_and_who_waits(admin_user, school) -> None:
    data = _data(staff_client(admin_user))
    processes = {p["process"]: p for p in data["processes"]}
    a = processes["host-a:4242"]
    assert a["alive"] and a["live_text"] == "1 (the cap is what memory allows, at most 400)"
    assert a["memory_text"] == "230 MiB" and a["left_text"] == "2,488 MiB (3,000 MiB free, 512 MiB kept)"
    assert a["warm_text"] == "1 warm" and a["queued"] == 1 and a["heartbeat"] == "1 s ago"
    assert not processes["host-c:4242"]["alive"]
    assert [(w["owner"], w["session_title"]) for w in data["waiting"]] == [("carol", "Orphan")]
    html = staff_client(admin_user).get("/admin/live/").content.decode()
    assert "silent: taken for dead" in html and "Nobody is waiting" not in html


def test_a_fixed_cap_reads_live_of_cap_and_a_full_process_says_so(admin_user, alice_session) -> None:
    _peer("web-9", "host-z", {}, capacity={"live": 40, "max_live": 40, "ceiling": 400, "sandboxes_memory_bytes": 12 * 1024 * MIB,
                                           "available_bytes": 2 * 1024 * MIB, "headroom_bytes": 512 * MIB, "left_bytes": 1536 * MIB,
                                           "warm": 0, "warming": 1, "has_room": False})
    (process,) = _data(staff_client(admin_user))["processes"]
    assert (process["live_text"], process["full"], process["warm_text"]) == ("40 of 40", True, "0 warm, 1 starting")
    assert process["memory_text"] == "12.0 GiB"
    assert "40 of 40 · full" in staff_client(admin_user).get("/admin/live/").content.decode()


@pytest.mark.parametrize(("sort", "direction", "expected"), [
    # Unknown figures (E2B without metrics, a silent process) come last either way, newest first.
    ("cpu", "desc", ["Pendulum", "Orphan", "Primes"]),
    ("cpu", "asc", ["Pendulum", "Orphan", "Primes"]),
    ("owner", "asc", ["Primes", "Orphan", "Pendulum"]),  # bob, carol, Liddell: the last name where set, else the username
    ("owner", "desc", ["Pendulum", "Orphan", "Primes"]),
    ("started", "desc", ["Orphan", "Pendulum", "Primes"]),
    ("cost", "desc", ["Primes", "Orphan", "Pendulum"]),  # E2B's price; local is free by default
])
def test_sorting_orders_the_rows_by_the_column(admin_user, school, sort, direction, expected) -> None:
    data = _data(staff_client(admin_user), sort=sort, dir=direction)
    assert [r["session_title"] for r in data["sandboxes"]] == expected
    html = staff_client(admin_user).get("/admin/live/", {"sort": sort, "dir": direction}).content.decode()
    assert f'aria-sort="{"descending" if direction == "desc" else "ascending"}"><div class="text"><a href="?sort={sort}' in html


@override_settings(E2B_PRICE_PER_VCPU_S=0.001, E2B_PRICE_PER_GIB_S=0.0)
def test_the_page_renders_the_same_rows_with_kill_and_a_stop_for_the_running_run(admin_user, school) -> None:
    html = staff_client(admin_user).get("/admin/live/", {"sort": "cpu"}).content.decode()
    assert html.count('<tr data-lease="') == 3
    assert f'action="/admin/live/sessions/{school["alice"].pk}/kill/?sort=cpu&amp;dir=desc"' in html
    assert f'formaction="/admin/live/runs/{school["run"].pk}/stop/?sort=cpu&amp;dir=desc"' in html
    assert html.count('class="live-stop"') == 1  # alice's run; the others have none
    assert 'src="/static/runner/admin_live.js"' in html and "<script>" not in html  # CSP: no inline script


def test_a_kill_closes_that_one_sandbox_says_why_and_is_audited(admin_user, school) -> None:
    """Carol's process is silent, so the kill ends her lease in the database (as the drill-down's
    does); a reason is required; another session's sandbox stays."""
    other = ChatSession.objects.create(owner=school["bob"].owner, title="Other")
    SandboxLease.objects.create(user=school["bob"].owner, session=other, backend="local", sandbox_id="so", owner_boot_id="web-dead")
    client = staff_client(admin_user)
    assert client.post(f"/admin/live/sessions/{school['carol'].pk}/kill/?sort=cpu&dir=asc", {"reason": ""}).status_code == 302
    assert not AdminAction.objects.exists()  # no reason: refused, nothing recorded
    response = client.post(f"/admin/live/sessions/{school['carol'].pk}/kill/?sort=cpu&dir=asc", {"reason": "left the room"})
    assert response.status_code == 302 and response["Location"] == "/admin/live/?sort=cpu&dir=asc"
    lease = SandboxLease.objects.get(sandbox_id="sc")
    assert lease.ended_at is not None and lease.end_reason == "admin"
    assert SandboxLease.objects.get(sandbox_id="so").ended_at is None  # only that session's sandbox
    action = AdminAction.objects.get()
    assert (action.actor, action.target_user, action.kind, action.reason) == (admin_user, school["carol_user"], "kill_sandboxes", "left the room")
    assert "Orphan" in action.outcome and str(school["carol"].pk) in action.outcome
    page = client.get("/admin/live/").content.decode()
    assert "closed the sandbox of session" in page and "Orphan" not in page.split('id="live-table"')[1]


def test_a_stop_of_a_run_that_ended_meanwhile_is_recorded_and_the_page_comes_back(admin_user, school) -> None:
    run = school["run"]
    Execution.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now())
    response = staff_client(admin_user).post(f"/admin/live/runs/{run.pk}/stop/", {"reason": "runaway loop"})
    assert response.status_code == 302 and response["Location"] == "/admin/live/"
    action = AdminAction.objects.get()
    assert (action.kind, action.execution_id, action.reason) == ("stop_run", run.pk, "runaway loop")
    assert "had already ended" in action.outcome


def test_the_admin_index_links_to_the_live_page(admin_user) -> None:
    assert 'href="/admin/live/"' in staff_client(admin_user).get("/admin/").content.decode()


# --- real sandboxes ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
async def test_the_owning_process_publishes_a_busy_sandboxes_cpu_and_memory_from_its_cgroup(connect, alice, admin_user, alice_session) -> None:
    """A real kernel allocates 150 MB and spins: this process's published row says so (cgroup v1
    or v2), and the page reads it from the row."""
    from runner.services.live import live_stats_publish
    from tests.fixtures_runs import receive, run

    ws = await connect(alice, alice_session)
    await receive(ws)
    execution_id = await run(ws, "import time\nblock = bytearray(150 * 1024 * 1024)\nfor i in range(0, len(block), 4096): block[i] = 1\n"
                                 "print('allocated', flush=True)\nt = time.time()\nwhile time.time() - t < 30: pass")
    frame: dict = {}
    while frame.get("text") != "allocated\n":  # the memory is held; the loop spins from now on
        frame = await receive(ws)
    await live_stats_publish()  # the first reading samples the cgroup's CPU over a short window
    await asyncio.sleep(1.0)
    stats = await live_stats_publish()
    lease = await SandboxLease.objects.aget(session=alice_session, ended_at__isnull=True)
    figures = stats["sandboxes"][lease.sandbox_id]
    assert figures["memory_bytes"] is not None and figures["memory_bytes"] > 140 * MIB, figures
    # Of the sandbox's CPU quota; an idle kernel reads about 0, and this machine is shared (a spin got 28% once).
    assert figures["cpu_percent"] is not None and figures["cpu_percent"] > 5, figures
    row = await ServerProcess.objects.aget(boot_id=BOOT_ID)
    assert row.live_stats["sandboxes"][lease.sandbox_id]["memory_bytes"] == figures["memory_bytes"]
    assert row.live_stats["capacity"]["live"] >= 1 and row.live_stats["capacity"]["available_bytes"] > 0

    client = AsyncClient()
    await client.aforce_login(admin_user)
    data = json.loads((await client.get("/admin/live.json")).content)
    mine = next(r for r in data["sandboxes"] if r["lease_id"] == lease.pk)
    assert mine["memory_text"].endswith(" MiB of 512 MiB") and mine["cpu_text"].endswith("%")
    assert mine["run"]["execution_id"] == execution_id


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
async def test_stop_from_the_live_view_keeps_the_sandbox_and_kill_ends_the_run_with_the_reason(connect, alice, admin_user, alice_session) -> None:
    from tests.fixtures_runs import receive, receive_until_finished, run

    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "x = 41"))
    client = AsyncClient()
    await client.aforce_login(admin_user)

    stopped = await run(ws, "import time\ntime.sleep(60)")
    while not await Execution.objects.filter(pk=stopped, status="running").aexists():
        await asyncio.sleep(0.05)
    assert (await client.post(f"/admin/live/runs/{stopped}/stop/", {"reason": "too long"})).status_code == 302
    frames = await receive_until_finished(ws, stopped)
    assert [f["status"] for f in frames if f["type"] == "execution.finished"] == ["cancelled"]
    kept = await run(ws, "print(x + 1)")
    frames = await receive_until_finished(ws, kept)
    assert "42\n" in "".join(f.get("text", "") for f in frames if f.get("kind") == "stdout")  # same sandbox, same variables

    killed = await run(ws, "import time\ntime.sleep(60)")
    while not await Execution.objects.filter(pk=killed, status="running").aexists():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert (await client.post(f"/admin/live/sessions/{alice_session.pk}/kill/", {"reason": "exam over"})).status_code == 302
    frames = await receive_until_finished(ws, killed)
    assert [f["status"] for f in frames if f["type"] == "execution.finished"] == ["killed"]
    assert any(f.get("text") == "An administrator stopped this sandbox: exam over.\n" for f in frames), frames
    assert not await SandboxLease.objects.filter(session=alice_session, ended_at__isnull=True).aexists()
    kinds = [(a.kind, a.reason) async for a in AdminAction.objects.order_by("created_at")]
    assert kinds == [("stop_run", "too long"), ("kill_sandboxes", "exam over")]
