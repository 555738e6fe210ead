"""The admin usage view: staff only (404 for everyone else), the CSV says what the page says,
sorting, the drill-down's filter and pages, budget alerts, and audited admin actions."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from runner.models import AdminAction, BudgetAlert, ChatSession, Execution, SandboxLease, UserQuota
from runner.services.quotas import budget_alerts_record_sync

pytestmark = pytest.mark.django_db

PRICES = {"E2B_PRICE_PER_VCPU_S": 0.001, "E2B_PRICE_PER_GIB_S": 0.0, "LOCAL_PRICE_PER_VCPU_S": 0.0, "LOCAL_PRICE_PER_GIB_S": 0.0}


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def usage_data(alice, bob, alice_session, bob_session) -> None:
    now = timezone.now()
    SandboxLease.objects.create(user=alice, session=alice_session, backend="e2b", sandbox_id="a1", vcpus=2, memory_mb=512,
                                started_at=now - timedelta(seconds=600), ended_at=now - timedelta(seconds=300))
    SandboxLease.objects.create(user=bob, session=bob_session, backend="local", sandbox_id="b1", vcpus=1, memory_mb=512,
                                started_at=now - timedelta(seconds=90), ended_at=now - timedelta(seconds=30))
    for seq, status in enumerate(["succeeded", "failed", "timed_out"], start=1):
        Execution.objects.create(session=alice_session, seq=seq, code=f"print({seq})", language="python", user=alice,
                                 status=status, created_at=now - timedelta(seconds=500 - seq), duration_ms=1000 * seq)
    Execution.objects.create(session=bob_session, seq=1, code="1", language="python", user=bob, status="succeeded",
                             created_at=now - timedelta(seconds=60), duration_ms=250)


USAGE_URLS = ["/admin/usage/", "/admin/usage.csv", "/admin/usage/users/{alice}/"]
POST_URLS = ["/admin/usage/users/{alice}/kill/", "/admin/usage/runs/{run}/stop/"]


@pytest.mark.parametrize("who", ["anonymous", "alice", "inactive_staff"])
def test_non_staff_get_404_on_every_usage_url(who, alice, usage_data, django_user_model) -> None:
    user = {"anonymous": None, "alice": alice}.get(who)
    if who == "inactive_staff":
        user = django_user_model.objects.create_user("former", password="x", is_staff=True, is_active=False)
    client = client_for(user)
    run = Execution.objects.filter(user=alice).first()
    for url in USAGE_URLS:
        assert client.get(url.format(alice=alice.pk, run=run.pk)).status_code == 404, url
    for url in POST_URLS:
        response = client.post(url.format(alice=alice.pk, run=run.pk), {"reason": "x"})
        assert response.status_code == 404, url
    assert not AdminAction.objects.exists()


def _page_cells(html: str) -> list[list[tuple[str, str]]]:
    """The usage table's body and totals rows as (text, title) per cell."""
    table = html.split('id="usage-table"', 1)[1].split("</table>", 1)[0]
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("</thead>", 1)[1], re.S):
        cells = re.findall(r"<t[hd]([^>]*)>(.*?)</t[hd]>", tr, re.S)
        rows.append([(unescape(re.sub(r"<[^>]+>", "", body)).strip(), unescape((re.findall(r'title="([^"]*)"', attrs) or [""])[0])) for attrs, body in cells])
    return rows


def _csv_of_page(html: str) -> list[list[str]]:
    """What the CSV should hold for the page's rows: each cell's text, or its exact seconds (the hover) for durations."""
    return [[title.removesuffix(" s") if title else text for text, title in row] for row in _page_cells(html)]


def _by_label(row: list[str]) -> dict[str, str]:
    from runner.admin_usage import COLUMNS

    return dict(zip([label for _key, label in COLUMNS], row))


def _page_table(html: str) -> list[list[str]]:
    table = html.split('id="usage-table"', 1)[1].split("</table>", 1)[0]
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("</thead>", 1)[1], re.S):
        rows.append([unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)])
    return rows


