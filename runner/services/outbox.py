"""The process's one output writer: every run's pending chunks in one transaction per tick, then
each run's chunks published in order.

`OutputWriter` (output.py) numbers, caps and batches one run's output; it hands the writing to
the `Outbox` of its event loop (`outbox()`), a `Source` among many. A tick takes up to
WRITE_MAX_BATCHES batches from every source waiting (at most TICK_MAX_BYTES in all), stores them
with one `executemany` in one transaction (`db_retry`: an outage retries the whole tick), and
publishes each source's batches, in order, only once they are committed. While a tick's batches
are published the next tick is written; nothing waits when the outbox is idle (a lone event is
written at once). A tick that fails for another reason than an outage (one run's row deleted, so a
foreign key fails) is written again run by run, so the others' chunks still land.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any, Protocol

from django.db import connection, transaction

from runner.events import Chunk
from runner.models import OutputChunk
from runner.services import runtime
from runner.services.runtime import db_retry

log = logging.getLogger(__name__)

# At most this many batches of one run are stored per tick while output floods in.
WRITE_MAX_BATCHES = 16
# A tick stops taking sources past this many bytes (each source waiting still gets one batch in
# turn: a source left out goes first in the next tick).
TICK_MAX_BYTES = 4 * 1024 * 1024

PUBLISH_FAILURE_LOG_EVERY_S = 5.0
_publish_failures = runtime.LogThrottle(PUBLISH_FAILURE_LOG_EVERY_S)


async def publish(group: str, message: dict[str, Any]) -> None:
    """Send a group message to every socket of a session.

    Best effort: what a run publishes is stored first, and a socket that misses a message (the
    channel layer down, say Redis restarting) catches up through replay when it reconnects or sees
    a gap. So a failed send is logged (at most every PUBLISH_FAILURE_LOG_EVERY_S), never raised:
    the run goes on and ends as usual.
    """
    try:
        await runtime.channel_layer().group_send(group, message)
    except Exception as exc:
        if _publish_failures.due():
            log.warning("channel layer send failed (%s: %s); sockets catch up through replay", type(exc).__name__, exc)


class Source(Protocol):
    """One run's output as the outbox sees it (`OutputWriter`)."""

    execution_id: int

    def take_batches(self, max_batches: int, max_bytes: int) -> tuple[list[list[Chunk]], int]:
        """Up to `max_batches` pending batches (at least one if any is pending) and their bytes."""
        ...

    def has_pending(self) -> bool: ...

    async def stored(self, batches: list[list[Chunk]]) -> None:
        """`batches` (taken by the last tick) are committed: publish them, in order."""
        ...

    def lost(self, exc: BaseException) -> None:
        """The last tick's batches could not be stored (`exc`): they are gone."""
        ...


Tick = list[tuple[Source, list[list[Chunk]]]]


