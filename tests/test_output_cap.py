"""The output cap keeps the head and the tail (issue 20, 5.3): OutputWriter on its own, held (nothing
is written), so what it would write is its pending chunks, in index order."""

from __future__ import annotations

from typing import Any

from django.test import override_settings

from runner.sandboxes.base import Error, OutputLost, Result, Stdout
from runner.services.output import NOTICE_MARKER, OutputWriter, human_bytes


def held_writer(*, cap_bytes: int, tail_bytes: int) -> OutputWriter:
    with override_settings(RUN_OUTPUT_MAX_BYTES=cap_bytes, RUN_OUTPUT_TAIL_BYTES=tail_bytes):
        return OutputWriter(group="nobody")  # held until release(): never writes


def written(writer: OutputWriter) -> list[dict[str, Any]]:
    return list(writer._pending)


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["text"] for c in chunks if c["kind"] == "stdout")


def split_at_marker(chunks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    at = [i for i, c in enumerate(chunks) if (c["data"] or {}).get(NOTICE_MARKER) == "truncated"]
    assert len(at) == 1, chunks
    return chunks[: at[0]], chunks[at[0]], chunks[at[0] + 1:]


def test_past_the_cap_the_head_and_the_last_lines_are_kept_around_a_marker() -> None:
    writer = held_writer(cap_bytes=2000, tail_bytes=500)
    lines = [f"line {i}\n" for i in range(100_000)]
    for line in lines:
        writer.on_event(Stdout(line))
    writer.end()
    whole = "".join(lines)
    chunks = written(writer)
    head, marker, tail = split_at_marker(chunks)
    assert text_of(head) == whole[:1500]
    tail_text = text_of(tail)
    assert whole.endswith(tail_text) and tail_text.startswith("line ") and len(tail_text) <= 500
    assert len(tail_text) > 500 - len(lines[-1])  # as many whole last lines as fit
    cut = len(whole) - 1500 - len(tail_text)
    assert marker["kind"] == "stderr" and marker["text"] == f"… {human_bytes(cut)} cut …\n"
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert writer.truncated


def test_the_tail_is_a_bounded_ring_while_output_floods_in() -> None:
    writer = held_writer(cap_bytes=64 * 1024, tail_bytes=16 * 1024)
    for i in range(20_000):
        writer.on_event(Stdout(f"{i:08d} " + "y" * 500 + "\n"))  # 10 MB in all
        assert writer._tail_bytes <= 16 * 1024 and len(writer._tail) <= 2
    assert sum(len(c["text"]) for c in written(writer)) == 48 * 1024  # only the head is pending until the end
    writer.end()
    assert text_of(written(writer)).endswith(f"{19_999:08d} " + "y" * 500 + "\n")


def test_a_big_single_print_keeps_its_first_and_last_bytes() -> None:
    writer = held_writer(cap_bytes=1000, tail_bytes=400)
    text = "".join(f"{i:04d}\n" for i in range(2000))
    writer.on_event(Stdout(text))
    writer.end()
    head, marker, tail = split_at_marker(written(writer))
    assert text_of(head) == text[:600]
    assert text_of(tail) == text[-400:]
    assert marker["text"] == f"… {human_bytes(len(text) - 1000)} cut …\n"


def test_output_between_the_head_and_the_cap_is_all_kept_with_no_marker() -> None:
    writer = held_writer(cap_bytes=1000, tail_bytes=400)
    lines = [f"{i:03d} " + "z" * 95 + "\n" for i in range(9)]  # 900 bytes: past the head, under the cap
    for line in lines:
        writer.on_event(Stdout(line))
    writer.end()
    assert text_of(written(writer)) == "".join(lines)
    assert not writer.truncated
    assert not any((c["data"] or {}).get(NOTICE_MARKER) for c in written(writer))


def test_the_error_at_the_end_of_a_flood_is_kept_after_the_marker() -> None:
    writer = held_writer(cap_bytes=2000, tail_bytes=800)
    for i in range(10_000):
        writer.on_event(Stdout(f"step {i}\n"))
    writer.on_event(Result({"text/plain": "42"}, is_main=False))
    writer.on_event(Error("ZeroDivisionError", "division by zero", ["Traceback", "ZeroDivisionError: division by zero"]))
    writer.end()
    head, marker, tail = split_at_marker(written(writer))
    assert [c["kind"] for c in tail][-2:] == ["result", "error"]
    assert tail[-1]["data"]["ename"] == "ZeroDivisionError"
    assert text_of(tail).endswith("step 9999\n")


def test_lost_output_in_the_head_is_marked_where_it_was_and_output_goes_on() -> None:
    writer = held_writer(cap_bytes=2 * 1024 * 1024, tail_bytes=128 * 1024)
    writer.on_event(Stdout("before\n"))
    writer.on_event(OutputLost(40_000_000, "an output message over 32 MiB was too large to receive"))
    writer.on_event(Stdout("after\n"))
    writer.end()
    assert [(c["kind"], c["text"]) for c in written(writer)] == [
        ("stdout", "before\n"),
        ("stderr", "… 38.1 MiB cut: an output message over 32 MiB was too large to receive …\n"),
        ("stdout", "after\n"),
    ]
    assert writer.truncated


def test_a_server_note_past_the_head_follows_the_tail_it_came_after() -> None:
    writer = held_writer(cap_bytes=1000, tail_bytes=400)
    for i in range(1000):
        writer.on_event(Stdout(f"{i:04d}\n"))
    writer.note("The server failed while running this; the error is in its log.")
    writer.end()
    chunks = written(writer)
    assert chunks[-1]["data"] == {NOTICE_MARKER: "server"}
    assert text_of(chunks).endswith("0999\n")
    assert sum(1 for c in chunks if (c["data"] or {}).get(NOTICE_MARKER) == "truncated") == 1
