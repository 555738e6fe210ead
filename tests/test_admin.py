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
