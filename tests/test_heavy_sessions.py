"""A session whose runs printed megabytes: the page renders each run's tail (and all its images),
and "Show all output" (the run's output endpoint) still has everything (issue 14)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from runner.models import ChatSession, Execution, OutputChunk
from runner.selectors.sessions import HISTORY_TAIL_CHARS

pytestmark = pytest.mark.django_db

LINE = "{:06d} " + "x" * 80 + "\n"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture
def heavy(alice) -> tuple[ChatSession, Execution]:
    session = ChatSession.objects.create(owner=alice, title="Heavy")
    now = timezone.now()
    light = Execution.objects.create(session=session, seq=1, code="print('small')", language="python", user=alice,
                                     status="succeeded", created_at=now, started_at=now, finished_at=now, duration_ms=5)
    OutputChunk.objects.create(execution=light, index=0, kind="stdout", text="small\n")
    run = Execution.objects.create(session=session, seq=2, code="flood()", language="python", user=alice,
                                   status="succeeded", created_at=now, started_at=now, finished_at=now, duration_ms=900)
    OutputChunk.objects.create(execution=run, index=0, kind="result", data={"image/png": PNG, "text/plain": "<Figure>"})
    lines_per_chunk = 180  # ~16 KiB chunks, as the output writer batches them
    chunks = [
        OutputChunk(execution=run, index=1 + i, kind="stdout", text="".join(LINE.format(i * lines_per_chunk + j) for j in range(lines_per_chunk)))
        for i in range(140)  # ~2.2 MB of stdout
    ]
    OutputChunk.objects.bulk_create(chunks)
    return session, run


def test_a_heavy_run_renders_its_tail_and_images_and_says_the_rest_is_hidden(alice, heavy) -> None:
    session, run = heavy
    client = Client()
    client.force_login(alice)
    page = client.get(f"/sessions/{session.id}/").content.decode()
    assert len(page.encode()) < 200_000
    last_line = LINE.format(140 * 180 - 1).strip()
    assert last_line in page and LINE.format(0).strip() not in page
    assert "small\n" in page  # a light run is whole
    assert f"data:image/png;base64,{PNG}" in page
    assert page.count('data-action="load-all"') == 1 and 'data-clipped="1"' in page
    start = page.index('data-clipped="1"')
    tail = page[page.index(">", start) + 1 : page.index("</pre>", start)]
    assert HISTORY_TAIL_CHARS * 0.9 < len(tail) < HISTORY_TAIL_CHARS * 1.6  # spans add some markup
    assert tail.startswith('<span class="stdout">') and tail[len('<span class="stdout">'):][:6].isdigit()  # a whole line
    whole = client.get(f"/sessions/{session.id}/executions/{run.id}/output/").content.decode()
    assert LINE.format(0).strip() in whole and last_line in whole and "Show all output" not in whole
