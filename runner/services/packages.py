"""Package installs inside a run: `%pip install ...` and `!pip install ...` lines in Python code go
to the backend's `install`, a step of the run before the rest of its code (coderun.py) that may
reach the package index (the kernel's own network stays closed), all in one run's output.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass

from runner.sandboxes.base import Error, OnEvent, Outcome, Sandbox, Stdout, emit, validate_packages

# A whole line: `%pip install`, `!pip install`, `!pip3 install` or `!python -m pip install`.
PIP_MAGIC = re.compile(r"^[ \t]*(?:%pip|!\s*pip3?|!\s*python3?\s+-m\s+pip)\s+install(?:\s+(?P<args>.*))?$")
# Options that change nothing here (installs are quiet enough and always take the newest match).
HARMLESS_OPTIONS = frozenset({"-q", "--quiet", "-U", "--upgrade", "--no-cache-dir", "--user"})


def pip_magics(code: str) -> tuple[list[str], str]:
    """The arguments of each pip-install line of Python `code`, in order, and the code without
    those lines (line numbers of the rest are kept: each magic becomes an empty line)."""
    installs: list[str] = []
    kept: list[str] = []
    for line in code.split("\n"):
        match = PIP_MAGIC.match(line)
        if match:
            installs.append(match.group("args") or "")
            kept.append("")
        else:
            kept.append(line)
    return installs, "\n".join(kept)


def pip_packages(args: str) -> list[str]:
    """The package names of one `pip install` line, checked. Raises ValueError, fit for a user,
    for options other than -q/-U (no index URLs, requirement files, paths or URLs)."""
    try:
        words = shlex.split(args, comments=True)
    except ValueError as exc:
        raise ValueError(f"the pip install line can't be read: {exc}") from None
    packages = [w for w in words if w not in HARMLESS_OPTIONS]
    options = [w for w in packages if w.startswith("-")]
    if options:
        raise ValueError(f"pip option {options[0]!r} isn't supported here; name packages only, e.g. %pip install requests")
    return validate_packages(packages, language="python")


@dataclass(frozen=True)
class PipInstalls:
    """The pip-install lines of a run's Python code: the packages of each line, in order, and the
    code left to run after them. `error` (for the user) when a line can't be installed as written."""

    batches: list[list[str]]
    rest: str
    error: str = ""


def pip_installs(*, code: str, language: str) -> PipInstalls | None:
    """The pip-install lines of `code`, checked; None when it has none (or isn't Python)."""
    if language != "python" or "pip" not in code:
        return None
    installs, rest = pip_magics(code)
    if not installs:
        return None
    try:
        return PipInstalls([pip_packages(args) for args in installs], rest)
    except ValueError as exc:
        return PipInstalls([], rest, error=str(exc))


async def packages_install(*, sandbox: Sandbox, installs: PipInstalls, on_event: OnEvent, timeout_s: float) -> Outcome:
    """Install each line's packages through `sandbox.install`, its output streamed to `on_event`;
    the outcome of the first that fails, else "ok". All of them share `timeout_s`. A line that can't
    be installed (`installs.error`) is an Error event and status "error"; nothing is installed then."""
    started = time.monotonic()
    if installs.error:
        await emit(on_event, Error(ename="InstallError", evalue=installs.error))
        return Outcome("error", ms_since(started))
    for packages in installs.batches:
        await emit(on_event, Stdout(f"Installing {' '.join(packages)}…\n"))
        remaining_s = max(1.0, timeout_s - (time.monotonic() - started))
        outcome = await sandbox.install(packages, language="python", on_event=on_event, timeout_s=remaining_s)
        if outcome.status != "ok":
            return Outcome(outcome.status, ms_since(started))
    return Outcome("ok", ms_since(started))


def ms_since(started: float) -> int:
    """Milliseconds since `started`, a time.monotonic()."""
    return int((time.monotonic() - started) * 1000)
