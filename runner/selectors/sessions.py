"""Reads behind the chat page: the sidebar, one session's history as render-ready turns (clipped
for long output). The notebook and Markdown exports are in selectors/exports.py."""

from __future__ import annotations

import base64
import html
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Length
from django.utils import timezone

from runner.events import NOTICE_MARKER
from runner.models import LANGUAGE_CHOICES, ChatSession, Execution, OutputChunk, SandboxLease
from runner.selectors.comments import CommentView, author_name, comments_by_execution, comments_unread_per_session
from runner.selectors.rendering import AnsiState, ansi_to_html, markdown_to_safe_html, sanitize_rich_html

LANGUAGE_LABELS = dict(LANGUAGE_CHOICES)
# Rich results are shown as the first of these the bundle has (Jupyter's order, images first).
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
_TAGS = re.compile(r"<[^>]*>")


@dataclass(frozen=True)
class SessionListItem:
    id: uuid.UUID
    title: str
    language: str
    language_label: str
    last_activity_at: datetime
    last_activity_text: str
    is_running: bool
    kind: str = "chat"  # "api": made through the E2B-compatible API (an "API" badge)
    running_since: datetime | None = None  # the oldest active run's start, for the sidebar's clock
    classroom_name: str = ""  # the class the session is in; "" when private
    owner_name: str = ""  # on a teacher's sidebar (the class's sessions): whose session it is
    unread_comments: int = 0  # on the owner's sidebar: teachers' comments they haven't seen


@dataclass
class OutputBlock:
    """One visual block of a reply. `html` is always safe markup (escaped, ANSI-coloured or sanitised)."""

    type: str  # "stream", "image", "html", "text", "error"
    first_index: int
    last_index: int
    html: str = ""
    src: str = ""  # for images: a data: URL (SVG too: never inlined)
    mime: str = ""
    ename: str = ""
    evalue: str = ""
    line_count: int = 0
    clipped: bool = False  # a stream block whose head was left out of the page (session_history)


@dataclass
class Turn:
    execution: Execution
    language_label: str
    blocks: list[OutputBlock] = field(default_factory=list)
    last_index: int | None = None
    status_text: str = ""
    status_class: str = ""
    is_active: bool = False
    truncated: bool = False
    # What a Stop kept, in the run's language ("" when the output already says so).
    stopped_note: str = ""
    # Teachers' comments under the run, oldest first.
    comments: list[CommentView] = field(default_factory=list)
    clipped: bool = False  # some of its stream output was left out of the page; "Show all output" has it

    @property
    def status_parts(self) -> StatusParts:
        return status_parts(self.status_text)

    @property
    def unread_comments(self) -> int:
        return sum(1 for comment in self.comments if comment.unread)


# After a Stop, in the language's own terms; mirrored by stoppedNote() in static/runner/format.js.
STOPPED_NOTES = {
    "python": "KeyboardInterrupt: stopped; the session's variables are kept.",
    "bash": "Stopped; the shell and its variables are kept.",
    "javascript": "Stopped; the session and its variables are kept.",
    "typescript": "Stopped; the session and its variables are kept.",
}


def stopped_note(*, execution: Execution, blocks: list[OutputBlock]) -> str:
    """The note under a stopped run, or "" if it isn't stopped or Python's own KeyboardInterrupt shows."""
    if execution.status != Execution.Status.CANCELLED:
        return ""
    if execution.language == "python" and any("KeyboardInterrupt" in b.html or b.ename == "KeyboardInterrupt" for b in blocks):
        return ""
    return STOPPED_NOTES.get(execution.language, STOPPED_NOTES["javascript"])


def duration_text(duration_ms: int | None) -> str:
    """0.12 s, 3.4 s, 2 min 5 s: the same format as the page's JS."""
    if duration_ms is None:
        return ""
    seconds = duration_ms / 1000
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def truncation_notice() -> str:
    cap_mib = settings.RUN_OUTPUT_MAX_BYTES / (1024 * 1024)
    cap = f"{cap_mib:g} MiB" if cap_mib >= 1 else f"{settings.RUN_OUTPUT_MAX_BYTES // 1024} KiB"
    return f"Output stopped at {cap}; the run went on."


def relative_time_text(moment: datetime, *, now: datetime | None = None) -> str:
    seconds = max(0, int(((now or timezone.now()) - moment).total_seconds()))
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    if seconds < 86400 * 7:
        return f"{round(seconds / 86400)} d ago"
    return moment.strftime("%d %b %Y")


