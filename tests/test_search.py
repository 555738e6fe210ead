"""Search over a user's own runs (FTS5 on SQLite, full-text search on Postgres: the same tests run on
whichever database the suite uses).

alice and bob both have runs with the word "zebra"; each must find only their own.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from runner import selectors, services
from runner.models import ChatSession, Execution, OutputChunk

pytestmark = pytest.mark.django_db


def make_run(session: ChatSession, seq: int, code: str, *outputs: str) -> Execution:
    run = Execution.objects.create(session=session, seq=seq, code=code, language="python", user=session.owner,
                                   status="succeeded", created_at=timezone.now())
    for index, text in enumerate(outputs):
        OutputChunk.objects.create(execution=run, index=index, kind="stdout", text=text)
    return run


@pytest.fixture
def runs(alice, bob):
    alice_session = ChatSession.objects.create(owner=alice, title="Weather analysis")
    bob_session = ChatSession.objects.create(owner=bob, title="Zebra notes")
    return {
        "alice_code": make_run(alice_session, 1, "zebra_count = 3\nprint(zebra_count)", "3\n"),
        "alice_output": make_run(alice_session, 2, "print(animal)", "the \x1b[31mzebra\x1b[0m is striped\n"),
        "alice_other": make_run(alice_session, 3, "print('lion')", "lion\n"),
        "bob_code": make_run(bob_session, 1, "zebra = 'bob'", "bob\n"),
        "alice_session": alice_session,
        "bob_session": bob_session,
    }


def test_a_user_finds_only_their_own_runs(alice, bob, runs) -> None:
    alice_hits = selectors.runs_search(user=alice, query="zebra")
    assert {h.execution_id for h in alice_hits} == {runs["alice_code"].id, runs["alice_output"].id}
    assert {h.session_id for h in alice_hits} == {runs["alice_session"].id}
    bob_hits = selectors.runs_search(user=bob, query="zebra")
    assert {(h.where, h.execution_id) for h in bob_hits} == {("code", runs["bob_code"].id), ("title", None)}
    assert all(h.session_id == runs["bob_session"].id for h in bob_hits)


def test_hits_say_where_and_highlight_the_words(alice, runs) -> None:
    [hit] = selectors.runs_search(user=alice, query="striped")
    assert (hit.where, hit.execution_id, hit.seq) == ("output", runs["alice_output"].id, 2)
    assert hit.snippet_html == "the zebra is <mark>striped</mark>"  # ANSI codes gone
    assert hit.url == f"/sessions/{runs['alice_session'].id}/#run-{runs['alice_output'].id}"


def test_every_word_must_match_and_punctuation_is_ignored(alice, runs) -> None:
    assert [h.execution_id for h in selectors.runs_search(user=alice, query="zebra striped!")] == [runs["alice_output"].id]
    assert selectors.runs_search(user=alice, query="zebra lion") == []
    assert selectors.runs_search(user=alice, query="  ()\"*  ") == []
    assert selectors.runs_search(user=alice, query='zebra" OR "lion') == []


def test_titles_are_found_and_follow_a_rename(alice, runs) -> None:
    session = runs["alice_session"]
    assert [h.where for h in selectors.runs_search(user=alice, query="weather")] == ["title"]
    services.session_rename(session=session, title="Savanna census")
    assert selectors.runs_search(user=alice, query="weather") == []
    [hit] = selectors.runs_search(user=alice, query="savanna")
    assert hit.snippet_html == "<mark>Savanna</mark> census" and hit.url == f"/sessions/{session.id}/"


def test_output_cannot_inject_markup_into_the_results(alice, runs) -> None:
    make_run(runs["alice_session"], 4, "print(x)", "<script>alert('giraffe')</script><img src=x onerror=alert(1)>\n")
    [hit] = selectors.runs_search(user=alice, query="giraffe")
    assert "<script>" not in hit.snippet_html and "<img" not in hit.snippet_html
    assert "&lt;script&gt;alert(&#x27;<mark>giraffe</mark>&#x27;)" in hit.snippet_html


def test_deleted_sessions_leave_the_index(alice, runs) -> None:
    runs["alice_session"].delete()
    assert selectors.runs_search(user=alice, query="zebra") == []


def test_the_search_page_lists_links_to_the_runs(alice, bob, runs) -> None:
    client = Client()
    client.force_login(alice)
    page = client.get("/search/", {"q": "zebra"}).content.decode()
    assert f'href="/sessions/{runs["alice_session"].id}/#run-{runs["alice_code"].id}"' in page
    assert "<mark>zebra</mark>" in page
    assert str(runs["bob_session"].id) not in page and "bob" not in page
    data = client.get("/search/", {"q": "zebra"}, headers={"Accept": "application/json"}).json()
    assert {h["execution_id"] for h in data["hits"]} == {runs["alice_code"].id, runs["alice_output"].id}
    assert Client().get("/search/", {"q": "zebra"}).status_code == 302  # login first


def test_a_runs_error_is_found(alice, runs) -> None:
    run = make_run(runs["alice_session"], 5, "1/0")
    Execution.objects.filter(pk=run.pk).update(status="failed", error_name="ZeroDivisionError", error_value="division by zero")
    [hit] = selectors.runs_search(user=alice, query="ZeroDivisionError")
    assert (hit.execution_id, hit.where) == (run.pk, "code")
    assert "<mark>ZeroDivisionError</mark>" in hit.snippet_html


def test_a_word_finds_the_words_it_begins(alice, runs) -> None:
    run = make_run(runs["alice_session"], 6, "from tabulate import tabulate\nprint(tabulate([[1, 2]]))", "-  -\n1  2\n-  -\n")
    [hit] = selectors.runs_search(user=alice, query="tabul")
    assert (hit.execution_id, hit.where) == (run.pk, "code")
    assert "<mark>tabulate</mark>" in hit.snippet_html
    assert [h.execution_id for h in selectors.runs_search(user=alice, query="zeb stri")] == [runs["alice_output"].id]
    assert selectors.runs_search(user=alice, query="abulate") == []  # a prefix, not any substring
    assert selectors.runs_search(user=alice, query="ta") == []  # from three letters on


def test_whole_words_come_before_the_words_they_begin_when_they_fill_the_page(alice, runs) -> None:
    session = runs["alice_session"]
    make_run(session, 7, "print('datasets')")
    whole = [make_run(session, 8 + i, f"data = {i}").id for i in range(3)]
    assert [h.execution_id for h in selectors.runs_search(user=alice, query="data", limit=3)] == whole[::-1]
    assert len(selectors.runs_search(user=alice, query="data", limit=4)) == 4  # room left: prefixes too
