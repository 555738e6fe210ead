"""The files panel in headless Chromium, against a real Daphne and real kernels: a CSV dropped on the
page is read with pandas, the plot the code saves shows in the panel, previews, and downloads intact.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from runner.sandboxes.local.workspace import workspace_path
from tests.fixtures_browser import log_in_and_start_session, run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

CSV = "day,temp\n1,3.5\n2,7.25\n3,5.0\n"


def drop_file(page, name: str, content: str, mime: str) -> None:
    """Drag a file from "the desktop" onto the conversation and drop it, as a user does."""
    transfer = page.evaluate_handle(
        "([name, content, mime]) => { const dt = new DataTransfer(); dt.items.add(new File([content], name, {type: mime})); return dt; }",
        [name, content, mime],
    )
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event("#conversation", event, {"dataTransfer": transfer})


def test_drop_a_csv_analyse_it_and_download_the_plot(page, tmp_path: Path) -> None:
    log_in_and_start_session(page)
    session_id = re.search(r"/sessions/([0-9a-f-]{36})/", page.url).group(1)

    drop_file(page, "weather.csv", CSV, "text/csv")
    panel = page.locator("#files-panel")
    panel.locator('#files-list tr[data-name="weather.csv"]').wait_for()
    assert (workspace_path(session_id) / "weather.csv").read_text() == CSV

    turn = run(page, "import pandas as pd\ndf = pd.read_csv('weather.csv')\nprint(df['temp'].sum())\n"
                     "ax = df.plot(x='day', y='temp')\nax.figure.savefig('plot.png')")
    assert "15.75" in turn.locator(".output").inner_text()
    row = panel.locator('#files-list tr[data-name="plot.png"]')
    row.wait_for()  # the panel refreshed by itself when the run finished

    row.get_by_role("button", name="plot.png", exact=True).click()
    preview = page.locator("#file-preview")
    image = preview.locator("img")
    image.wait_for()
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert image.evaluate("img => img.complete && img.naturalWidth > 100")
    preview.get_by_role("button", name="Close").click()

    with page.expect_download() as download_info:
        row.get_by_label("Download plot.png").click()
    downloaded = Path(download_info.value.path()).read_bytes()
    assert downloaded.startswith(b"\x89PNG\r\n\x1a\n")
    assert downloaded == (workspace_path(session_id) / "plot.png").read_bytes()
    assert page.errors == []


def test_an_existing_name_asks_before_it_replaces(page) -> None:
    log_in_and_start_session(page)
    session_id = re.search(r"/sessions/([0-9a-f-]{36})/", page.url).group(1)
    page.get_by_role("button", name="Files").click()
    page.locator("#files-panel[data-loaded]").wait_for()
    page.set_input_files("#files-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"first"}])
    page.locator('#files-list tr[data-name="notes.txt"]').wait_for()
    page.set_input_files("#files-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"second"}])
    upload = page.locator('#files-uploads li[data-state="exists"]')
    assert "already exists" in upload.inner_text()
    assert (workspace_path(session_id) / "notes.txt").read_bytes() == b"first"
    upload.get_by_role("button", name="Replace").click()
    deadline = time.monotonic() + 20
    while (workspace_path(session_id) / "notes.txt").read_bytes() != b"second" and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert (workspace_path(session_id) / "notes.txt").read_bytes() == b"second"
    assert page.locator('#files-uploads li[data-state="exists"]').count() == 0
    assert page.errors == []


def test_the_packages_dialog_installs_by_name_and_lists_it(page) -> None:
    log_in_and_start_session(page)
    page.locator("#session-menu summary").click()
    page.get_by_role("button", name="Packages…").click()
    dialog = page.locator("#packages-dialog")
    dialog.get_by_label("Install from PyPI").fill("--index-url=http://evil.example/")
    dialog.get_by_role("button", name="Install").click()
    assert "is not a package name" in dialog.locator("#packages-error").inner_text()
    dialog.get_by_label("Install from PyPI").fill("humanize==4.11.0")
    dialog.get_by_role("button", name="Install").click()
    turn = page.locator("#turns > li.turn").first
    turn.locator(".status-line.ok").wait_for()
    assert "Successfully installed humanize-4.11.0" in turn.locator(".output").inner_text()
    page.locator("#session-menu summary").click()
    page.get_by_role("button", name="Packages…").click()
    dialog.locator(".package-name", has_text="humanize").wait_for()
    assert page.errors == []