# A status text's leading symbol -> the page's own SVG icon (sandpit.css `.status-icon.icon-*`),
# mirrored by STATUS_ICONS in static/runner/turns.js. The symbol stays in the text at font size 0
# (for copying, and pages without CSS): the icon, not a font, draws it.
STATUS_ICONS = {"✓": "ok", "✗": "err", "⏱": "timeout", "■": "stopped", "⚠": "warn"}


@dataclass(frozen=True)
class StatusParts:
    """A status text split for rendering: `icon` ("" for none), its `glyph`, and the `rest` (with
    its leading space); `plain` is the text without the symbol, for places that can't hold an icon."""

    icon: str
    glyph: str
    rest: str

    @property
    def plain(self) -> str:
        return ("ok" + self.rest) if self.icon == "ok" else self.rest.strip()


def status_parts(text: str) -> StatusParts:
    icon = STATUS_ICONS.get(text[:1], "")
    return StatusParts(icon, text[:1], text[1:]) if icon else StatusParts("", "", text)


def execution_status(execution: Execution) -> tuple[str, str]:
    """The reply's status line as (text, css class); mirrored by finishedStatus() in static/runner/format.js."""
    status = execution.status
    S = Execution.Status
    if status == S.SUCCEEDED:
        return f"✓ {duration_text(execution.duration_ms)}", "ok"
    if status == S.FAILED:
        return f"✗ {execution.error_name or 'error'}", "err"
    if status == S.TIMED_OUT:
        return f"⏱ timed out after {round((execution.duration_ms or settings.RUN_TIMEOUT_S * 1000) / 1000)} s", "warn"
    if status == S.CANCELLED:
        return "■ stopped", "muted"
    if status == S.INTERRUPTED:
        return "⚠ interrupted (server restarted)", "warn"
    if status == S.KILLED:
        return "■ sandbox stopped for you", "warn"
    if status == S.REJECTED:
        return f"✗ not run: {execution.error_value or 'rejected'}", "err"
    if status == S.RUNNING:
        return "running…", "running"
    return "queued", "queued"


def sessions_for_sidebar(*, user: User, query: str = "", limit: int = 200) -> list[SessionListItem]:
    """The user's own sessions, newest activity first, optionally filtered by title, each with its
    count of comments they haven't seen."""
    return sidebar_items(ChatSession.objects.filter(owner=user), query=query, limit=limit, with_unread=True)


def sidebar_items(
    sessions: QuerySet[ChatSession], *, query: str = "", limit: int = 200, with_owner: bool = False, with_unread: bool = False,
) -> list[SessionListItem]:
    """`sessions` as sidebar entries, newest activity first, optionally filtered by title;
    `with_owner` names each one's owner (a teacher's sidebar lists several students' sessions);
    `with_unread` counts each one's unseen comments (the owner's own sidebar)."""
    running = Execution.objects.active().filter(session=OuterRef("pk"))
    since = running.exclude(started_at=None).order_by("started_at").values("started_at")[:1]
    qs = (
        sessions
        .select_related("classroom", *(["owner"] if with_owner else []))
        .annotate(is_running=Exists(running), running_since=Subquery(since))
        .order_by("-last_activity_at")
    )
    if with_unread:
        qs = qs.annotate(unread_comments=comments_unread_per_session())
    if query.strip():
        qs = qs.filter(title__icontains=query.strip())
    now = timezone.now()
    return [
        SessionListItem(
            id=s.id,
            title=s.title,
            language=s.language,
            language_label=LANGUAGE_LABELS.get(s.language, s.language),
            last_activity_at=s.last_activity_at,
            last_activity_text=relative_time_text(s.last_activity_at, now=now),
            is_running=s.is_running,
            kind=s.kind,
            running_since=s.running_since,
            classroom_name=s.classroom.name if s.classroom else "",
            owner_name=author_name(s.owner) if with_owner else "",
            unread_comments=getattr(s, "unread_comments", 0),
        )
        for s in qs[:limit]
    ]


def session_latest_for_user(*, user: User) -> ChatSession | None:
    return ChatSession.objects.filter(owner=user).order_by("-last_activity_at").first()


def _result_block(chunk: OutputChunk) -> OutputBlock:
    data: dict[str, Any] = chunk.data if isinstance(chunk.data, dict) else {}
    block = OutputBlock(type="text", first_index=chunk.index, last_index=chunk.index)
    for mime in IMAGE_MIMES:
        if isinstance(data.get(mime), str):
            payload = data[mime]
            if mime == "image/svg+xml":
                payload = base64.b64encode(payload.encode()).decode()
            block.type, block.mime, block.src = "image", mime, f"data:{mime};base64,{payload.strip()}"
            return block
    if isinstance(data.get("text/html"), str):
        block.type, block.html = "html", sanitize_rich_html(data["text/html"])
        return block
    if isinstance(data.get("text/markdown"), str):
        block.type, block.html = "html", markdown_to_safe_html(data["text/markdown"])
        return block
    text = data.get("text/plain") if isinstance(data.get("text/plain"), str) else chunk.text
    block.html = ansi_to_html(text or "")
    block.line_count = (text or "").count("\n") + 1
    return block


