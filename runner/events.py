"""What the server sends: websocket frames (TypedDicts, as in ARCHITECTURE.md) and group names.

Two layers of messages:
- **frames** go to the browser, exactly as in the websocket protocol;
- **group messages** go through the channel layer to every socket of a session. A group message
  has a dotted `type` that the consumer handles with the matching method, and carries the frames
  it expands to. Output goes as one group message per batch, so a flood is a few messages.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, NotRequired, TypedDict

ErrorCode = Literal["bad_request", "quota", "rate_limited", "unavailable", "forbidden", "not_found"]
ChunkKind = Literal["stdout", "stderr", "result", "error"]

# Marks a chunk the server wrote (a note, the truncation marker) rather than the code: its `data`.
NOTICE_MARKER = "sandpit/notice"
# Marks a result that was the run's value (Jupyter's execute_result, E2B's is_main_result): in its `data`.
MAIN_RESULT_MARKER = "sandpit/main"


# --- frames: server → browser -------------------------------------------------------------------


class LastPointer(TypedDict):
    execution_id: int
    index: int  # the last stored output index of that execution, or -1 when it has none yet


class HelloFrame(TypedDict):
    type: Literal["hello"]
    session_id: str
    can_run: bool
    can_comment: bool  # a teacher of the session's owner: may comment on runs (never run)
    backend: str
    last: LastPointer | None


class QueuedFrame(TypedDict):
    type: Literal["execution.queued"]
    execution_id: int
    seq: int
    client_id: str
    code: str
    language: str
    # Present only on a session's first run when it named the session (issue 14).
    session_title: NotRequired[str]


class StartedFrame(TypedDict):
    type: Literal["execution.started"]
    execution_id: int
    # Present only when set: an inline note such as "A new sandbox was started; ...".
    notice: NotRequired[str]


class StartingFrame(TypedDict):
    """The run waits for its sandbox: in line for room on the server (`ahead` sessions before it) or
    while one is created (`ahead` 0). Re-sent when `ahead` changes and to a socket that joins meanwhile;
    `execution.started` ends it."""

    type: Literal["execution.starting"]
    execution_id: int
    ahead: int
    since: str  # ISO 8601, when the wait began
    waited_ms: int  # how long it has waited when this frame was made (the page's clock may differ)


class OutputFrame(TypedDict):
    type: Literal["execution.output"]
    execution_id: int
    index: int
    kind: ChunkKind
    text: NotRequired[str]
    data: NotRequired[dict[str, Any]]


class HeldFrame(TypedDict):
    """The run's output went past the cap's head: what follows is held (its last `tail_bytes`) and
    written, after a "… cut …" marker, when the run ends. Live only (not stored, not replayed)."""

    type: Literal["execution.held"]
    execution_id: int
    head_bytes: int
    tail_bytes: int


class FinishedFrame(TypedDict):
    type: Literal["execution.finished"]
    execution_id: int
    status: str
    duration_ms: int | None
    truncated: bool


class SandboxStateFrame(TypedDict):
    """The session's sandbox was closed: the header chip shows `text`. `state` is "stopped" when an
    admin, a budget or a revoked key closed it (then `notice` says why), else "closed"."""

    type: Literal["sandbox.state"]
    state: Literal["closed", "stopped"]
    text: str
    reason: str  # the lease's end reason
    notice: NotRequired[str]


class ErrorFrame(TypedDict):
    type: Literal["error"]
    code: ErrorCode
    message: str


class InputRequestFrame(TypedDict):
    """The run's code asked for a line of input (Python's input()); answered by an `input_reply`."""

    type: Literal["execution.input_request"]
    execution_id: int
    prompt: str
    password: bool


class PongFrame(TypedDict):
    type: Literal["pong"]


class CommentFrame(TypedDict):
    """`comment.added` (version 1) or `comment.changed` (later versions): the comment's whole state.
    Clients upsert by `comment_id` and keep the highest `version`, so repeats and reordering are harmless."""

    type: Literal["comment.added", "comment.changed"]
    comment_id: int
    execution_id: int
    version: int
    author: str  # the author's display name (never a user id)
    body: str  # as written (plain text or markdown)
    html: str  # the body rendered through the same nh3 path as results: safe to insert
    created_at: str  # ISO 8601
    edited_at: str | None
    can_edit: bool  # whether the receiving user wrote it (only the author edits or deletes)
    unread: bool  # the receiving user owns the session and hasn't seen this text yet


class CommentDeletedFrame(TypedDict):
    type: Literal["comment.deleted"]
    comment_id: int
    execution_id: int
    version: int


# --- chunks as stored and published -------------------------------------------------------------


class Chunk(TypedDict):
    index: int
    kind: ChunkKind
    text: str
    data: dict[str, Any] | None


def output_frame(execution_id: int, chunk: Chunk) -> OutputFrame:
    frame: OutputFrame = {"type": "execution.output", "execution_id": execution_id, "index": chunk["index"], "kind": chunk["kind"]}
    if chunk["kind"] in ("stdout", "stderr") or chunk["text"]:
        frame["text"] = chunk["text"]
    if chunk["data"] is not None:
        frame["data"] = chunk["data"]
    return frame


def started_frame(execution_id: int, notice: str = "") -> StartedFrame:
    frame: StartedFrame = {"type": "execution.started", "execution_id": execution_id}
    if notice:
        frame["notice"] = notice
    return frame


def error_frame(code: ErrorCode, message: str) -> ErrorFrame:
    return {"type": "error", "code": code, "message": message}


# --- group messages: services → every socket of a session ----------------------------------------
# Each is {"type": <dotted>, ...}; the consumer method of the same name relays it.


class QueuedMessage(TypedDict):
    type: Literal["execution.queued"]
    frame: QueuedFrame


class StartedMessage(TypedDict):
    type: Literal["execution.started"]
    frame: StartedFrame


class StartingMessage(TypedDict):
    type: Literal["execution.starting"]
    frame: StartingFrame


class OutputMessage(TypedDict):
    type: Literal["execution.output"]
    execution_id: int
    chunks: list[Chunk]


class HeldMessage(TypedDict):
    type: Literal["execution.held"]
    frame: HeldFrame


class FinishedMessage(TypedDict):
    type: Literal["execution.finished"]
    frame: FinishedFrame


class RunErrorMessage(TypedDict):
    """An `error` frame for every socket of the session, e.g. code "unavailable" in degraded mode."""

    type: Literal["run.error"]
    frame: ErrorFrame


class InputRequestMessage(TypedDict):
    type: Literal["execution.input_request"]
    frame: InputRequestFrame


class InputReplyMessage(TypedDict):
    """A line typed for a run's input(), for the process that owns the run (`process_channel`)."""

    type: Literal["execution.input_reply"]
    execution_id: int
    value: str


