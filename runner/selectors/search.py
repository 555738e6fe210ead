"""Search over a user's own runs: session titles, code and output text, newest first.

One selector, two engines, picked by the database: SQLite's FTS5 table `runner_search`, and on
Postgres a table of the same rows with a stored, GIN-indexed tsvector (the SearchEntry model)
searched through django.contrib.postgres.search. Both are kept by triggers (migration 0007_search):
a run's code and error, and the first 20 output chunks (16 KiB of each, colour codes removed). Both match every word of the query
as a prefix ("tabul" finds "tabulate", from 3 letters; whole-word matches first, prefixes when
they leave room; no stemming: code and output are searched as written), and only ever rows the
user owns.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Q

from runner.models import ChatSession, Execution, SearchEntry
from runner.selectors.rendering import strip_ansi

SEARCH_MAX_HITS = 50
QUERY_MAX_WORDS = 8
SNIPPET_CHARS = 160
# A shorter query word matches whole words only (a one- or two-letter prefix matches half the index).
PREFIX_MIN_CHARS = 3
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SearchHit:
    session_id: uuid.UUID
    session_title: str
    execution_id: int | None  # None for a hit on a session's title
    seq: int | None
    where: str  # "title", "code" or "output"
    # Escaped text around the first match, with every query word in <mark>: safe to insert as HTML.
    snippet_html: str
    created_at: datetime

    @property
    def url(self) -> str:
        anchor = f"#run-{self.execution_id}" if self.execution_id is not None else ""
        return f"/sessions/{self.session_id}/{anchor}"


def search_words(query: str) -> list[str]:
    """The words a query searches for (punctuation is ignored, as the indexes ignore it)."""
    return [w.lower() for w in _WORD.findall(query)][:QUERY_MAX_WORDS]


def runs_search(*, user: User, query: str, limit: int = SEARCH_MAX_HITS) -> list[SearchHit]:
    """The user's runs (and sessions, by title) matching every word of `query`, newest first,
    at most `limit`, one hit per run. An empty query finds nothing."""
    words = search_words(query)
    if not words or not user.is_authenticated:
        return []
    matches = _postgres_matches if connection.vendor == "postgresql" else _sqlite_matches
    # Whole words first: a prefix query merges the postings of every word it begins, which for a
    # common one cost 8x (bench/search.py), so it runs only when whole words leave room.
    matched = matches(user_id=user.pk, words=words, limit=limit, prefix=False)
    if len(matched) < limit and any(len(w) >= PREFIX_MIN_CHARS for w in words):
        matched = matches(user_id=user.pk, words=words, limit=limit, prefix=True)
    hits = _run_hits(user_id=user.pk, matched=matched, words=words)
    titles = _title_hits(user_id=user.pk, words=words, limit=limit)
    return sorted(hits + titles, key=lambda h: h.created_at, reverse=True)[:limit]


def _is_prefix(word: str, prefix: bool) -> bool:
    return prefix and len(word) >= PREFIX_MIN_CHARS


def _sqlite_matches(*, user_id: int, words: list[str], limit: int, prefix: bool) -> dict[int, str]:
    """{execution id: the matching text} from FTS5, newest runs first; with `prefix`, words of
    PREFIX_MIN_CHARS or more match the words they begin."""
    terms = " ".join('"' + w.replace('"', '""') + '"' + ("*" if _is_prefix(w, prefix) else "") for w in words)
    rows = []
    with connection.cursor() as cursor:
        # Code and output separately: their rowids count different things (run and chunk ids).
        for kind, many in (("code", limit), ("output", limit * 4)):
            cursor.execute(
                "SELECT execution_id, body FROM runner_search WHERE runner_search MATCH %s ORDER BY rowid DESC LIMIT %s",
                [f'owner:"u{int(user_id)}" AND kind:"{kind}" AND body:({terms})', many],
            )
            rows += cursor.fetchall()
    return _newest(rows, limit)


def _postgres_matches(*, user_id: int, words: list[str], limit: int, prefix: bool) -> dict[int, str]:
    """{execution id: the matching text} from the search table, newest runs first (`prefix`: as in SQLite)."""
    from django.contrib.postgres.search import SearchQuery

    # Raw tsquery syntax is safe here: words are \w+ (no quotes, operators or colons); w:* is a prefix.
    wanted = SearchQuery(" & ".join(w + (":*" if _is_prefix(w, prefix) else "") for w in words), config="simple", search_type="raw")
    rows: list[tuple[int, str]] = []
    # Code and output separately, each newest first along the (owner, kind, id) index.
    for is_code, many in ((True, limit), (False, limit * 4)):
        rows += (SearchEntry.objects.filter(owner_id=user_id, is_code=is_code, doc=wanted).order_by("-id")
                 .values_list("execution_id", "body")[:many])
    return _newest(rows, limit)


def _newest(rows: list[tuple[int, str]], limit: int) -> dict[int, str]:
    """{execution id: its first matching text} for the newest `limit` runs among `rows`."""
    found: dict[int, str] = {}
    for execution_id, text in rows:
        found.setdefault(int(execution_id), text)
    return {execution_id: found[execution_id] for execution_id in sorted(found, reverse=True)[:limit]}


def _run_hits(*, user_id: int, matched: dict[int, str], words: list[str]) -> list[SearchHit]:
    runs = (Execution.objects.filter(pk__in=list(matched), session__owner_id=user_id)
            .select_related("session").only("id", "seq", "code", "created_at", "session__id", "session__title"))
    hits = []
    for run in runs:
        text = matched[run.pk]
        where = "code" if text.startswith(run.code) else "output"
        hits.append(SearchHit(
            session_id=run.session.id, session_title=run.session.title, execution_id=run.pk, seq=run.seq,
            where=where, snippet_html=snippet(strip_ansi(text), words), created_at=run.created_at,
        ))
    return hits


def _title_hits(*, user_id: int, words: list[str], limit: int) -> list[SearchHit]:
    condition = Q()
    for word in words:
        condition &= Q(title__icontains=word)
    sessions = ChatSession.objects.filter(condition, owner_id=user_id).order_by("-last_activity_at")[:limit]
    return [
        SearchHit(session_id=s.id, session_title=s.title, execution_id=None, seq=None, where="title",
                  snippet_html=snippet(s.title, words), created_at=s.last_activity_at)
        for s in sessions
    ]


def snippet(text: str, words: list[str], width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `text` around the first query word, HTML-escaped, with each
    word that a query word begins (case-insensitive) in <mark>."""
    # A word as the indexes cut them: letters and digits (an underscore separates words).
    pattern = re.compile(r"(?<!\w)((?:" + "|".join(re.escape(w) for w in words) + r")[^\W_]*)", re.IGNORECASE)
    first = pattern.search(text)
    start = max(0, (first.start() if first else 0) - width // 3)
    piece = text[start:start + width]
    parts = []
    last = 0
    for match in pattern.finditer(piece):
        parts.append(html.escape(piece[last:match.start()]))
        parts.append(f"<mark>{html.escape(match.group(0))}</mark>")
        last = match.end()
    parts.append(html.escape(piece[last:]))
    body = " ".join("".join(parts).split())  # one line: newlines and runs of spaces collapse
    return ("… " if start > 0 else "") + body + (" …" if start + width < len(text) else "")