def _error_block(chunk: OutputChunk) -> OutputBlock:
    data: dict[str, Any] = chunk.data if isinstance(chunk.data, dict) else {}
    ename, evalue = str(data.get("ename", "")), str(data.get("evalue", ""))
    traceback = data.get("traceback") or []
    text = "\n".join(str(line) for line in traceback) if traceback else (chunk.text or f"{ename}: {evalue}")
    if "\x1b[" in text:
        markup = ansi_to_html(text)
    else:  # a kernel without colours: still set the "ZeroDivisionError: ..." line apart, as Jupyter does
        head, _, last = text.rstrip("\n").rpartition("\n")
        markup = (ansi_to_html(head + "\n") if head else "") + f'<span class="ansi-fg-1 ansi-bold">{ansi_to_html(last)}</span>'
    return OutputBlock(
        type="error",
        first_index=chunk.index,
        last_index=chunk.index,
        html=markup,
        ename=ename,
        evalue=evalue,
        line_count=text.count("\n") + 1,
    )


def output_blocks(chunks: list[OutputChunk]) -> list[OutputBlock]:
    """Chunks in index order → blocks; neighbouring stdout/stderr pieces share one block, in true order."""
    blocks: list[OutputBlock] = []
    states = {"stdout": AnsiState(), "stderr": AnsiState()}
    for chunk in chunks:
        marker = chunk.data.get(NOTICE_MARKER) if isinstance(chunk.data, dict) else None
        if marker and chunk.kind in ("stdout", "stderr"):
            # The server's own words (truncation, "the server failed…"): a note, not the program's output.
            blocks.append(
                OutputBlock(
                    type="note",
                    first_index=chunk.index,
                    last_index=chunk.index,
                    html=html.escape(chunk.text.strip()),
                    mime="trunc" if marker == "truncated" else "server-note",
                )
            )
        elif chunk.kind in ("stdout", "stderr"):
            piece = ansi_to_html(chunk.text, states[chunk.kind])
            markup = f'<span class="{chunk.kind}">{piece}</span>'
            if blocks and blocks[-1].type == "stream":
                blocks[-1].html += markup
                blocks[-1].last_index = chunk.index
                blocks[-1].line_count += chunk.text.count("\n")
            else:
                blocks.append(
                    OutputBlock(
                        type="stream",
                        first_index=chunk.index,
                        last_index=chunk.index,
                        html=markup,
                        line_count=chunk.text.count("\n") + 1,
                    )
                )
        elif chunk.kind == "error":
            blocks.append(_error_block(chunk))
        else:
            blocks.append(_result_block(chunk))
    # A stream block of blank lines only (bash echoes one on Stop) would be an empty box.
    return [b for b in blocks if b.type != "stream" or _TAGS.sub("", b.html).strip()]


def _turn(execution: Execution, chunks: list[OutputChunk]) -> Turn:
    text, cls = execution_status(execution)
    blocks = output_blocks(chunks)
    return Turn(
        execution=execution,
        language_label=LANGUAGE_LABELS.get(execution.language, execution.language),
        blocks=blocks,
        last_index=chunks[-1].index if chunks else None,
        status_text=text,
        status_class=cls,
        is_active=execution.is_active,
        # The marker is shown once: from its stored note chunk, else (older runs) from the flag.
        truncated=execution.truncated and not any(b.type == "note" and b.mime == "trunc" for b in blocks),
        stopped_note=stopped_note(execution=execution, blocks=blocks),
    )


# Stream text per run that the page renders; the rest of a heavy run waits behind "Show all output"
# (the run's output endpoint), so a session with megabytes of output still loads fast.
HISTORY_TAIL_CHARS = 32_000
_STREAMS = ("stdout", "stderr")


