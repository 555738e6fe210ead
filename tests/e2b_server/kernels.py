"""Real Jupyter kernels behind the test E2B server: one kernel per code context.

Each context is a kernel started from the kernels' venv (python: ipykernel, bash: bash_kernel,
javascript/typescript: `deno jupyter`), with the sandbox's workspace as its working directory.
`KernelContext.execute` turns the kernel's iopub messages into the code interpreter's NDJSON
objects, the way E2B's template server does (stdout/stderr, result, error, number_of_executions).
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

log = logging.getLogger(__name__)

# The code interpreter's languages and the kernel spec each one runs.
KERNEL_FOR_LANGUAGE = {
    "python": "python3",
    "bash": "bash",
    "javascript": "deno",
    "typescript": "deno",
}

# The MIME types E2B's server lifts into named result fields; anything else lands in "extra".
RESULT_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    "e2b/data": "data",
    "e2b/chart": "chart",
}


def write_kernel_specs(spec_dir: Path, kernel_env: Path) -> KernelSpecManager:
    """Kernel specs that run the kernels' venv, so the app's own venv never runs user code."""
    python = str(kernel_env / "bin" / "python")
    specs: dict[str, dict[str, Any]] = {
        "python3": {"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python"},
        "bash": {"argv": [python, "-m", "bash_kernel", "-f", "{connection_file}"], "language": "bash"},
        "deno": {
            "argv": [str(kernel_env / "bin" / "deno"), "jupyter", "--kernel", "--conn", "{connection_file}"],
            "language": "typescript",
        },
    }
    for name, spec in specs.items():
        directory = spec_dir / "kernels" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "kernel.json").write_text(json.dumps({**spec, "display_name": name}))
    return KernelSpecManager(kernel_dirs=[str(spec_dir / "kernels")])


def result_object(data: dict[str, Any], *, is_main_result: bool) -> dict[str, Any]:
    """A display_data/execute_result bundle as the code interpreter's `result` object."""
    remaining = dict(data)
    out: dict[str, Any] = {"type": "result", "is_main_result": is_main_result}
    for mime, field in RESULT_FIELDS.items():
        if mime in remaining:
            out[field] = remaining.pop(mime)
    text = out.get("text")
    # E2B's server strips the quotes of a plain string repr ('abc' -> abc); keep that quirk.
    if isinstance(text, str) and len(text) >= 2 and text.startswith("'") and text.endswith("'"):
        out["text"] = text[1:-1]
    out["extra"] = remaining
    return out


