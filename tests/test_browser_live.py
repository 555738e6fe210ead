"""The admin's live sandboxes (/admin/live/) in headless Chromium, against a real Daphne and a real
kernel: a student's sandbox appears without a reload with its CPU and memory from its cgroup, the
table sorts, a reason being typed survives the refresh, and Stop then Kill work, asking why."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from runner.models import AdminAction, SandboxLease
from tests.fixtures_browser import PASSWORD, log_in_and_start_session, run, wait_finished

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

BUSY = "block = bytearray(100 * 1024 * 1024)\nfor i in range(0, len(block), 4096): block[i] = 1\nimport time\nt = time.time()\nwhile time.time() - t < 90: pass"
ROW = "#live-table tbody tr[data-lease]"


def _admin_page(chromium_browser, live_daphne):
    get_user_model().objects.create_superuser("boss", password=PASSWORD)
    context = chromium_browser.new_context(base_url=live_daphne, viewport={"width": 1366, "height": 768})
    context.set_default_timeout(30_000)
    admin = context.new_page()
    admin.errors = []
    admin.on("pageerror", lambda exc: admin.errors.append(str(exc)))
    admin.goto("/admin/login/?next=/admin/")
    admin.fill("#id_username", "boss")
    admin.fill("#id_password", PASSWORD)
    admin.click("input[type=submit]")
    admin.wait_for_url("**/admin/")
    return admin


def test_a_students_sandbox_appears_live_with_its_figures_and_stop_then_kill_ask_why(chromium_browser, live_daphne, page, alice) -> None:
    admin = _admin_page(chromium_browser, live_daphne)
    try:
        admin.get_by_role("link", name="Live sandboxes", exact=False).first.click()
        admin.wait_for_url("**/admin/live/")
        assert "No sandbox is live." in admin.locator("#live-table").inner_text()
        assert admin.locator("#live-processes tbody tr").count() >= 1  # this Daphne's heartbeat

        log_in_and_start_session(page)
        busy = run(page, BUSY, wait=False)
        busy.locator(".status-line.running").wait_for()

        row = admin.locator(ROW).first
        row.wait_for(timeout=20_000)  # no reload: the page polls live.json
        assert row.locator('[data-col="owner"]').inner_text() == alice.get_full_name()
        admin.wait_for_function(
            """() => { const r = document.querySelector('#live-table tbody tr[data-lease]');
                 const memory = r && r.querySelector('[data-col=memory]').textContent;
                 // the 100 MB the run holds, from its cgroup (a reading may predate the allocation)
                 return r && /%$/.test(r.querySelector('[data-col=cpu]').textContent)
                   && / MiB of /.test(memory) && parseInt(memory.replace(/,/g, ''), 10) >= 90; }""",
            timeout=40_000,
        )
        assert "running" in row.locator('[data-col="run"]').inner_text()
        assert admin.locator("#live-summary").inner_text().startswith("1 live sandbox")

        admin.locator('#live-table thead a[data-sort="cpu"]').click()
        admin.wait_for_url("**sort=cpu**")
        assert admin.locator("#live-table thead th.sorted").get_attribute("aria-sort") == "descending"

        reason = admin.locator(f"{ROW} input[name=reason]").first
        reason.wait_for()
        reason.fill("runaway loop")
        before = admin.locator(".live").get_attribute("data-updated")
        admin.wait_for_function(
            f"() => document.querySelector('.live').dataset.updated && document.querySelector('.live').dataset.updated !== {json.dumps(before)}",
            timeout=20_000,
        )
        assert reason.input_value() == "runaway loop"  # a refresh keeps what is being typed

        admin.locator(f"{ROW} button.live-stop").first.click()
        admin.wait_for_url("**/admin/live/?sort=cpu**")
        assert "stop sent" in admin.locator("ul.messagelist").inner_text()
        wait_finished(busy)
        assert "stopped" in busy.locator(".status-line").inner_text()
        assert admin.locator(ROW).count() == 1  # a Stop keeps the sandbox

        admin.locator(f"{ROW} button.live-kill").first.click()  # no reason: the browser asks for one
        assert admin.locator(f"{ROW} input[name=reason]").first.evaluate("e => !e.validity.valid")
        admin.locator(f"{ROW} input[name=reason]").first.fill("exam over")
        admin.locator(f"{ROW} button.live-kill").first.click()
        admin.wait_for_url("**/admin/live/?sort=cpu**")
        assert "closed the sandbox of session" in admin.locator("ul.messagelist").inner_text()
        assert admin.locator(ROW).count() == 0
        page.wait_for_function("() => document.querySelector('#sandbox-state').dataset.state === 'stopped'")
        assert not SandboxLease.objects.filter(session__owner=alice, ended_at__isnull=True).exists()
        assert list(AdminAction.objects.order_by("created_at").values_list("kind", "reason")) == [
            ("stop_run", "runaway loop"), ("kill_sandboxes", "exam over"),
        ]
        fits = "() => document.documentElement.scrollWidth <= window.innerWidth"
        assert admin.evaluate(fits)
        assert admin.errors == [] and not page.errors
    finally:
        admin.context.close()
