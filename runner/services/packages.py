"""Package installs inside a run: `%pip install ...` and `!pip install ...` lines in Python code go
to the backend's `install` (a separate step that may reach the package index; the kernel's own
network stays closed), and the rest of the code then runs as usual, all in one run's output.
"""

from __future__ import annotations

import re
import shlex
import time

from runner.sandboxes.base import Error, OnEvent, OnInput, Outcome, Sandbox, Stdout, emit, validate_packages

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


async def code_run(
    *, sandbox: Sandbox, code: str, language: str, on_event: OnEvent, timeout_s: float, on_input: OnInput | None = None,
    kernel: str = "",
) -> Outcome:
    """Run `code` in `sandbox`: Python's pip-install lines first, through `sandbox.install` with
    its output streamed to `on_event`, then the rest of the code (if any and if they succeeded).
    Everything shares `timeout_s`. A bad package name is an Error event and status "error";
    nothing is installed then."""
    if language != "python" or "pip" not in code:
        return await sandbox.run(code, language=language, on_event=on_event, timeout_s=timeout_s, on_input=on_input, kernel=kernel)
    installs, rest = pip_magics(code)
    if not installs:
        return await sandbox.run(code, language=language, on_event=on_event, timeout_s=timeout_s, on_input=on_input, kernel=kernel)
    started = time.monotonic()
    try:
        batches = [pip_packages(args) for args in installs]
    except ValueError as exc:
        await emit(on_event, Error(ename="InstallError", evalue=str(exc)))
        return Outcome("error", _ms_since(started))
    for packages in batches:
        await emit(on_event, Stdout(f"Installing {' '.join(packages)}…\n"))
        remaining_s = max(1.0, timeout_s - (time.monotonic() - started))
        outcome = await sandbox.install(packages, language="python", on_event=on_event, timeout_s=remaining_s)
        if outcome.status != "ok":
            return Outcome(outcome.status, _ms_since(started))
    if rest.strip():
        remaining_s = max(1.0, timeout_s - (time.monotonic() - started))
        outcome = await sandbox.run(rest, language=language, on_event=on_event, timeout_s=remaining_s, on_input=on_input,
                                    kernel=kernel)
        return Outcome(outcome.status, _ms_since(started))
    return Outcome("ok", _ms_since(started))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
