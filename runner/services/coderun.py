"""What a run executes in its sandbox: `code_run`, the one entry point of the run's task (lifecycle.py).

A command (the E2B API's `commands.run`) goes to the local backend's `command`. Code for a kernel
first installs the packages its pip-install lines name (a step of its own, packages.py), then runs
the rest, with its input() answered through the session's sockets.
"""

from __future__ import annotations

import asyncio
import time

from django.conf import settings

from runner import events
from runner.sandboxes.base import Error, Event, OnEvent, OnInput, Outcome, Sandbox, Stdout, emit
from runner.services import sandboxes
from runner.services.output import OutputWriter, publish
from runner.services.packages import ms_since, packages_install, pip_installs
from runner.services.runs import Command, PendingInput, Run


async def code_run(*, run: Run, sandbox: Sandbox, writer: OutputWriter, stored: asyncio.Event) -> Outcome:
    """Run the run's command, or its cell (prelude and code), in `sandbox`, its output going to
    `writer`, for at most RUN_TIMEOUT_S. `stored` is set once the run's row exists (the code may
    start before it: its input() waits for it). Raises what the sandbox raises."""
    if run.command is not None:
        return await _command_run(run, run.command, sandbox, writer)
    return await _kernel_run(
        sandbox, code=run.cell, language=run.language, on_event=_unless_stopped(run, writer),
        timeout_s=settings.RUN_TIMEOUT_S, on_input=input_asker(run, writer, stored), kernel=run.kernel,
    )


async def _kernel_run(
    sandbox: Sandbox, *, code: str, language: str, on_event: OnEvent, timeout_s: float, on_input: OnInput | None, kernel: str = ""
) -> Outcome:
    """Python's pip-install lines first, then the rest of the code (if any and if they succeeded);
    everything shares `timeout_s`."""
    began = time.monotonic()
    installs = pip_installs(code=code, language=language)
    if installs is None:
        return await sandbox.run(code, language=language, on_event=on_event, timeout_s=timeout_s, on_input=on_input, kernel=kernel)
    installed = await packages_install(sandbox=sandbox, installs=installs, on_event=on_event, timeout_s=timeout_s)
    if installed.status != "ok" or not installs.rest.strip():
        return Outcome(installed.status, ms_since(began))
    remaining_s = max(1.0, timeout_s - (time.monotonic() - began))
    outcome = await sandbox.run(installs.rest, language=language, on_event=on_event, timeout_s=remaining_s, on_input=on_input,
                                kernel=kernel)
    return Outcome(outcome.status, ms_since(began))


def _unless_stopped(run: Run, writer: OutputWriter) -> OnEvent:
    """The writer's `on_event`, dropping what the sandbox says once an admin, a budget or a revoked
    key closed it (its "closed while this ran" would read as the user's error; the notice says why)."""

    def deliver(event: Event) -> None:
        if not sandboxes.sandbox_is_stopped(session_id=run.session.id):
            writer.on_event(event)

    return deliver


def input_asker(run: Run, writer: OutputWriter, stored: asyncio.Event) -> OnInput | None:
    """The run's `on_input`: show the prompt on every socket of the session, then wait for the line
    an `input_reply` brings (runs.execution_input_reply_local). A Stop or the timeout cancels it.
    The prompt and the line (not a password) join the run's stdout, as a terminal shows them.
    A prompt that comes before the run's row exists (`stored` not set yet) waits for it.
    None for a run without stdin (`run.stdin` False): the kernel refuses input() itself."""
    if not run.stdin:
        return None

    async def ask(prompt: str, password: bool) -> str:
        await stored.wait()
        frame: events.InputRequestFrame = {
            "type": "execution.input_request", "execution_id": run.execution_id, "prompt": prompt, "password": password,
        }
        pending = run.pending_input = PendingInput(asyncio.get_running_loop().create_future(), frame)
        try:
            await publish(run.group, {"type": "execution.input_request", "frame": frame})
            value = await pending.reply
        finally:
            run.pending_input = None
        await emit(writer.on_event, Stdout(f"{prompt}{'' if password else value}\n"))
        return value

    return ask


async def _command_run(run: Run, command: Command, sandbox: Sandbox, writer: OutputWriter) -> Outcome:
    """Run `command` in `sandbox` for at most its timeout (at most RUN_TIMEOUT_S); a Stop kills it
    (an interrupt reaches kernels only). Its exit code lands on `command`; one other than 0 is
    the run's error (status failed), a timeout is "timeout", a Stop "interrupted"."""
    began = time.monotonic()
    execute = getattr(sandbox, "command", None)  # beyond the Protocol: the local backend has it
    if execute is None:
        command.error = "this sandbox backend can't run commands"
        await emit(writer.on_event, Error("CommandError", command.error))
        return Outcome("error", 0)
    timeout_s = min(command.timeout_s, settings.RUN_TIMEOUT_S)
    extra: dict[str, object] = {"stdin": command.stdin} if command.stdin is not None else {}
    if command.terminal is not None:
        extra["terminal"] = command.terminal
    task = asyncio.ensure_future(execute(command.argv, cwd=command.cwd, envs=command.envs, on_event=writer.on_event,
                                         timeout_s=timeout_s, **extra))
    stop = asyncio.ensure_future(run.cancel.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()  # kills the command's process tree
            await asyncio.wait({task})
    duration_ms = ms_since(began)
    if task.cancelled():
        command.exit_code = -9
        return Outcome("interrupted", duration_ms)
    try:
        code = task.result()
    except ValueError as exc:
        command.error = str(exc)
        await emit(writer.on_event, Error("InvalidArgument", command.error))
        return Outcome("error", duration_ms)
    command.exit_code = code
    if code is None:
        return Outcome("timeout", duration_ms)
    if code != 0:
        ended = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
        await emit(writer.on_event, Error("CommandFailed", ended))
        return Outcome("error", duration_ms)
    return Outcome("ok", duration_ms)
