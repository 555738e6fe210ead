"""The admin lists runs, sessions and leases, and searches and filters them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from runner.models import Execution, SandboxLease

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def stored_run(alice_session) -> Execution:
    SandboxLease.objects.create(user=alice_session.owner, session=alice_session, backend="local", sandbox_id="abc123")
    return Execution.objects.create(
        session=alice_session, seq=1, code="print('needle')", language="python", user=alice_session.owner,
        status="failed", error_name="ZeroDivisionError", finished_at=timezone.now(),
    )


@pytest.mark.parametrize("path", ["/admin/runner/execution/", "/admin/runner/chatsession/", "/admin/runner/sandboxlease/", "/admin/runner/serverprocess/"])
def test_admin_lists_open_for_staff(admin_client_logged_in, stored_run, path) -> None:
    assert admin_client_logged_in.get(path).status_code == 200


def test_runs_are_searchable_by_user_and_filterable_by_status_and_language(admin_client_logged_in, stored_run) -> None:
    found = admin_client_logged_in.get("/admin/runner/execution/", {"q": "alice", "status__exact": "failed", "language__exact": "python"})
    assert found.status_code == 200 and found.context["cl"].result_count == 1
    missed = admin_client_logged_in.get("/admin/runner/execution/", {"status__exact": "succeeded"})
    assert missed.context["cl"].result_count == 0


def test_a_run_page_shows_its_output_inline(admin_client_logged_in, stored_run) -> None:
    assert admin_client_logged_in.get(f"/admin/runner/execution/{stored_run.pk}/change/").status_code == 200


def test_runs_leases_and_processes_are_read_only_records(admin_client_logged_in, stored_run) -> None:
    lease = SandboxLease.objects.get()
    for model, obj in [("execution", stored_run), ("sandboxlease", lease)]:
        assert admin_client_logged_in.get(f"/admin/runner/{model}/add/").status_code == 403
        assert admin_client_logged_in.get(f"/admin/runner/{model}/{obj.pk}/delete/").status_code == 403
        page = admin_client_logged_in.get(f"/admin/runner/{model}/{obj.pk}/change/")
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
        listing = admin_client_logged_in.get(f"/admin/runner/{model}/").content.decode()
        assert 'name="action"' not in listing  # no bulk delete
    before = stored_run.code
    admin_client_logged_in.post(f"/admin/runner/execution/{stored_run.pk}/change/", {"code": "print('changed')"})
    stored_run.refresh_from_db()
    assert stored_run.code == before


def test_records_have_readable_names_and_server_processes_are_spelled_right(admin_client_logged_in, stored_run) -> None:
    lease = SandboxLease.objects.get()
    assert str(lease) == f"local lease of “{stored_run.session.title}” by alice, 0 s so far"
    assert str(stored_run) == f"run 1 of “{stored_run.session.title}” (failed)"
    index = admin_client_logged_in.get("/admin/").content.decode()
    assert "Server processes" in index and "Server processs" not in index
    assert "SandboxLease object" not in admin_client_logged_in.get("/admin/runner/sandboxlease/").content.decode()


def test_a_local_lease_costs_nothing_at_e2b_prices(alice_session, settings) -> None:
    settings.E2B_PRICE_PER_VCPU_S = 0.001
    started = timezone.now() - timedelta(hours=1)
    local = SandboxLease.objects.create(user=alice_session.owner, session=alice_session, backend="local", sandbox_id="l", started_at=started, ended_at=timezone.now())
    e2b = SandboxLease.objects.create(user=alice_session.owner, session=alice_session, backend="e2b", sandbox_id="e", started_at=started, ended_at=timezone.now())
    assert local.estimated_cost_usd == 0
    assert e2b.estimated_cost_usd > 3
    assert str(local).endswith(", 60 min")


def test_a_run_page_shows_its_code_indented_and_its_output_coloured_not_raw_json(admin_client_logged_in, stored_run) -> None:
    from runner.models import OutputChunk

    stored_run.code = "def f():\n    return 1 / 0\nf()"
    stored_run.error_value = "division by zero"
    stored_run.traceback = ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"]
    stored_run.save()
    OutputChunk.objects.create(execution=stored_run, index=0, kind="stdout", text="\x1b[32mgreen\x1b[0m line\n")
    OutputChunk.objects.create(execution=stored_run, index=1, kind="error", data={
        "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"],
    })
    html = admin_client_logged_in.get(f"/admin/runner/execution/{stored_run.pk}/change/").content.decode()
    assert '<pre class="run-code" data-language="python">def f():\n    return 1 / 0\nf()</pre>' in html
    assert '<span class="ansi-fg-2">green</span> line' in html
    assert '<span class="ansi-fg-1">ZeroDivisionError</span>: division by zero' in html
    assert "\\u001b" not in html and "\x1b" not in html and "[0;31m" not in html
    assert "runner/admin_records.css" in html
    assert f'href="/sessions/{stored_run.session_id}/#run-{stored_run.pk}"' in html


def test_rich_output_in_a_run_page_is_sanitised(admin_client_logged_in, stored_run) -> None:
    from runner.models import OutputChunk

    OutputChunk.objects.create(execution=stored_run, index=0, kind="result", data={"text/html": "<b>bold</b><script>alert(1)</script>"})
    html = admin_client_logged_in.get(f"/admin/runner/execution/{stored_run.pk}/change/").content.decode()
    assert "<b>bold</b>" in html and "alert(1)" not in html


def test_sessions_cannot_be_deleted_and_link_to_the_chat(admin_client_logged_in, stored_run) -> None:
    session = stored_run.session
    assert admin_client_logged_in.get(f"/admin/runner/chatsession/{session.pk}/delete/").status_code == 403
    admin_client_logged_in.post(f"/admin/runner/chatsession/{session.pk}/delete/", {"post": "yes"})
    assert type(session).objects.filter(pk=session.pk).exists()
    page = admin_client_logged_in.get(f"/admin/runner/chatsession/{session.pk}/change/").content.decode()
    assert f'href="/sessions/{session.pk}/"' in page and "View as a chat" in page and "deletelink" not in page
    listing = admin_client_logged_in.get("/admin/runner/chatsession/").content.decode()
    assert 'value="delete_selected"' not in listing and f'href="/sessions/{session.pk}/"' in listing


def test_lists_are_newest_first_and_show_full_names(admin_client_logged_in, alice_session) -> None:
    alice = alice_session.owner
    alice.first_name, alice.last_name, alice.email = "Alice", "Liddell", "alice@example.org"
    alice.save()
    now = timezone.now()
    old = Execution.objects.create(session=alice_session, seq=1, code="1", language="python", user=alice, created_at=now - timedelta(days=1))
    new = Execution.objects.create(session=alice_session, seq=2, code="2", language="python", user=alice, created_at=now)
    page = admin_client_logged_in.get("/admin/runner/execution/")
    assert [r.pk for r in page.context["cl"].result_list] == [new.pk, old.pk]
    assert "Alice Liddell &lt;alice@example.org&gt; (alice)" in page.content.decode()
    SandboxLease.objects.create(user=alice, session=alice_session, backend="local", sandbox_id="old", started_at=now - timedelta(days=1))
    SandboxLease.objects.create(user=alice, session=alice_session, backend="local", sandbox_id="new", started_at=now)
    leases = admin_client_logged_in.get("/admin/runner/sandboxlease/").context["cl"].result_list
    assert [lease.sandbox_id for lease in leases] == ["new", "old"]
