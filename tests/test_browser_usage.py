"""The admin usage page in headless Chromium: an admin logs in, sees the cost chart (SVG bars per
backend, no script needed), sorts the table by a column, and opens one user's runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from runner import services
from runner.models import Execution, SandboxLease

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

PASSWORD = "a-long-test-password-1"


@pytest.fixture
def spenders(transactional_db) -> None:
    User = get_user_model()
    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    now = timezone.now()
    for name, runs, lease_s, backend in (("ann", 3, 600, "e2b"), ("ben", 1, 3600, "e2b"), ("cat", 2, 900, "local")):
        user = User.objects.create_user(name, password=PASSWORD)
        session = services.session_create(owner=user, title=f"{name}'s")
        SandboxLease.objects.create(user=user, session=session, backend=backend, sandbox_id=f"{name}-1", vcpus=2, memory_mb=512,
                                    started_at=now - timedelta(seconds=lease_s + 60), ended_at=now - timedelta(seconds=60))
        for seq in range(1, runs + 1):
            Execution.objects.create(session=session, seq=seq, code=f"print({seq})", language="python", user=user,
                                     status="succeeded", created_at=now - timedelta(seconds=120 - seq), duration_ms=100 * seq)


def test_the_usage_page_shows_the_chart_and_sorts_by_a_column(chromium_browser, live_daphne, spenders) -> None:
    context = chromium_browser.new_context(base_url=live_daphne, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", "boss")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.get_by_role("link", name="Usage, cost and budgets").first.click()
        page.wait_for_url("**/admin/usage/")

        chart = page.locator("svg.usage-chart")
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        assert chart.locator("rect.bar-e2b").count() >= 1  # today's E2B cost (local is free by default)
        bar = chart.locator("rect.bar-e2b").last.bounding_box()
        assert bar is not None and bar["height"] > 10  # drawn, not a zero-height stub

        names = lambda: page.locator("#usage-table tbody th").all_inner_texts()  # noqa: E731
        assert names() == ["ben", "ann", "cat"]  # by cost, dearest first (cat's local time is free)
        page.locator("#usage-table thead a[data-sort=runs]").click()
        page.wait_for_url("**sort=runs**")
        assert names() == ["ann", "cat", "ben"]
        page.locator("#usage-table thead a[data-sort=runs]").click()  # again: ascending
        page.wait_for_url("**dir=asc**")
        assert names() == ["ben", "cat", "ann"]
        assert page.locator("#usage-table thead th.sorted").get_attribute("aria-sort") == "ascending"
        assert page.locator("#usage-table thead th.sorted a").get_attribute("data-sort") == "runs"

        page.get_by_role("link", name="ann").click()
        page.wait_for_url("**/admin/usage/users/**")
        assert page.locator("#usage-runs tbody tr").count() == 3
        assert errors == []
    finally:
        context.close()


# When a page is too wide: its widest elements, to say what to fix.
WIDEST_JS = """() => [...document.querySelectorAll('body *')].map(e => [e.tagName + '#' + e.id + '.' + e.className, Math.round(e.getBoundingClientRect().right)])
  .sort((a, b) => b[1] - a[1]).slice(0, 8)"""


COLUMNS_JS = """() => [document.querySelector('#usage-table').getBoundingClientRect().left,
  ...[...document.querySelectorAll('#usage-table thead th')].map(th => th.innerText + ':' + Math.round(th.getBoundingClientRect().width))]"""


def _log_in_as_boss(page) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def test_at_1366_px_the_pages_fit_and_the_totals_row_stays_in_view(chromium_browser, live_daphne, spenders) -> None:
    """A school's laptop: neither usage page scrolls sideways, and with 150 users the totals row
    is on screen at the top of the table as at its end."""
    User = get_user_model()
    ann = User.objects.get(username="ann")
    ann.first_name, ann.last_name, ann.email = "Annabel", "Fitzgerald-Montgomery", "annabel.fitzgerald-montgomery@school.example.org"
    ann.save()
    session = services.session_create(owner=ann, title="A very long session title " * 4)
    long_code = "import numpy as np\n" + "x = np.arange(1000).reshape(10, 100) * 3.14159 + np.sin(np.arange(1000)).reshape(10, 100)\n" * 5
    for seq in range(1, 4):
        Execution.objects.create(session=session, seq=seq, code=long_code, language="python", user=ann, status="running" if seq == 3 else "failed",
                                 error_name="ZeroDivisionError" if seq < 3 else "", duration_ms=1234)
    SandboxLease.objects.create(user=ann, session=session, backend="local", sandbox_id="ann-open")
    User.objects.bulk_create([User(username=f"student{i:03d}", first_name="Student", last_name=str(i)) for i in range(150)])
    now = timezone.now()
    extra = services.session_create(owner=User.objects.get(username="student000"), title="s")
    for i, user in enumerate(User.objects.filter(username__startswith="student")):
        SandboxLease.objects.create(user=user, session=extra, backend="local", sandbox_id=f"s{i}", started_at=now - timedelta(seconds=100), ended_at=now)

    context = chromium_browser.new_context(base_url=live_daphne, viewport={"width": 1366, "height": 768})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        _log_in_as_boss(page)
        page.goto("/admin/usage/?preset=7d")
        fits = "() => document.documentElement.scrollWidth <= window.innerWidth"
        assert page.evaluate(fits), page.evaluate(COLUMNS_JS)
        totals = page.locator("#usage-table tfoot tr.usage-totals th")
        page.locator("#usage-table thead").scroll_into_view_if_needed()
        box = totals.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 768 + 1, box  # pinned to the bottom of the screen
        assert totals.inner_text() == "Total"

        page.goto(f"/admin/usage/users/{ann.pk}/?preset=7d")
        assert page.evaluate(fits), page.evaluate(WIDEST_JS)
        assert page.locator("#usage-runs tbody tr").count() == 6  # the fixture's 3 and these 3
        assert errors == []
    finally:
        context.close()
