"""The admin lists runs, sessions and leases, and searches and filters them."""

from __future__ import annotations

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