class Outbox:
    """Writes the pending chunks of every source on one event loop: see the module's docstring."""

    def __init__(self) -> None:
        self._waiting: dict[Source, None] = {}  # an ordered set: sources with pending chunks
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0  # ticks written (for benchmarks)

    def want(self, source: Source) -> None:
        """`source` has pending chunks: take them in the next tick (now, when idle)."""
        self._waiting.setdefault(source, None)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def forget(self, source: Source) -> None:
        """`source` took its pending chunks back (to store them with the run's end)."""
        self._waiting.pop(source, None)

    def _take(self) -> Tick:
        tick: Tick = []
        total = 0
        for source in list(self._waiting):
            if total >= TICK_MAX_BYTES:
                break
            del self._waiting[source]
            batches, size = source.take_batches(WRITE_MAX_BATCHES, TICK_MAX_BYTES - total)
            total += size
            if batches:
                tick.append((source, batches))
            if source.has_pending():
                self._waiting[source] = None  # more than a tick's share: at the back of the line
        return tick

    async def _run(self) -> None:
        stored: Tick = []  # committed, not yet published
        try:
            while self._waiting or stored:
                tick = self._take()
                writing = asyncio.ensure_future(self._write(tick)) if tick else None
                try:
                    # The previous tick is published while this one is stored (each run's batches
                    # only after their own commit, in order).
                    for failed in await asyncio.gather(*(source.stored(batches) for source, batches in stored), return_exceptions=True):
                        if isinstance(failed, Exception):
                            log.error("publishing output failed", exc_info=failed)
                finally:
                    stored = []
                    if writing is not None:
                        stored = await writing
        finally:
            self._task = None

    async def _write(self, tick: Tick) -> Tick:
        """Store `tick` in one transaction; what could not be stored is lost to its source."""
        self.ticks += 1
        rows = [(source.execution_id, [c for batch in batches for c in batch]) for source, batches in tick]
        try:
            await db_retry(store_runs_chunks_sync, runs=rows)
            return tick
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(tick) == 1:
                return self._lose(tick, exc)
        # One run's chunks spoilt the tick (its row is gone, say): each run on its own.
        kept: Tick = []
        for (source, batches), (execution_id, chunks) in zip(tick, rows):
            try:
                await db_retry(store_chunks_sync, execution_id=execution_id, chunks=chunks)
                kept.append((source, batches))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lose([(source, batches)], exc)
        return kept

    @staticmethod
    def _lose(tick: Tick, exc: BaseException) -> Tick:
        for source, batches in tick:
            log.error("output of run %s lost (%d chunks): %s", source.execution_id, sum(map(len, batches)), exc)
            source.lost(exc)
        return []


_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Outbox] = weakref.WeakKeyDictionary()


def outbox() -> Outbox:
    """The running event loop's outbox (a server process has one loop, so one writer)."""
    loop = asyncio.get_running_loop()
    box = _outboxes.get(loop)
    if box is None:
        box = _outboxes[loop] = Outbox()
    return box


def store_chunks_sync(*, execution_id: int, chunks: list[Chunk]) -> None:
    """One run's chunks, in one transaction (or the caller's)."""
    store_runs_chunks_sync(runs=[(execution_id, chunks)])


def store_runs_chunks_sync(*, runs: list[tuple[int, list[Chunk]]]) -> None:
    """Insert every run's chunks with one `executemany` on the driver's cursor, in one transaction.

    Not `bulk_create`: with DEBUG on (the embedded default) Django's debug cursor renders every
    query with its parameters inlined and keeps it in `connection.queries` (up to 9000 entries; a
    socket never resets it). For a 1 MiB flood write that quoting was a third of the database
    thread's time, and the kept strings grew the server by megabytes per run.
    A chunk already stored (a retry after a commit whose answer was lost) is skipped, so each
    chunk lands exactly once.
    """
    data_field = OutputChunk._meta.get_field("data")
    rows = [
        (execution_id, c["index"], c["kind"], c["text"], None if c["data"] is None else data_field.get_db_prep_save(c["data"], connection))
        for execution_id, chunks in runs
        for c in chunks
    ]
    if not rows:
        return
    runtime.last_output_write_s = time.monotonic()
    # One transaction, as bulk_create (a savepoint-free no-op inside the caller's own).
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        # `.cursor` is the backend's own cursor (SQLite's takes %s via Django's wrapper; psycopg natively).
        cursor.cursor.executemany(_insert_chunk_sql(), rows)


def _insert_chunk_sql() -> str:
    table = connection.ops.quote_name(OutputChunk._meta.db_table)
    column_of = {field.name: field.column for field in OutputChunk._meta.concrete_fields if field.column}
    execution, index = (connection.ops.quote_name(column_of[f]) for f in ("execution", "index"))
    columns = ", ".join(connection.ops.quote_name(column_of[f]) for f in ("execution", "index", "kind", "text", "data"))
    return f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s) ON CONFLICT ({execution}, {index}) DO NOTHING"
