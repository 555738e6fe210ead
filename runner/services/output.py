"""Output of a run: numbered, capped, and written then published in adaptive batches (the
process's one writer, outbox.py, stores every run's batches together)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from runner import events
from runner.events import MAIN_RESULT_MARKER, NOTICE_MARKER, Chunk, ChunkKind
from runner.sandboxes.base import Error, Event, OutputLost, Result, Stderr, Stdout
from runner.services.outbox import outbox
from runner.services.outbox import publish as publish

log = logging.getLogger(__name__)


def human_bytes(n: int) -> str:
    """146 KB, 8.3 MiB: three significant figures (a size that rounds to 1000 KB or more is in MiB)."""
    if n >= 999.5 * 1024:
        return f"{n / (1024 * 1024):.3g} MiB"
    if n >= 1024:
        return f"{n / 1024:.3g} KB"
    return f"{n} bytes"


# A tail item's text is topped up to at most this many bytes before a new item starts.
TAIL_ITEM_MAX_BYTES = 64 * 1024


@dataclass
class _TailItem:
    """One event held in the tail: text (stdout/stderr, `raw` bytes) or a result/error (`data`)."""

    kind: ChunkKind
    raw: bytearray | None
    data: dict[str, Any] | None
    size: int


def cut_marker_text(cut_bytes: int, whys: list[str]) -> str:
    """The note that stands where output was cut: "… 8.3 MiB cut …" (with why, when output was lost)."""
    why = f": {'; '.join(whys)}" if whys else ""
    return f"… {human_bytes(cut_bytes)} cut{why} …\n"


class OutputWriter:
    """Numbers events, caps them, and writes then publishes them in adaptive batches.

    `on_event` is synchronous and never blocks the kernel's reader. An event that arrives when
    nothing is being written starts a write at once (no added latency); events arriving during
    a write coalesce into the next batch (at most RUN_BATCH_MAX_BYTES; adjacent stdout or stderr
    text merges into one chunk). The process's outbox (outbox.py) stores every run's batches of
    a tick in one transaction, then calls `stored()`, which publishes this run's in order.

    The cap (RUN_OUTPUT_MAX_BYTES) keeps the head and the tail, as Jupyter's and CI logs do: the
    first `cap - tail` bytes stream out live; past them, events are held in a ring of the last
    `tail_max_bytes` (whole lines where it can), and `end()` (the run is over) writes a marker
    "… 8.3 MiB cut …" and then the tail. Memory stays bounded by the ring. What is written is
    written once, in index order, so a replay shows exactly what the live page got.
    """

    def __init__(self, *, group: str) -> None:
        self.execution_id = 0  # set by the caller once the row exists
        self.group = group
        self._held = True  # nothing is written until `release()`: the row may not exist yet
        self.cap_bytes: int = settings.RUN_OUTPUT_MAX_BYTES
        self.tail_max_bytes: int = min(settings.RUN_OUTPUT_TAIL_BYTES, self.cap_bytes // 2)
        self.head_max_bytes: int = self.cap_bytes - self.tail_max_bytes
        self.batch_max_bytes: int = settings.RUN_BATCH_MAX_BYTES
        self.next_index = 0
        self.kept_bytes = 0  # the head's bytes
        self.truncated = False  # something was cut (or lost)
        self.tailing = False  # past the head: events go to the tail's ring
        self._tail: deque[_TailItem] = deque()
        self._tail_bytes = 0
        self._cut_bytes = 0  # cut since the last marker
        self._cut_whys: list[str] = []
        self._held_told = False  # `execution.held` went out (once, after the head's last output)
        self.stdout_bytes = 0
        self.stderr_bytes = 0
        self.error: Error | None = None
        self.events_received = 0  # events the code produced (server notes not counted)
        self._pending: list[Chunk] = []
        self._pending_sizes: list[int] = []
        self._in_flight = 0  # outbox ticks holding this run's batches (taken, not yet published)
        self._telling: asyncio.Task[None] | None = None  # `execution.held` being published
        self._waiters: list[asyncio.Future[None]] = []  # `drain()`s waiting for all to be out

    def on_event(self, event: Event) -> None:
        self.events_received += 1
        if isinstance(event, Stdout):
            raw = event.text.encode("utf-8", "replace")
            self.stdout_bytes += len(raw)
            self._keep_text("stdout", raw)
        elif isinstance(event, Stderr):
            raw = event.text.encode("utf-8", "replace")
            self.stderr_bytes += len(raw)
            self._keep_text("stderr", raw)
        elif isinstance(event, Result):
            size = sum(len(v) if isinstance(v, str) else 64 for v in event.data.values())
            data: dict[str, Any] = {**event.data, MAIN_RESULT_MARKER: "1"} if event.is_main else dict(event.data)
            self._keep_item("result", data, size)
        elif isinstance(event, Error):
            self.error = event
            data = {"ename": event.ename, "evalue": event.evalue, "traceback": list(event.traceback)}
            size = len(event.ename) + len(event.evalue) + sum(len(line) for line in event.traceback)
            self._keep_item("error", data, size)
        elif isinstance(event, OutputLost):
            # Output that never arrived is cut from the middle: a marker where it was, now (in the
            # head) or with the tail's marker (past it).
            self.truncated = True
            self._cut_bytes += event.size_bytes
            self._cut_whys.append(event.what)
            if not self.tailing:
                self._write_marker()
        self._kick()

    def note(self, text: str) -> None:
        """A server note in the output (stderr, marked), outside the cap. Past the head, the tail
        held so far is written first, so the note comes after the output it follows."""
        if self.tailing:
            self._write_tail()
        self._append("stderr", text if text.endswith("\n") else text + "\n", {NOTICE_MARKER: "server"}, len(text))
        self._kick()

    def end(self) -> None:
        """The run produced all it will: the cut marker (if anything was cut) and the tail join the
        pending output (the caller stores it with the run's final state)."""
        self._held_told = True  # too late to say the tail is held: here it comes
        if self.tailing:
            self._write_tail()

    def _write_marker(self) -> None:
        if self._cut_bytes or self._cut_whys:
            text = cut_marker_text(self._cut_bytes, self._cut_whys)
            self._append("stderr", text, {NOTICE_MARKER: "truncated"}, len(text))
        self._cut_bytes = 0
        self._cut_whys = []

    def _write_tail(self) -> None:
        self._write_marker()
        while self._tail:
            item = self._tail.popleft()
            if item.raw is not None:
                self._emit_text(item.kind, bytes(item.raw))
            else:
                self._append(item.kind, "", item.data, item.size)
        self._tail_bytes = 0

    def _keep_item(self, kind: ChunkKind, data: dict[str, Any], size: int) -> None:
        """A result or an error: in the head while it fits, else into the tail (or cut, if bigger)."""
        if not self.tailing and self.kept_bytes + size <= self.head_max_bytes:
            self.kept_bytes += size
            self._append(kind, "", data, size)
            return
        self.tailing = True
        if size > self.tail_max_bytes:
            self._cut(size)
            return
        self._tail.append(_TailItem(kind, None, data, size))
        self._tail_bytes += size
        self._evict()

    def _cut(self, size: int) -> None:
        self.truncated = True
        self._cut_bytes += size

    def _tail_text(self, kind: ChunkKind, raw: bytes) -> None:
        if len(raw) > self.tail_max_bytes:
            cut = _line_cut(raw, len(raw) - self.tail_max_bytes)
            self._cut(cut)
            raw = raw[cut:]
        if not raw:
            return
        last = self._tail[-1] if self._tail else None
        if last is not None and last.kind == kind and last.raw is not None and last.size + len(raw) <= TAIL_ITEM_MAX_BYTES:
            last.raw += raw
            last.size += len(raw)
        else:
            self._tail.append(_TailItem(kind, bytearray(raw), None, len(raw)))
        self._tail_bytes += len(raw)
        self._evict()

    def _evict(self) -> None:
        """Drop the tail's oldest output until it fits, text from its front by whole lines."""
        while self._tail_bytes > self.tail_max_bytes:
            first = self._tail[0]
            over = self._tail_bytes - self.tail_max_bytes
            if first.raw is not None and first.size > over:
                cut = _line_cut(first.raw, over)
                if cut < first.size:
                    del first.raw[:cut]
                    first.size -= cut
                    self._tail_bytes -= cut
                    self._cut(cut)
                    continue
            self._tail.popleft()
            self._tail_bytes -= first.size
            self._cut(first.size)

    def _keep_text(self, kind: ChunkKind, raw: bytes) -> None:
        if not raw:
            return
        if self.tailing:
            self._tail_text(kind, raw)
            return
        room = self.head_max_bytes - self.kept_bytes
        if len(raw) > room:
            cut = _utf8_boundary(raw, room)
            head, rest = raw[:cut], raw[cut:]
            self.tailing = True
            self._emit_text(kind, head)
            self.kept_bytes += len(head)
            self._tail_text(kind, rest)
            return
        self.kept_bytes += len(raw)
        self._emit_text(kind, raw)

    def _emit_text(self, kind: ChunkKind, raw: bytes) -> None:
        """Append text to the pending chunks: top up the last one of its kind, then chunks of ≤ the batch size."""
        limit = self.batch_max_bytes
        while raw:
            # Top up the last pending chunk of the same kind, then cut new chunks of ≤ limit bytes.
            if self._pending and self._pending[-1]["kind"] == kind and self._pending[-1]["data"] is None:
                room_here = limit - self._pending_sizes[-1]
            else:
                room_here = 0
            if room_here > 0:
                cut = _utf8_boundary(raw, room_here)
                if cut > 0:
                    self._pending[-1]["text"] += raw[:cut].decode("utf-8", "replace")
                    self._pending_sizes[-1] += cut
                    raw = raw[cut:]
                    continue
            cut = _utf8_boundary(raw, limit) or len(raw)
            self._append(kind, raw[:cut].decode("utf-8", "replace"), None, cut)
            raw = raw[cut:]

    def _append(self, kind: ChunkKind, text: str, data: dict[str, Any] | None, size: int) -> None:
        self._pending.append({"index": self.next_index, "kind": kind, "text": text, "data": data})
        self._pending_sizes.append(size)
        self.next_index += 1

    def release(self) -> None:
        """The row exists and `started` is out: write and publish from now on."""
        self._held = False
        self._kick()

    def _kick(self) -> None:
        if self._held:
            return
        if self._pending:
            outbox().want(self)
        elif self._held_untold() and not self._in_flight and self._telling is None:
            # The head is out: say that the rest is held until the run ends.
            self._held_told = True
            self._telling = asyncio.ensure_future(self._tell_held())
        self._wake()

    def _held_untold(self) -> bool:
        return self.tailing and not self._held_told

    async def _tell_held(self) -> None:
        try:
            held: events.HeldMessage = {"type": "execution.held", "frame": {
                "type": "execution.held", "execution_id": self.execution_id,
                "head_bytes": self.head_max_bytes, "tail_bytes": self.tail_max_bytes}}
            await publish(self.group, dict(held))
        finally:
            self._telling = None
            self._wake()

    def _take_batch(self) -> tuple[list[Chunk], int]:
        total, n = 0, 0
        for size in self._pending_sizes:
            if n and total + size > self.batch_max_bytes:
                break
            total += size
            n += 1
        batch = self._pending[:n]
        del self._pending[:n]
        del self._pending_sizes[:n]
        return batch, total

    # The outbox's side (outbox.Source).

    def take_batches(self, max_batches: int, max_bytes: int) -> tuple[list[list[Chunk]], int]:
        batches: list[list[Chunk]] = []
        total = 0
        while self._pending and len(batches) < max_batches and (not batches or total < max_bytes):
            batch, size = self._take_batch()
            batches.append(batch)
            total += size
        if batches:
            self._in_flight += 1
        return batches, total

    async def stored(self, batches: list[list[Chunk]]) -> None:
        try:
            for batch in batches:
                await self.publish(batch)
        finally:
            self._in_flight -= 1
            self._kick()

    def lost(self, exc: BaseException) -> None:
        self._in_flight -= 1
        self._kick()

    def _idle(self) -> bool:
        return not (self._pending and not self._held) and not self._in_flight and self._telling is None

    def _wake(self) -> None:
        if self._waiters and self._idle():
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters = []

    async def publish(self, batch: list[Chunk]) -> None:
        message: events.OutputMessage = {"type": "execution.output", "execution_id": self.execution_id, "chunks": batch}
        await publish(self.group, dict(message))

    def take_all_if_idle(self) -> list[list[Chunk]]:
        """Every pending batch, when no write of this run is in flight (else [] and the outbox keeps them)."""
        if self._in_flight or self._telling is not None:
            return []
        outbox().forget(self)
        batches = []
        while self._pending:
            batches.append(self._take_batch()[0])
        return batches

    def has_pending(self) -> bool:
        """Whether output is waiting that no write has taken yet."""
        return bool(self._pending)

    async def drain(self) -> None:
        """Wait until everything received so far is stored and published (or, past DB_RETRY_FOR_S
        of outage, lost and logged)."""
        self._held = False
        self._kick()
        while not self._idle():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


def _utf8_boundary(raw: bytes, limit: int) -> int:
    """The largest cut ≤ limit that doesn't split a UTF-8 character."""
    if limit >= len(raw):
        return len(raw)
    cut = max(limit, 0)
    while cut > 0 and (raw[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def _line_cut(raw: bytes | bytearray, at_least: int) -> int:
    """Where to cut `raw`'s front to drop at least `at_least` bytes: just after a line break when
    one follows, else at the next UTF-8 character boundary."""
    if at_least <= 0:
        return 0
    newline = raw.find(b"\n", at_least - 1)
    if newline != -1:
        return newline + 1
    cut = min(at_least, len(raw))
    while cut < len(raw) and (raw[cut] & 0xC0) == 0x80:
        cut += 1
    return cut
