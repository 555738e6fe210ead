"""The chat page over HTTP: who may see what, session create/rename, history render, exports.

Fixtures: alice owns a session with a few stored runs; bob is another student who must never see it.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from django.test import Client, override_settings
from django.utils import timezone

from runner.models import ChatSession, Execution, OutputChunk

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def _run(session: ChatSession, seq: int, code: str, status: str = "succeeded", **fields) -> Execution:
    now = timezone.now()
    return Execution.objects.create(
        session=session, seq=seq, code=code, language="python", user=session.owner, status=status,
        started_at=now, finished_at=now, duration_ms=fields.pop("duration_ms", 120), **fields,
    )


@pytest.fixture
def alice_session(alice) -> ChatSession:
    session = ChatSession.objects.create(owner=alice, title="Alice's numbers")
    first = _run(session, 1, "x = 6 * 7\nprint(x)")
    OutputChunk.objects.create(execution=first, index=0, kind="stdout", text="42\n")
    OutputChunk.objects.create(execution=first, index=1, kind="stderr", text="a warning\n")
    OutputChunk.objects.create(execution=first, index=2, kind="stdout", text="\x1b[31mred\x1b[0m after\n")
    second = _run(session, 2, "1/0", status="failed", error_name="ZeroDivisionError", error_value="division by zero")
    OutputChunk.objects.create(
        execution=second, index=0, kind="error", text="",
        data={"ename": "ZeroDivisionError", "evalue": "division by zero",
              "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"]},
    )
    third = _run(session, 3, "display(HTML(...))", truncated=True)
    OutputChunk.objects.create(
        execution=third, index=0, kind="result", text="<table>",
        data={"text/html": "<table><tr><td onclick='steal()'>1</td></tr></table><script>window.pwned=1</script>"
                           "<img src=x onerror=alert(1)>",
              "text/plain": "<table>"},
    )
    OutputChunk.objects.create(
        execution=third, index=1, kind="result", text="",
        data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
    )
    OutputChunk.objects.create(
        execution=third, index=2, kind="result", text="",
        data={"image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"},
    )
    return session


def test_every_page_requires_login(client, alice_session) -> None:
    for url in ["/", f"/sessions/{alice_session.id}/", f"/sessions/{alice_session.id}/export.ipynb",
                f"/sessions/{alice_session.id}/export.md"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/"), url
    assert client.post("/sessions/new/").status_code == 302
    assert ChatSession.objects.count() == 1


def test_login_page_renders_and_logs_in(client, alice) -> None:
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'for="id_username"' in page.content and b'for="id_password"' in page.content
    response = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 302 and response["Location"] == "/"


def test_logout_is_a_post_form(alice_client) -> None:
    page = alice_client.get("/")
    assert b'action="/accounts/logout/"' in page.content
    assert alice_client.post("/accounts/logout/").status_code in (200, 302)
    assert alice_client.get("/").status_code == 302


def test_student_cannot_open_other_students_session(bob_client, alice_session) -> None:
    base = f"/sessions/{alice_session.id}/"
    assert bob_client.get(base).status_code == 404
    assert bob_client.get(base + "export.ipynb").status_code == 404
    assert bob_client.get(base + "export.md").status_code == 404
    execution = alice_session.executions.first()
    assert bob_client.get(f"{base}executions/{execution.id}/output/").status_code == 404
    assert bob_client.post(base + "rename/", {"title": "mine now"}).status_code == 404
    alice_session.refresh_from_db()
    assert alice_session.title == "Alice's numbers"


def test_sidebar_lists_only_own_sessions(bob_client, alice_session, bob) -> None:
    ChatSession.objects.create(owner=bob, title="Bob's scratch")
    page = bob_client.get("/").content.decode()
    assert "Bob&#x27;s scratch" in page
    assert "Alice" not in page


def test_sidebar_is_newest_activity_first_and_filters(alice_client, alice) -> None:
    old = ChatSession.objects.create(owner=alice, title="Old one", last_activity_at=timezone.now() - timezone.timedelta(days=2))
    new = ChatSession.objects.create(owner=alice, title="New one")
    page = alice_client.get(f"/sessions/{old.id}/").content.decode()
    assert page.index("New one") < page.index("Old one</span>")
    filtered = alice_client.get(f"/sessions/{new.id}/?q=old").content.decode()
    assert 'class="session-title">Old one<' in filtered
    assert 'class="session-title">New one<' not in filtered


def test_home_without_sessions_prompts_to_start_one(alice_client) -> None:
    page = alice_client.get("/")
    assert page.status_code == 200
    assert b"Start a session" in page.content


def test_new_session_redirects_to_it(alice_client, alice) -> None:
    response = alice_client.post("/sessions/new/", {"language": "bash"})
    session = ChatSession.objects.get(owner=alice)
    assert response.status_code == 302
    assert response["Location"] == f"/sessions/{session.id}/"
    assert session.language == "bash"


def test_new_session_refuses_an_unknown_language(alice_client) -> None:
    assert alice_client.post("/sessions/new/", {"language": "cobol"}).status_code == 400
    assert ChatSession.objects.count() == 0


def test_new_session_is_post_only(alice_client) -> None:
    assert alice_client.get("/sessions/new/").status_code == 405


def test_rename_with_a_form_redirects(alice_client, alice_session) -> None:
    response = alice_client.post(f"/sessions/{alice_session.id}/rename/", {"title": "  Prime   numbers "})
    assert response.status_code == 302
    alice_session.refresh_from_db()
    assert alice_session.title == "Prime numbers"


def test_rename_from_the_page_answers_json(alice_client, alice_session) -> None:
    url = f"/sessions/{alice_session.id}/rename/"
    ok = alice_client.post(url, {"title": "Plots"}, HTTP_ACCEPT="application/json")
    assert ok.json() == {"ok": True, "title": "Plots"}
    empty = alice_client.post(url, {"title": "   "}, HTTP_ACCEPT="application/json")
    assert empty.status_code == 400 and empty.json()["ok"] is False


def test_history_is_rendered_on_the_server(alice_client, alice_session) -> None:
    page = alice_client.get(f"/sessions/{alice_session.id}/").content.decode()
    assert "x = 6 * 7" in page
    assert '<span class="stdout">42\n</span><span class="stderr">a warning\n</span>' in page
    assert '<span class="ansi-fg-1">red</span> after' in page
    # The status symbols are drawn by the page's SVG icons; the symbol stays in the text, unpainted.
    assert '<span class="status-icon icon-ok" aria-hidden="true">✓</span> 0.12 s' in page
    assert '<span class="status-icon icon-err" aria-hidden="true">✗</span> ZeroDivisionError' in page
    assert "Output stopped at 2 MiB; the run went on." in page
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page


def test_rich_html_is_sanitised(alice_client, alice_session) -> None:
    page = alice_client.get(f"/sessions/{alice_session.id}/").content.decode()
    assert "<td>1</td>" in page
    assert "window.pwned" not in page
    assert "onerror" not in page and "onclick" not in page
    turns = page[page.index('<ol class="turns"') : page.index("</ol>", page.index('<ol class="turns"'))]
    assert "<svg" not in turns  # the output's SVG only ever as an <img> data URL (the page's icons are its own)
    assert 'src="data:image/svg+xml;base64,' in page


def test_page_sends_a_strict_script_policy(alice_client, alice_session) -> None:
    response = alice_client.get(f"/sessions/{alice_session.id}/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert b"<script>" not in response.content  # only src= scripts and the JSON data block


def test_page_data_tells_the_script_where_to_resume(alice_client, alice_session) -> None:
    page = alice_client.get(f"/sessions/{alice_session.id}/").content.decode()
    start = page.index('<script id="page-data" type="application/json">') + len('<script id="page-data" type="application/json">')
    data = json.loads(page[start : page.index("</script>", start)])
    last_run = alice_session.executions.get(seq=3)
    assert data["last"] == {"execution_id": last_run.id, "index": 2}
    assert data["ws_path"] == f"/ws/sessions/{alice_session.id}/"


def test_output_fragment_returns_one_chunk_sanitised(alice_client, alice_session) -> None:
    run = alice_session.executions.get(seq=3)
    response = alice_client.get(f"/sessions/{alice_session.id}/executions/{run.id}/output/?index=0")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<td>1</td>" in body and "script" not in body and "img" in body and "onerror" not in body


def test_export_ipynb_is_a_valid_v4_notebook(alice_client, alice_session) -> None:
    response = alice_client.get(f"/sessions/{alice_session.id}/export.ipynb")
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    notebook = nbformat.reads(response.content.decode(), as_version=4)
    nbformat.validate(notebook)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.source for c in code_cells] == ["x = 6 * 7\nprint(x)", "1/0", "display(HTML(...))"]
    assert code_cells[0].outputs[0] == {"output_type": "stream", "name": "stdout", "text": "42\n"}
    assert code_cells[1].outputs[0].output_type == "error"
    assert code_cells[1].outputs[0].ename == "ZeroDivisionError"


def test_export_markdown_has_code_and_output(alice_client, alice_session) -> None:
    response = alice_client.get(f"/sessions/{alice_session.id}/export.md")
    text = response.content.decode()
    assert text.startswith("# Alice's numbers")
    assert "```python\nx = 6 * 7\nprint(x)\n```" in text
    assert "42\na warning\nred after" in text
    assert "\x1b" not in text
    assert "![Image output 1 of run 3](data:image/png;base64,iVBORw0KGgo=)" in text  # images inline, not "[image/png output]"
    assert "![Image output 2 of run 3](data:image/svg+xml;base64," in text


@override_settings(SANDBOX_BACKEND="nonsense")
def test_degraded_mode_shows_the_reason_and_disables_the_composer(alice_client, alice_session) -> None:
    page = alice_client.get(f"/sessions/{alice_session.id}/").content.decode()
    assert "Code can't run right now:" in page and "Your history is still here." in page
    assert "nonsense" in page
    assert '<textarea id="composer-code" rows="3" spellcheck="false" autocapitalize="off"' in page
    assert "disabled></textarea>" in page
    assert "x = 6 * 7" in page


def test_restart_sandbox_redirects_back_to_the_session(alice_client, alice_session) -> None:
    response = alice_client.post(f"/sessions/{alice_session.id}/restart/")
    assert response.status_code == 302 and response["Location"] == f"/sessions/{alice_session.id}/"


def test_restart_sandbox_refuses_while_a_run_is_going(alice_client, alice_session) -> None:
    _run(alice_session, 4, "while True: pass", status="running")
    response = alice_client.post(f"/sessions/{alice_session.id}/restart/")
    assert response.status_code == 409
    assert "Stop the running code first" in response.content.decode()


def test_student_cannot_restart_other_students_sandbox(bob_client, alice_session) -> None:
    assert bob_client.post(f"/sessions/{alice_session.id}/restart/").status_code == 404


def test_rich_html_cannot_borrow_the_pages_classes_ids_or_styles(alice_client, alice_session) -> None:
    run = _run(alice_session, 4, "display(HTML(...))")
    OutputChunk.objects.create(
        execution=run, index=0, kind="result", text="",
        data={"text/html": '<div class="toast" id="composer" style="position:fixed">Reconnecting…</div>'
                           '<table class="dataframe"><tr><td>1</td></tr></table>'},
    )
    body = alice_client.get(f"/sessions/{alice_session.id}/executions/{run.id}/output/").content.decode()
    assert '<div>Reconnecting…</div>' in body
    assert '<table class="dataframe">' in body
    assert "toast" not in body and 'id="composer"' not in body and "position:fixed" not in body


def test_server_notes_in_the_output_show_once_as_notes(alice_client, alice_session) -> None:
    run = _run(alice_session, 4, "print('x' * 10**7)", truncated=True)
    OutputChunk.objects.create(execution=run, index=0, kind="stdout", text="xxxx")
    OutputChunk.objects.create(
        execution=run, index=1, kind="stderr", text="Output stopped at 2 MiB; the run went on.\n",
        data={"sandpit/notice": "truncated"},
    )
    body = alice_client.get(f"/sessions/{alice_session.id}/executions/{run.id}/output/").content.decode()
    assert body.count("Output stopped at 2 MiB; the run went on.") == 1
    assert '<p class="out-note trunc" role="note"' in body
    assert '<span class="stderr">Output stopped' not in body


def test_home_shows_the_most_recent_session(alice_client, alice_session, alice) -> None:
    ChatSession.objects.create(owner=alice, title="Older", last_activity_at=timezone.now() - timezone.timedelta(days=1))
    page = alice_client.get("/").content.decode()
    assert 'value="Alice&#x27;s numbers"' in page  # the header's title field
    assert "x = 6 * 7" in page


def test_markdown_results_are_rendered_and_sanitised(alice_client, alice_session) -> None:
    run = _run(alice_session, 4, "display(Markdown(...))")
    OutputChunk.objects.create(
        execution=run, index=0, kind="result", text="",
        data={"text/markdown": "# Title\n\n*em* <script>window.pwned=1</script> [x](javascript:alert(1))",
              "text/plain": "<Markdown>"},
    )
    body = alice_client.get(f"/sessions/{alice_session.id}/executions/{run.id}/output/?index=0").content.decode()
    assert "<h1>Title</h1>" in body and "<em>em</em>" in body
    assert "<script" not in body and "window.pwned" not in body and "href=\"javascript" not in body


def test_sessions_activity_lists_only_ones_own_sessions_with_their_running_state(alice_client, bob_client, alice_session) -> None:
    mine = alice_client.get("/sessions/activity.json").json()["sessions"]
    assert [s["id"] for s in mine] == [str(alice_session.id)]
    assert mine[0]["is_running"] is False and mine[0]["running_since"] is None and mine[0]["title"] == "Alice's numbers"
    assert bob_client.get("/sessions/activity.json").json() == {"sessions": []}
    assert Client().get("/sessions/activity.json").status_code == 302  # to the login page