class CancelMessage(TypedDict):
    """Stop request for the process that owns a run (sent to `process_channel(owner_boot_id)`)."""

    type: Literal["execution.cancel"]
    execution_id: int


class SandboxRestartMessage(TypedDict):
    """Restart request for the process holding a session's sandbox (sent to its process channel).
    It answers `{"type": "sandbox.restarted"}` on `reply_channel` once the sandbox is closed."""

    type: Literal["sandbox.restart"]
    session_id: str
    reply_channel: str
    # The lease's end reason: "restart", or "admin" when an admin kills it from the usage page.
    reason: NotRequired[str]
    # The admin's reason, for the notice the run in progress ends with.
    note: NotRequired[str]


class CommentMessage(TypedDict):
    """A comment was added, edited or deleted: each socket reads its current state (as that socket's
    user may see it) and sends a CommentFrame or CommentDeletedFrame."""

    type: Literal["comment.event"]
    comment_id: int


class AccessRecheckMessage(TypedDict):
    """Memberships changed (a student removed, a teacher left): each socket re-asks the access rule
    and closes with 4403 when its user may no longer see the session."""

    type: Literal["access.recheck"]


class AuthRevokedMessage(TypedDict):
    """The user was deactivated or their password changed: each of their sockets closes with 4401
    (the page reconnects; a session that no longer authenticates then gets 4403)."""

    type: Literal["auth.revoked"]


# --- names --------------------------------------------------------------------------------------


def session_group(session_id: uuid.UUID | str) -> str:
    """The channel-layer group of one chat session: every socket viewing it."""
    hex_id = session_id.hex if isinstance(session_id, uuid.UUID) else uuid.UUID(str(session_id)).hex
    return f"session_{hex_id}"


def user_group(user_id: int) -> str:
    """The channel-layer group of every socket one user has open, on any session."""
    return f"user_{int(user_id)}"


def process_channel(boot_id: str) -> str:
    """The channel one server process listens on for requests about what it owns (Stop, restart)."""
    return f"sandpit-runner.{boot_id}"


class ReplayFilter:
    """Drops live events a replay already sent.

    A socket joins its group before the replay query, so an event can arrive both ways; this
    keeps each `(execution_id, index)` and each queued/started/finished once.
    """

    def __init__(self) -> None:
        self._max_index: dict[int, int] = {}
        self._sent: set[tuple[int, str]] = set()

    def mark_seen_before(self, execution_id: int, index: int) -> None:
        """The client said it has everything of `execution_id` up to `index` (and its start)."""
        self._max_index[execution_id] = index
        self._sent.update({(execution_id, "execution.queued"), (execution_id, "execution.started")})

    def note(self, frame: dict[str, Any]) -> None:
        """Record a frame the replay sent."""
        execution_id = frame["execution_id"]
        if frame["type"] == "execution.output":
            self._max_index[execution_id] = max(self._max_index.get(execution_id, -1), frame["index"])
        else:
            self._sent.add((execution_id, frame["type"]))

    def is_fresh(self, frame: dict[str, Any]) -> bool:
        return (frame["execution_id"], frame["type"]) not in self._sent

    def fresh_chunks(self, execution_id: int, chunks: list[Chunk]) -> list[Chunk]:
        seen = self._max_index.get(execution_id)
        if seen is None:
            return chunks
        return [chunk for chunk in chunks if chunk["index"] > seen]