def session_history(*, session: ChatSession, viewer: User) -> list[Turn]:
    """Every run of the session, oldest first, with its output ready to render: all of it, except that
    a run with more than HISTORY_TAIL_CHARS of stdout/stderr keeps only that much of its streams' tail
    (its images, results and errors all stay), and says so (`Turn.clipped`). Each turn carries its
    comments as `viewer` sees them."""
    executions = list(Execution.objects.filter(session=session).order_by("seq"))
    sizes = (
        OutputChunk.objects.filter(execution__session=session)
        .annotate(chars=Length("text"))
        .order_by("execution_id", "-index")
        .values_list("execution_id", "index", "kind", "chars")
    )
    kept: dict[int, list[int]] = {}
    stream_chars: dict[int, int] = {}
    clipped: set[int] = set()
    for execution_id, index, kind, chars in sizes.iterator():
        if kind in _STREAMS:
            seen = stream_chars.get(execution_id, 0)
            stream_chars[execution_id] = seen + (chars or 0)
            if seen >= HISTORY_TAIL_CHARS:
                clipped.add(execution_id)
                continue
        kept.setdefault(execution_id, []).append(index)
    if clipped:
        # The server's notes (the cap's "… 8.3 MiB cut …" marker above all) stay, wherever they are.
        notes = OutputChunk.objects.filter(execution_id__in=clipped, kind="stderr", data__has_key=NOTICE_MARKER)
        for execution_id, index in notes.values_list("execution_id", "index"):
            kept.setdefault(execution_id, []).append(index)
    chunks_of: dict[int, list[OutputChunk]] = {e.pk: [] for e in executions}
    whole = [e.pk for e in executions if e.pk not in clipped]
    wanted = Q(execution_id__in=whole)
    for execution_id in clipped:
        wanted |= Q(execution_id=execution_id, index__in=kept.get(execution_id, []))
    for chunk in OutputChunk.objects.filter(wanted).order_by("execution_id", "index"):
        chunks_of[chunk.execution_id].append(chunk)
    turns = []
    for execution in executions:
        chunks = chunks_of[execution.pk]
        if execution.pk in clipped:
            _clip_head(chunks, stream_chars_kept=sum(len(c.text) for c in chunks if c.kind in _STREAMS))
        turn = _turn(execution, chunks)
        if execution.pk in clipped:
            turn.clipped = True
            first_stream = next((b for b in turn.blocks if b.type == "stream"), None)
            if first_stream is not None:
                first_stream.clipped = True
        turns.append(turn)
    comments = comments_by_execution(execution_ids=[e.pk for e in executions], viewer=viewer, owner_id=session.owner_id)
    for turn in turns:
        turn.comments = comments.get(turn.execution.pk, [])
    return turns


def _is_note(chunk: OutputChunk) -> bool:
    return isinstance(chunk.data, dict) and NOTICE_MARKER in chunk.data


def _clip_head(chunks: list[OutputChunk], *, stream_chars_kept: int) -> None:
    """Cut the oldest kept stream chunk's head (in memory) so the streams hold about
    HISTORY_TAIL_CHARS, starting on a whole line where one is near."""
    excess = stream_chars_kept - HISTORY_TAIL_CHARS
    first = next((c for c in chunks if c.kind in _STREAMS and not _is_note(c)), None)
    if first is None or excess <= 0:
        return
    cut = min(excess, len(first.text))
    newline = first.text.find("\n", cut)
    first.text = first.text[newline + 1 if 0 <= newline < cut + 4096 else cut :]


def execution_for_session(*, session: ChatSession, execution_id: int) -> Turn | None:
    """One run's full output (for "show all" and for rich results streamed live), or None."""
    execution = Execution.objects.filter(session=session, pk=execution_id).first()
    if execution is None:
        return None
    return _turn(execution, list(execution.chunks.order_by("index")))


def session_sandbox_stop_reason(*, session: ChatSession) -> str:
    """The end reason of the session's last lease when an admin, a budget or a revoked key closed
    it ("admin", "budget", "revoked"), else "" (the header chip says "stopped by an administrator")."""
    reason = SandboxLease.objects.filter(session=session).order_by("-started_at", "-id").values_list("end_reason", flat=True).first() or ""
    stopping = (SandboxLease.EndReason.ADMIN, SandboxLease.EndReason.BUDGET, SandboxLease.EndReason.REVOKED)
    return reason if reason in stopping else ""


def session_resume_point(*, session: ChatSession) -> dict[str, int] | None:
    """Where the rendered page ends: the last run and its last stored output index (-1 if none yet).

    The page's socket resumes from here (`after_execution`/`after_index`), so nothing stored after the
    render is missed, and nothing before it is sent twice.
    """
    execution = Execution.objects.filter(session=session).order_by("-seq").first()
    if execution is None:
        return None
    last = execution.chunks.order_by("-index").values_list("index", flat=True).first()
    return {"execution_id": execution.id, "index": -1 if last is None else last}
