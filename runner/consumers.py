"""The session websocket, `ws/sessions/<id>/`: authenticate, join the group, hand requests to
services, relay group events. The protocol is in ARCHITECTURE.md ("The websocket protocol")."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.consumer import get_handler_name
from django.conf import settings

from runner import events, selectors, services
from runner.events import ErrorCode
from runner.sandboxes.base import LANGUAGES, PAGE_LANGUAGES


log = logging.getLogger(__name__)

WS_RATE_WINDOW_S = 10
# Joining the session's group (one channel-layer call): past this, or on any error (Redis down or
# restarting), the socket closes with 4503 ("try again": Daphne accepts only 1000 and 3000-4999)
# and the page reconnects.
GROUP_JOIN_TIMEOUT_S = 10
CLOSE_TRY_AGAIN = 4503
# The user was deactivated or changed their password: the page reconnects, and a session that no
# longer authenticates is then refused with 4403.
CLOSE_CREDENTIALS_CHANGED = 4401

T = TypeVar("T")


async def _within(awaitable: Awaitable[T], timeout_s: float) -> T:
    """`awaitable`'s result, or TimeoutError after `timeout_s`. Unlike `asyncio.wait_for`, a timed-out
    call is cancelled but not waited for: redis-py can swallow a cancellation while it reconnects
    (seen in the Redis drill), and waiting for it would hang this socket with it."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        raise TimeoutError(f"no answer within {timeout_s} s")
    return task.result()

# Messages whose handlers reach the database only through services' `db()` (which keeps its
# connection and closes it when found broken), or not at all: the group messages relayed to the
# socket, and the client's frames (run, stop, ping).
_KEEPS_CONNECTION = frozenset(
    {
        "execution.queued", "execution.starting", "execution.started", "execution.output", "execution.finished", "execution.input_request", "run.error",
        "websocket.receive", "comment.event", "access.recheck", "auth.revoked",
    }
)


class SessionConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    user_group: str | None = None
    closed = False

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs `close_old_connections` before every handler: a hop onto the one database
        # thread, queued behind the run's output writes, and with CONN_MAX_AGE=0 it closes the
        # connection those writes keep open (a reconnect per run, per output message). A flood's
        # 150+ output messages and every run request skip it; connect and disconnect don't.
        if message["type"] in _KEEPS_CONNECTION:
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)

    async def connect(self) -> None:
        # Accept first: a close code (4403/4404) only reaches the browser on an accepted socket.
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4403)
            return
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        session, access = await selectors.session_with_access(session_id=session_id, user=user)
        if session is None:
            await self.close(code=4404)
            return
        if access is None:
            await self.close(code=4403)
            return
        self.session, self.access = session, access
        self.seen = events.ReplayFilter()
        # The rate-limit window this socket last told its user about (once per window is enough).
        self.rate_told_window = -1
        await services.runtime_ensure_started()

        # Join before reading the replay, so nothing falls between the two; `seen` drops repeats.
        group = events.session_group(session.id)
        user_group = events.user_group(user.pk)
        try:
            await _within(self.channel_layer.group_add(group, self.channel_name), GROUP_JOIN_TIMEOUT_S)
            self.group = group
            await _within(self.channel_layer.group_add(user_group, self.channel_name), GROUP_JOIN_TIMEOUT_S)
            self.user_group = user_group
        except Exception as exc:
            # Closed here, not raised: an exception would end in Channels' teardown, which waits for
            # this socket's channel receive, which a Redis restart can leave stuck for good (the
            # socket then stays open and silent). The page reconnects and replays what it missed.
            log.warning("could not join session %s's group (%s: %s); the socket closes and the page reconnects",
                        session.id, type(exc).__name__, exc)
            self.closed = True
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        # Deactivated or given a new password since this socket authenticated (before its group
        # could tell it): close as the group's message would have.
        if not await selectors.user_credentials_current(user=user):
            await self.auth_revoked({"type": "auth.revoked"})
            return
        if access != "owner":
            # Access that membership gives may have ended before the group could tell us: ask again.
            if not await self._access_still_held(session=session, user=user):
                return
        hello: events.HelloFrame = {
            "type": "hello",
            "session_id": str(session.id),
            "can_run": self.access == "owner",
            "can_comment": self.access == "teacher",
            "backend": services.backend_name(),
            "last": await selectors.execution_last_pointer(session_id=session.id),
        }
        await self.send_json(hello)

        after, problem = _after_point(self.scope.get("query_string", b""))
        if problem:
            await self.send_error("bad_request", problem)
        elif after is not None:
            self.seen.mark_seen_before(*after)
            for frame in await selectors.execution_replay(session_id=session.id, after_execution=after[0], after_index=after[1]):
                self.seen.note(frame)
                await self.send_json(frame)
            # Comments as they stand now (edits and deletions made while away included).
            for frame in await selectors.comment_replay(session_id=session.id, viewer=user):
                await self.send_json(frame)
        for starting in services.execution_starting_pending(session_id=session.id):  # waiting for a sandbox since before this socket
            await self.send_json(starting)
        for waiting in services.execution_inputs_pending(session_id=session.id):  # input() asked before this socket
            await self.send_json(waiting)

    async def disconnect(self, code: int) -> None:
        await self._leave_group()

    async def _leave_group(self) -> None:
        """Leave the session's group and the user's."""
        for attr in ("group", "user_group"):
            group = getattr(self, attr)
            if group is not None:
                setattr(self, attr, None)
                await self.channel_layer.group_discard(group, self.channel_name)

    async def send_json(self, content: dict[str, Any], close: bool = False) -> None:
        if not self.closed:  # after a 4403 close nothing more reaches this socket
            await super().send_json(content, close=close)

    # --- client → server --------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed:
            return
        # Per user, over all their sockets and server processes (counted in the shared cache).
        verdict = await services.ratelimit_hit(
            scope="ws", user_id=self.scope["user"].pk, limit=settings.WS_MESSAGES_PER_10S, window_s=WS_RATE_WINDOW_S
        )
        if not verdict.allowed:
            if self.rate_told_window != verdict.window:
                self.rate_told_window = verdict.window
                await self.send_error("rate_limited", f"Too many messages from you (all your tabs count): {verdict.message}.")
            return
        if text_data is None:
            await self.send_error("bad_request", "Binary frames are not supported; send JSON text.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("bad_request", "That message is not JSON.")
            return
        if not isinstance(content, dict):
            await self.send_error("bad_request", "A message must be a JSON object with a \"type\".")
            return
        kind = content.get("type")
        handlers = {"run": self.on_run, "stop": self.on_stop, "ping": self.on_ping, "input_reply": self.on_input_reply}
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self.send_error("bad_request", f"Unknown message type {str(kind)[:40]!r}; use run, stop, input_reply or ping.")
            return
        await handler(content)

    async def on_run(self, content: dict[str, Any]) -> None:
        if self.access != "owner":
            await self.send_error("forbidden", "You can watch this session but not run code in it.")
            return
        language = content.get("language")
        if isinstance(language, str) and language not in PAGE_LANGUAGES:
            # R is the E2B API's only: the page has no picker, renderer or export for it.
            said = (f"{language} runs only through the E2B-compatible API here" if language in LANGUAGES
                    else f"Unknown language {language[:40]!r}")
            await self.send_error("bad_request", f"{said}; use one of {', '.join(sorted(PAGE_LANGUAGES))}.")
            return
        try:
            await services.execution_start(
                session=self.session, user=self.scope["user"], code=content.get("code"),
                language=content.get("language"), client_id=content.get("client_id", ""),
            )
        except services.RunRejected as rejected:
            await self.send_error(rejected.code, rejected.message)

    async def on_stop(self, content: dict[str, Any]) -> None:
        if self.access != "owner":
            await self.send_error("forbidden", "You can watch this session but not stop its runs.")
            return
        try:
            await services.execution_cancel(session=self.session, user=self.scope["user"], execution_id=content.get("execution_id"))
        except services.RunRejected as rejected:
            await self.send_error(rejected.code, rejected.message)

    async def on_input_reply(self, content: dict[str, Any]) -> None:
        if self.access != "owner":
            await self.send_error("forbidden", "You can watch this session but not answer its input.")
            return
        try:
            await services.execution_input_reply(
                session=self.session, user=self.scope["user"], execution_id=content.get("execution_id"), value=content.get("value"),
            )
        except services.RunRejected as rejected:
            await self.send_error(rejected.code, rejected.message)

    async def on_ping(self, content: dict[str, Any]) -> None:
        await self.send_json({"type": "pong"})

    async def send_error(self, code: ErrorCode, message: str) -> None:
        await self.send_json(events.error_frame(code, message))

    # --- group events → this socket ---------------------------------------------------------------

    async def execution_queued(self, message: dict[str, Any]) -> None:
        await self._relay(message["frame"])

    async def execution_starting(self, message: dict[str, Any]) -> None:
        await self.send_json(message["frame"])

    async def execution_started(self, message: dict[str, Any]) -> None:
        await self._relay(message["frame"])

    async def execution_finished(self, message: dict[str, Any]) -> None:
        await self._relay(message["frame"])

    async def execution_output(self, message: dict[str, Any]) -> None:
        execution_id = message["execution_id"]
        for chunk in self.seen.fresh_chunks(execution_id, message["chunks"]):
            await self.send_json(events.output_frame(execution_id, chunk))

    async def execution_held(self, message: dict[str, Any]) -> None:
        await self.send_json(message["frame"])

    async def execution_input_request(self, message: dict[str, Any]) -> None:
        await self.send_json(message["frame"])

    async def run_error(self, message: dict[str, Any]) -> None:
        await self.send_json(message["frame"])

    async def sandbox_state(self, message: dict[str, Any]) -> None:
        await self.send_json(message["frame"])

    async def comment_event(self, message: dict[str, Any]) -> None:
        frame = await selectors.comment_frame(comment_id=message["comment_id"], session_id=self.session.id, viewer=self.scope["user"])
        if frame is not None:
            await self.send_json(frame)

    async def access_recheck(self, message: dict[str, Any]) -> None:
        """Memberships changed: re-ask the access rule; a user who may no longer see the session is
        closed with 4403 at once."""
        if self.closed:
            return
        await self._access_still_held(session=self.session, user=self.scope["user"])

    async def auth_revoked(self, message: dict[str, Any]) -> None:
        """The user was deactivated or changed their password: close with 4401 at once."""
        if self.closed:
            return
        self.closed = True
        await self._leave_group()
        await self.close(code=CLOSE_CREDENTIALS_CHANGED)

    async def _access_still_held(self, *, session: Any, user: Any) -> bool:
        """Re-ask the access rule; on None, leave the group and close with 4403 (returns False)."""
        access = await selectors.session_access_now(session=session, user=user)
        if access is None:
            await self._leave_group()
            await self.close(code=4403)
            self.closed = True
            return False
        self.access = access
        return True

    async def _relay(self, frame: dict[str, Any]) -> None:
        if self.seen.is_fresh(frame):
            await self.send_json(frame)


def _after_point(query_string: bytes) -> tuple[tuple[int, int] | None, str]:
    """(after_execution, after_index) from `?after_execution=&after_index=`, or None; and a problem."""
    query = parse_qs(query_string.decode("latin-1"))
    if "after_execution" not in query:
        return None, ""
    try:
        execution_id = int(query["after_execution"][0])
        index = int(query.get("after_index", ["-1"])[0])
    except ValueError:
        return None, "after_execution and after_index must be integers."
    return (execution_id, max(index, -1)), ""
