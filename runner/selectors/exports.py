"""The session as a file: an nbformat v4 notebook (`export.ipynb`) and a Markdown document
(`export.md`), each run with its stored output and its teachers' live comments."""

from __future__ import annotations

import base64
from typing import Any

import nbformat
from django.db.models import Prefetch
from django.utils import timezone

from runner.events import NOTICE_MARKER
from runner.models import ChatSession, Comment, Execution, OutputChunk
from runner.selectors.comments import author_name
from runner.selectors.rendering import strip_ansi
from runner.selectors.sessions import IMAGE_MIMES, LANGUAGE_LABELS, execution_status, truncation_notice

_MARKDOWN_LANG = {"python": "python", "javascript": "javascript", "typescript": "typescript", "bash": "bash"}


def _notebook_outputs(chunks: list[OutputChunk], execution_count: int) -> list[Any]:
    outputs: list[Any] = []
    for chunk in chunks:
        if chunk.kind in ("stdout", "stderr"):
            if outputs and outputs[-1].get("output_type") == "stream" and outputs[-1]["name"] == chunk.kind:
                outputs[-1]["text"] += chunk.text
            else:
                outputs.append(nbformat.v4.new_output("stream", name=chunk.kind, text=chunk.text))
        elif chunk.kind == "error":
            data = chunk.data if isinstance(chunk.data, dict) else {}
            outputs.append(
                nbformat.v4.new_output(
                    "error",
                    ename=str(data.get("ename", "")),
                    evalue=str(data.get("evalue", "")),
                    traceback=[str(line) for line in data.get("traceback") or []],
                )
            )
        else:
            data = {k: v for k, v in (chunk.data or {}).items() if isinstance(v, str) and not k.startswith("sandpit/")} if isinstance(chunk.data, dict) else {}
            if not data:
                data = {"text/plain": chunk.text}
            outputs.append(nbformat.v4.new_output("display_data", data=data, metadata={}))
    return outputs


def session_export_notebook(*, session: ChatSession) -> nbformat.NotebookNode:
    """The session as an nbformat v4 notebook: one code cell per run, outputs as stored, and each
    teacher's comment as a markdown cell after its run."""
    language = session.language
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": {"python": "python3", "bash": "bash"}.get(language, "deno"),
        "display_name": LANGUAGE_LABELS.get(language, language),
        "language": language,
    }
    nb.metadata["language_info"] = {"name": language}
    nb.metadata["sandpit"] = {"session_id": str(session.id), "title": session.title}
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {session.title}"))
    executions = Execution.objects.filter(session=session).order_by("seq").prefetch_related(
        Prefetch("chunks", queryset=OutputChunk.objects.order_by("index")), _live_comments()
    )
    for execution in executions:
        cell = nbformat.v4.new_code_cell(
            source=execution.code,
            execution_count=execution.seq,
            outputs=_notebook_outputs(list(execution.chunks.all()), execution.seq),
        )
        cell.metadata["sandpit"] = {"language": execution.language, "status": execution.status}
        nb.cells.append(cell)
        for comment in execution.comments.all():
            note = nbformat.v4.new_markdown_cell(f"> **Comment by {_comment_byline(comment)}**\n\n{comment.body}")
            note.metadata["sandpit"] = {"comment": True, "execution_seq": execution.seq}
            nb.cells.append(note)
    nbformat.validate(nb)
    return nb


def _markdown_image(data: dict[str, Any], mime: str, *, index: int, seq: int) -> str:
    """An image output as a Markdown image whose URL is a data URI (SVG base64-encoded like the rest)."""
    payload = str(data[mime])
    if mime == "image/svg+xml":
        payload = base64.b64encode(payload.encode()).decode()
    return f"![Image output {index} of run {seq}](data:{mime};base64,{''.join(payload.split())})"


def session_export_markdown(*, session: ChatSession) -> str:
    """The session as a Markdown document: each run's code, its text output, its images as data URIs,
    and its comments as quotes."""
    lines = [f"# {session.title}", ""]
    executions = Execution.objects.filter(session=session).order_by("seq").prefetch_related(
        Prefetch("chunks", queryset=OutputChunk.objects.order_by("index")), _live_comments()
    )
    for execution in executions:
        status, _ = execution_status(execution)
        when = timezone.localtime(execution.created_at).strftime("%Y-%m-%d %H:%M")
        lines += [f"## Run {execution.seq} · {LANGUAGE_LABELS.get(execution.language, execution.language)} · {when}", ""]
        fence = "````" if "```" in execution.code else "```"
        lines += [f"{fence}{_MARKDOWN_LANG.get(execution.language, '')}", execution.code.rstrip("\n"), fence, ""]
        text_parts: list[str] = []

        def flush_text() -> None:
            output = "".join(text_parts).rstrip("\n")
            text_parts.clear()
            if output:
                lines.extend(["```text", output.replace("```", "ʼʼʼ"), "```", ""])

        marked = False  # the cap's own marker ("… 8.3 MiB cut …") is in the output
        for chunk in execution.chunks.all():
            data = chunk.data if isinstance(chunk.data, dict) else {}
            marked = marked or data.get(NOTICE_MARKER) == "truncated"
            if chunk.kind in ("stdout", "stderr"):
                text_parts.append(strip_ansi(chunk.text))
            elif chunk.kind == "error":
                text_parts.append(strip_ansi("\n".join(str(t) for t in data.get("traceback") or [])) + "\n")
            elif image := next((m for m in IMAGE_MIMES if isinstance(data.get(m), str)), None):
                flush_text()
                lines += [_markdown_image(data, image, index=chunk.index, seq=execution.seq), ""]
            else:
                text_parts.append(strip_ansi(str(data.get("text/plain", chunk.text))) + "\n")
        flush_text()
        if execution.truncated and not marked:
            lines += [f"*{truncation_notice()}*", ""]
        lines += [f"*{status}*", ""]
        for comment in execution.comments.all():
            quoted = "\n".join(f"> {line}" if line else ">" for line in comment.body.splitlines())
            lines += [f"> **Comment by {_comment_byline(comment)}**", ">", quoted, ""]
    return "\n".join(lines)


def _comment_byline(comment: Comment) -> str:
    when = timezone.localtime(comment.created_at).strftime("%Y-%m-%d %H:%M")
    return f"{author_name(comment.author)} · {when}" + (" (edited)" if comment.edited_at else "")


def _live_comments() -> Prefetch:
    return Prefetch("comments", queryset=Comment.objects.filter(deleted_at__isnull=True).select_related("author").order_by("created_at", "pk"))