class KernelContext:
    """One running kernel: a code context of one language in one sandbox."""

    def __init__(self, *, language: str, cwd: Path, env: dict[str, str], specs: KernelSpecManager) -> None:
        self.id = str(uuid.uuid4())
        self.language = language
        self.cwd = cwd
        self.manager = KernelManager(kernel_name=KERNEL_FOR_LANGUAGE[language], kernel_spec_manager=specs)
        self.manager.start_kernel(cwd=str(cwd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        # One execution at a time per context, like the real server's per-context lock.
        self.lock = threading.Lock()
        self._alive_checked_at, self._alive = time.monotonic(), True
        self.closed = False

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "language": self.language, "cwd": "/home/user"}

    def execute(self, code: str, *, client_gone: Callable[[], bool], keepalive_s: float = 2.0) -> Iterator[dict[str, Any]]:
        """Run `code`, yielding NDJSON objects in kernel order (without end_of_execution).

        When `client_gone()` turns true the kernel is interrupted and the context is free at once
        for the next request, without waiting for the kernel: the interrupted run's late messages
        are dropped. A request the kernel aborts never ends: keepalives until the client goes.
        A kernel shut down under the run (its sandbox killed) just ends the stream.

        Modelled on E2B's server, e2b-dev/code-interpreter `template/server/messaging.py` (the
        version with KEEPALIVE_INTERVAL and the disconnect interrupt; issue 13 names 7df1757):
        - `ContextWebSocket.execute`: on CancelledError/GeneratorExit (the client went away) it
          awaits `self.interrupt()` (POST /api/kernels/{id}/interrupt), deletes the execution
          and leaves the lock; the kernel is not waited for, so the next request goes straight in;
        - `_process_message`: messages whose parent is no longer in `_executions` are dropped;
          EndOfExecution comes only from an `idle` status after `execute_input` (input_accepted),
          or from an `execute_reply` whose status is "abort" (also in aa451238c1ae);
        - `_wait_for_result`: `{"type": "keepalive"}` while nothing arrives.
        ipykernel aborts execute requests that reach it while it unwinds an error (the interrupt's
        KeyboardInterrupt, with stop_on_error) and replies status "aborted" (kernelbase.py
        `_send_abort_reply`), with busy/idle but no execute_input: neither end applies, so the
        stream stays open. bash_kernel replies "abort" to an interrupt, which does end it.
        """
        with self.lock:
            try:
                yield from self._execute_locked(code, client_gone=client_gone, keepalive_s=keepalive_s)
            except Exception:
                if not self.closed:
                    raise
                log.info("context %s was shut down during a run", self.id)

    def _late_output(self, msg_id: str) -> Iterator[dict[str, Any]]:
        """Deno's kernel can publish a first run's console output just after going idle: wait
        briefly for stream messages of this run."""
        deadline = time.monotonic() + 0.1
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = self.client.get_iopub_msg(timeout=remaining)
            except Empty:
                return
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                yield {"type": msg["content"]["name"], "text": msg["content"]["text"], "timestamp": time.time_ns()}

    def _execute_locked(self, code: str, *, client_gone: Callable[[], bool], keepalive_s: float) -> Iterator[dict[str, Any]]:
        msg_id = self.client.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
        idle = replied = errored = input_accepted = False
        replied_at = 0.0
        last_sent = time.monotonic()
        while not (idle and replied):
            msg = None
            if not idle:
                try:
                    msg = self.client.get_iopub_msg(timeout=0.05)
                except Empty:
                    pass
            if not replied:
                try:
                    # Once idle, only the reply is missing: wait on the shell channel instead.
                    reply = self.client.get_shell_msg(timeout=0.05 if idle else 0)
                except Empty:
                    reply = None
                if reply is not None and reply["parent_header"].get("msg_id") == msg_id:
                    replied, replied_at = True, time.monotonic()
                    content = reply["content"]
                    if content.get("status") == "error" and not errored:
                        errored = True
                        yield _error_object(content)
                    elif content.get("status") == "abort":  # the only abort status E2B's server knows
                        yield {"type": "error", "name": "ExecutionAborted", "value": "Execution was aborted", "traceback": ""}
                        return
                    elif content.get("status") == "aborted" and not input_accepted:
                        yield from self._never_ends(client_gone, keepalive_s)
                        return
            if msg is None:
                if self.closed:
                    return  # its sandbox was killed: the stream just ends
                if not self.alive():
                    # What Jupyter's restarter and E2B's server do when a kernel dies mid-run.
                    log.warning("context %s died during a run: restarting it", self.id)
                    self.manager.restart_kernel(now=True)
                    self.client.wait_for_ready(timeout=60)
                    self._alive = True
                    yield {"type": "error", "name": "ContextRestarting", "value": "Context was restarted", "traceback": ""}
                    return
                if client_gone():
                    self._interrupt_for_gone_client()
                    return
                if time.monotonic() - last_sent > keepalive_s:
                    last_sent = time.monotonic()
                    yield {"type": "keepalive"}
                # The reply is authoritative: an idle status can be lost under pressure.
                if replied and not idle and time.monotonic() - replied_at > 0.5:
                    idle = True
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status":
                idle = content["execution_state"] == "idle"
                continue
            last_sent = time.monotonic()
            if kind == "execute_input":
                input_accepted = True
                yield {"type": "number_of_executions", "execution_count": content["execution_count"]}
            elif kind == "stream":
                yield {"type": content["name"], "text": content["text"], "timestamp": time.time_ns()}
            elif kind == "display_data":
                yield result_object(content["data"], is_main_result=False)
            elif kind == "execute_result":
                yield result_object(content["data"], is_main_result=True)
            elif kind == "error" and not errored:
                errored = True
                yield _error_object(content)
        if self.language in ("javascript", "typescript"):
            yield from self._late_output(msg_id)

    def _interrupt_for_gone_client(self) -> None:
        log.info("client closed /execute: interrupting context %s", self.id)
        self.manager.interrupt_kernel()

    def _never_ends(self, client_gone: Callable[[], bool], keepalive_s: float) -> Iterator[dict[str, Any]]:
        """An aborted request on E2B's server: its stream only carries keepalives, until the
        client gives up; that disconnect interrupts the kernel like any other."""
        log.info("context %s aborted a request: its stream stays open", self.id)
        last_sent = time.monotonic()
        while not client_gone():
            if self.closed:
                return
            time.sleep(0.01)
            if time.monotonic() - last_sent > keepalive_s:
                last_sent = time.monotonic()
                yield {"type": "keepalive"}
        self._interrupt_for_gone_client()

    def alive(self) -> bool:
        now = time.monotonic()
        if now - self._alive_checked_at > 0.5:
            self._alive_checked_at, self._alive = now, self.manager.is_alive()
        return self._alive

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()

    def shutdown(self) -> None:
        self.closed = True
        try:
            self.client.stop_channels()
            self.manager.shutdown_kernel(now=True)
        except Exception:  # a kernel that already died is fine here
            log.debug("kernel %s shutdown failed", self.id, exc_info=True)


def _error_object(content: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "error",
        "name": content.get("ename", ""),
        "value": content.get("evalue", ""),
        "traceback": "".join(content.get("traceback", [])),
    }