@override_settings(**PRICES)
def test_the_csv_has_the_same_numbers_as_the_page(admin_user, usage_data) -> None:
    client = client_for(admin_user)
    page = client.get("/admin/usage/", {"preset": "7d", "sort": "runs", "dir": "desc"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Days follow UTC" in html and "<svg" in html and 'class="bar-e2b"' in html
    table = _page_table(html)
    alice_row = _by_label(table[0])
    assert (alice_row["User"], alice_row["Runs"], alice_row["Exec time"], alice_row["Sandbox time"]) == ("alice", "3", "6 s", "5 min")
    assert alice_row["Total $"] == "0.60"  # 300 s x 2 vCPU x $0.001
    assert _page_cells(html)[0][6] == ("5 min", "300 s") and _page_cells(html)[0][5] == ("6 s", "6.0 s")  # exact on hover
    assert table[-1][0] == "Total" and _by_label(table[-1])["Runs"] == "4"

    response = client.get("/admin/usage.csv", {"preset": "7d", "sort": "runs", "dir": "desc"})
    assert response.status_code == 200 and response.streaming and response["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert lines[0][:7] == ["User", "Name", "Email", "Classes", "Runs", "Exec s", "Sandbox s"]  # the header row first
    assert lines[1:] == _csv_of_page(html)  # the same figures, durations in exact seconds
    start, end = (timezone.localdate() - timedelta(days=6)).isoformat(), timezone.localdate().isoformat()
    assert response["Content-Disposition"] == f'attachment; filename="usage-{start}-to-{end}-days-in-UTC.csv"'


@pytest.mark.parametrize("username", ["-2+3", "=1+1", "@x", "+SUM(1)", "\tx", "\r=1"])
def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(admin_user, django_user_model, username: str) -> None:
    user = django_user_model.objects.create_user(username, password="x")
    session = ChatSession.objects.create(owner=user, title="t")
    Execution.objects.create(session=session, seq=1, code="1", language="python", user=user, status="succeeded", duration_ms=1)
    response = client_for(admin_user).get("/admin/usage.csv", {"preset": "today"})
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    (row,) = [line for line in lines if line[0].endswith(username)]
    assert row[0] == "'" + username and row[4] == "1"
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for line in lines for cell in line)
    assert lines[0][0] == "User" and lines[1] == row


def test_sorting_by_a_column_reorders_the_table(admin_user, usage_data) -> None:
    client = client_for(admin_user)
    by_runs_asc = _page_table(client.get("/admin/usage/", {"preset": "7d", "sort": "runs", "dir": "asc"}).content.decode())
    by_runs_desc = _page_table(client.get("/admin/usage/", {"preset": "7d", "sort": "runs", "dir": "desc"}).content.decode())
    assert [r[0] for r in by_runs_asc[:-1]] == ["bob", "alice"] and [r[0] for r in by_runs_desc[:-1]] == ["alice", "bob"]


def test_bad_dates_fall_back_to_seven_days_and_say_so(admin_user, usage_data) -> None:
    html = client_for(admin_user).get("/admin/usage/", {"start": "2026-13-40", "end": "x"}).content.decode()
    assert "Dates are YYYY-MM-DD" in html and "alice" in html


def test_the_admin_index_links_to_the_usage_page(admin_user) -> None:
    assert 'href="/admin/usage/"' in client_for(admin_user).get("/admin/").content.decode()


def test_drill_down_lists_a_users_runs_filtered_by_status(admin_user, alice, usage_data) -> None:
    client = client_for(admin_user)
    everything = client.get(f"/admin/usage/users/{alice.pk}/", {"preset": "7d"})
    assert everything.status_code == 200 and everything.context["page"].paginator.count == 3
    failed = client.get(f"/admin/usage/users/{alice.pk}/", {"preset": "7d", "status": "failed"})
    assert [run.status for run, _d, _c in failed.context["run_rows"]] == ["failed"]
    assert "print(2)" in failed.content.decode() and "print(1)" not in failed.content.decode()


@override_settings(**PRICES)
def test_budget_alerts_are_recorded_once_and_shown(admin_user, alice, usage_data) -> None:
    UserQuota.objects.create(user=alice, usd_per_month=Decimal("0.70"))  # spent $0.60: 85%
    assert [a.percent for a in budget_alerts_record_sync()] == [80]
    assert budget_alerts_record_sync() == []  # once
    UserQuota.objects.filter(user=alice).update(usd_per_month=Decimal("0.60"))
    assert [a.percent for a in budget_alerts_record_sync()] == [100]
    assert BudgetAlert.objects.filter(user=alice).count() == 2
    html = client_for(admin_user).get("/admin/usage/", {"preset": "month"}).content.decode()
    assert "reached 80% of $0.70" in html and "reached 100% of $0.60" in html


def test_an_admin_stop_of_an_ended_run_is_recorded_with_who_and_why(admin_user, alice, usage_data) -> None:
    run = Execution.objects.filter(user=alice).first()
    client = client_for(admin_user)
    refused = client.post(f"/admin/usage/runs/{run.pk}/stop/", {"reason": ""})
    assert refused.status_code == 302 and not AdminAction.objects.exists()
    assert client.post(f"/admin/usage/runs/{run.pk}/stop/", {"reason": "runaway loop"}).status_code == 302
    action = AdminAction.objects.get()
    assert (action.actor, action.target_user, action.kind, action.reason) == (admin_user, alice, "stop_run", "runaway loop")
    assert "already ended" in action.outcome and action.execution_id == run.pk


def test_the_chart_stacks_local_on_e2b_and_scales_to_the_dearest_day() -> None:
    from datetime import date

    from runner.admin_usage import cost_chart
    from runner.selectors.usage import DayCost

    chart = cost_chart([DayCost(date(2026, 3, 1), 2.0, 1.0, 0, 0), DayCost(date(2026, 3, 2), 1.5, 0.0, 0, 0), DayCost(date(2026, 3, 3), 0, 0, 0, 0)])
    plot_h = chart.baseline_y - 12
    e2b, local, second = chart.bars
    assert (e2b.backend, local.backend, second.backend) == ("e2b", "local", "e2b")
    assert e2b.height == pytest.approx(plot_h * 2 / 3, abs=0.1) and local.height == pytest.approx(plot_h / 3, abs=0.1)
    assert e2b.y + e2b.height == pytest.approx(chart.baseline_y, abs=0.1)  # E2B sits on the axis
    assert local.y + local.height == pytest.approx(e2b.y, abs=0.1)  # local on top of it
    assert second.height == pytest.approx(plot_h / 2, abs=0.1) and chart.max_usd == "3.00"
    assert "2026-03-01 local: $1.00" == local.title and len(chart.bars) == 3  # an empty day draws nothing


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_after_real_runs_the_page_and_csv_match_the_database_to_the_second(connect, alice, admin_user, alice_session) -> None:
    from django.test import AsyncClient

    from runner import services
    from tests.fixtures_runs import receive, receive_until_finished, run

    ws = await connect(alice, alice_session)
    await receive(ws)
    for code in ("x = 1", "1 / 0"):
        await receive_until_finished(ws, await run(ws, code))
    await services.sandboxes_close_all(reason=SandboxLease.EndReason.CLOSED)
    lease = await SandboxLease.objects.aget(session=alice_session)
    runs = [r async for r in Execution.objects.filter(user=alice)]
    client = AsyncClient()
    await client.aforce_login(admin_user)
    html = (await client.get("/admin/usage/", {"preset": "today"})).content.decode()
    (row, totals) = _csv_of_page(html)
    assert row[0] == "alice" and row[4:7] == ["2", f"{sum(r.duration_ms for r in runs) / 1000:.1f}", f"{round(lease.billed_seconds)}"]
    assert _by_label(row)["Errors"] == "1"  # the ZeroDivisionError
    response = await client.get("/admin/usage.csv", {"preset": "today"})
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert lines[1:] == [row, totals]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_an_admin_kill_ends_the_students_run_with_the_admins_reason_not_as_their_error(connect, alice, admin_user, alice_session) -> None:
    """A real socket: the running run ends "killed" with "An administrator stopped this sandbox:
    <reason>.", the chip frame says so, and the usage table counts it apart from errors."""
    from runner.services import admin_actions
    from tests.fixtures_runs import receive, receive_until_finished, run

    ws = await connect(alice, alice_session)
    await receive(ws)
    execution_id = await run(ws, "import time\nprint('working', flush=True)\ntime.sleep(60)")
    while not await Execution.objects.filter(pk=execution_id, status="running").aexists():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    await admin_actions.admin_sandboxes_kill(actor=admin_user, user_id=alice.pk, reason="the exam is over")
    frames = await receive_until_finished(ws, execution_id)
    while not any(f["type"] == "sandbox.state" for f in frames):  # the chip's frame: before or after the end
        frames.append(await receive(ws))
    notes = [f["text"] for f in frames if f.get("type") == "execution.output" and f.get("kind") == "stderr"]
    assert "An administrator stopped this sandbox: the exam is over.\n" in notes, frames
    assert not any("closed while this ran" in text for text in notes)
    assert [f["status"] for f in frames if f["type"] == "execution.finished"] == ["killed"]
    chip = [f for f in frames if f.get("type") == "sandbox.state"]
    assert chip and chip[0]["state"] == "stopped" and chip[0]["text"] == "stopped by an administrator"
    assert (await Execution.objects.aget(pk=execution_id)).status == "killed"
    assert not await SandboxLease.objects.filter(session=alice_session, ended_at__isnull=True).aexists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_an_admin_kill_of_a_run_on_a_warm_sandbox_shows_only_the_admins_reason(connect, alice, admin_user, alice_session) -> None:
    """The session's second run starts on its warm sandbox while its row is stored (the pipelined
    start): killed mid-run, it reads like a first run's kill, with no "closed while this ran"."""
    from runner.services import admin_actions
    from tests.fixtures_runs import receive, receive_until_finished, run

    ws = await connect(alice, alice_session)
    await receive(ws)
    await receive_until_finished(ws, await run(ws, "x = 1"))
    execution_id = await run(ws, "import time\nprint('working', flush=True)\ntime.sleep(60)")
    frames = []
    while not any(f.get("type") == "execution.output" and f.get("kind") == "stdout" for f in frames):
        frames.append(await receive(ws))
    await admin_actions.admin_sandboxes_kill(actor=admin_user, user_id=alice.pk, reason="the exam is over")
    frames += await receive_until_finished(ws, execution_id)
    notes = [f["text"] for f in frames if f.get("type") == "execution.output" and f.get("kind") == "stderr"]
    assert notes == ["An administrator stopped this sandbox: the exam is over.\n"], frames
    assert [f["status"] for f in frames if f["type"] == "execution.finished"] == ["killed"]


def test_a_killed_run_is_not_counted_as_the_users_error(admin_user, alice, alice_session) -> None:
    Execution.objects.create(session=alice_session, seq=1, code="1", language="python", user=alice, status="failed", duration_ms=10)
    Execution.objects.create(session=alice_session, seq=2, code="2", language="python", user=alice, status="killed", duration_ms=10)
    table = _page_table(client_for(admin_user).get("/admin/usage/", {"preset": "today"}).content.decode())
    headers = [label for _key, label in __import__("runner.admin_usage", fromlist=["COLUMNS"]).COLUMNS]
    row = dict(zip(headers, table[0]))
    assert row["Errors"] == "1" and row["Stopped by admin or budget"] == "1"


def test_durations_read_in_hours_and_minutes() -> None:
    from runner.admin_usage import duration_text

    assert duration_text(125 * 3600 + 32 * 60 + 59.9) == "125 h 32 min"
    assert (duration_text(3600), duration_text(7 * 60 + 3), duration_text(45.6), duration_text(0)) == ("1 h 0 min", "7 min", "45 s", "0 s")


def test_users_show_their_full_name_email_and_classes_and_each_class_has_its_total(admin_user, alice, bob, usage_data) -> None:
    from runner.models import Classroom

    alice.first_name, alice.last_name, alice.email = "Alice", "Liddell", "alice@example.org"
    alice.save()
    maths, physics = Classroom.objects.create(name="Maths 7B"), Classroom.objects.create(name="Physics")
    maths.students.add(alice, bob)
    physics.students.add(alice)
    html = client_for(admin_user).get("/admin/usage/", {"preset": "7d"}).content.decode()
    rows = {row[0]: _by_label(row) for row in _page_table(html)}
    assert (rows["alice"]["Name"], rows["alice"]["Email"], rows["alice"]["Classes"]) == ("Alice Liddell", "alice@example.org", "Maths 7B, Physics")
    assert rows["bob"]["Name"] == "" and rows["bob"]["Classes"] == "Maths 7B"

    classes = html.split('id="usage-classes"', 1)[1].split("</table>", 1)[0]
    cells = {r[0]: r for r in (
        [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", classes.split("</thead>", 1)[1], re.S)
    )}
    # Maths: alice (3 runs, 300 s) + bob (1 run, 60 s); Physics: alice alone. A student counts in each class.
    assert cells["Maths 7B"][1:5] == ["2", "4", "6 s", "6 min"] and cells["Maths 7B"][6] == "3 min"
    assert cells["Physics"][1:5] == ["1", "3", "6 s", "5 min"]
    assert "counts fully in each" in html

    one_class = client_for(admin_user).get("/admin/usage/", {"preset": "7d", "classroom": physics.pk}).content.decode()
    table = _page_table(one_class)
    assert [row[0] for row in table] == ["alice", "Total: Physics"] and _by_label(table[-1])["Runs"] == "3"
    csv_lines = list(csv.reader(io.StringIO(b"".join(client_for(admin_user).get(
        "/admin/usage.csv", {"preset": "7d", "classroom": physics.pk}).streaming_content).decode())))
    assert [line[0] for line in csv_lines[1:]] == ["alice", "Total: Physics"]


def test_with_a_local_price_of_0_the_chart_shows_sandbox_hours_by_backend_and_toggles_to_cost(admin_user, usage_data) -> None:
    client = client_for(admin_user)
    html = client.get("/admin/usage/", {"preset": "7d"}).content.decode()  # the default prices: local free, E2B priced
    assert '<svg class="usage-chart" data-measure="usd"' in html
    with override_settings(E2B_PRICE_PER_VCPU_S=0.0, E2B_PRICE_PER_GIB_S=0.0, LOCAL_PRICE_PER_VCPU_S=0.0, LOCAL_PRICE_PER_GIB_S=0.0):
        html = client.get("/admin/usage/", {"preset": "7d"}).content.decode()
        chart = html.split('<svg class="usage-chart"', 1)[1].split("</svg>", 1)[0]
        assert 'data-measure="hours"' in chart and "$0.00" not in chart and "Sandbox-hours per day" in html
        assert 'class="bar-e2b"' in chart and 'class="bar-local"' in chart  # stacked by backend
        assert "e2b: 0.1 h" in chart  # alice's 300 s
        toggle = html.split('id="usage-chart-toggle"', 1)[1].split("</p>", 1)[0]
        assert 'data-measure="usd"' in toggle and "chart=usd" in toggle
        cost = client.get("/admin/usage/", {"preset": "7d", "chart": "usd"}).content.decode()
        assert '<svg class="usage-chart" data-measure="usd"' in cost and "Cost per day" in cost


def test_the_date_range_survives_a_kill_and_a_stop(admin_user, alice, usage_data) -> None:
    client = client_for(admin_user)
    SandboxLease.objects.create(user=alice, backend="local", sandbox_id="open-one")  # so the page offers Kill
    page = client.get(f"/admin/usage/users/{alice.pk}/", {"start": "2026-01-01", "end": "2026-01-31", "status": "failed"}).content.decode()
    assert f'action="/admin/usage/users/{alice.pk}/kill/?start=2026-01-01&amp;end=2026-01-31&amp;status=failed"' in page
    killed = client.post(f"/admin/usage/users/{alice.pk}/kill/?start=2026-01-01&end=2026-01-31&status=failed", {"reason": "exam over"})
    assert killed.status_code == 302 and killed["Location"] == f"/admin/usage/users/{alice.pk}/?start=2026-01-01&end=2026-01-31&status=failed"
    run = Execution.objects.filter(user=alice).first()
    stopped = client.post(f"/admin/usage/runs/{run.pk}/stop/?preset=month", {"reason": "loop"})
    assert stopped["Location"] == f"/admin/usage/users/{alice.pk}/?preset=month"
    refused = client.post(f"/admin/usage/runs/{run.pk}/stop/?start=2026-01-01&end=2026-01-31", {"reason": ""})
    assert refused["Location"].endswith("?start=2026-01-01&end=2026-01-31")


def test_a_from_date_after_the_to_date_gets_a_clear_message(admin_user, usage_data) -> None:
    html = unescape(client_for(admin_user).get("/admin/usage/", {"start": "2026-03-09", "end": "2026-03-02"}).content.decode())
    assert "“From” (2026-03-09) is after “to” (2026-03-02)" in html and "alice" in html


def test_a_users_page_names_them_fully(admin_user, alice, usage_data) -> None:
    alice.first_name, alice.last_name, alice.email = "Alice", "Liddell", "alice@example.org"
    alice.save()
    html = unescape(client_for(admin_user).get(f"/admin/usage/users/{alice.pk}/", {"preset": "7d"}).content.decode())
    assert "Usage of Alice Liddell <alice@example.org> (alice)" in html
    days = html.split('id="usage-days"', 1)[1].split("</table>", 1)[0]
    assert '<td title="300 s">5 min</td>' in days and '<td title="6.0 s">6 s</td>' in days
