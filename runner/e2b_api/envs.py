"""Environment variables in the kernels, as E2B's code interpreter sets them: the sandbox's
create-time `envVars` once per kernel, and a run's `env_vars` for that run only.

Both are set by code run in the kernel before the user's code (E2B's server sends the kernel
code too): a short prelude in the run's language, on the line before the code. The prelude first
restores what the previous run's `env_vars` changed, then sets the create-time variables if this
kernel hasn't got them yet (a restarted kernel gets them again), then saves and sets this run's.
The kernel keeps what to restore (Python: the `os` module; JavaScript: `globalThis`; bash: a
shell variable), so the user's namespace gains no names. Which kernels have a restore pending is
kept per process (`_pending`): the process that serves a sandbox's runs is the one that set them.
"""

from __future__ import annotations

import json
import re
import shlex

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ITEMS = 100
MAX_VALUE_CHARS = 32 * 1024
KIND = {"python": "python", "bash": "bash", "javascript": "deno", "typescript": "deno", "r": "r"}

# (sandbox id, kernel kind, kernel name) whose kernel holds per-run variables to restore at its next run.
_pending: set[tuple[str, str, str]] = set()

PYTHON = (
    "exec({src!r}, {{'C': {create}, 'R': {run}}})"
)
PYTHON_SRC = (
    "import os\n"
    "for k, v in getattr(os, '_sandpit_restore', {}).items():\n"
    "    os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)\n"
    "if not getattr(os, '_sandpit_envs', False):\n"
    "    os.environ.update(C); os._sandpit_envs = True\n"
    "os._sandpit_restore = {k: os.environ.get(k) for k in R}\n"
    "os.environ.update(R)\n"
)
DENO = (
    "((C, R) => {{ const g = globalThis, e = Deno.env;"
    " for (const [k, v] of Object.entries(g.__sandpitRestore ?? {{}})) {{ v === null ? e.delete(k) : e.set(k, v); }}"
    " if (!g.__sandpitEnvs) {{ for (const [k, v] of Object.entries(C)) e.set(k, v); g.__sandpitEnvs = true; }}"
    " g.__sandpitRestore = Object.fromEntries(Object.keys(R).map((k) => [k, e.get(k) ?? null]));"
    " for (const [k, v] of Object.entries(R)) e.set(k, v); }})({create}, {run});"
)
# R: the saved values live in an environment of their own, attached as "sandpit" (not the
# user's global one); NA marks a variable that was unset.
R = (
    'invisible(local({{ C <- {create}; R <- {run};'
    ' if (!("sandpit" %in% search())) attach(new.env(), name = "sandpit");'
    ' s <- as.environment("sandpit");'
    ' for (k in names(s$restore)) {{ v <- s$restore[[k]]; if (is.na(v)) Sys.unsetenv(k) else do.call(Sys.setenv, setNames(list(v), k)) }};'
    ' s$restore <- NULL;'
    ' if (is.null(s$envs) && length(C)) do.call(Sys.setenv, C); s$envs <- TRUE;'
    ' if (length(R)) {{ s$restore <- sapply(names(R), function(k) Sys.getenv(k, unset = NA), simplify = FALSE); do.call(Sys.setenv, R) }}'
    ' }}))'
)
# Bash: the restore commands live in __SANDPIT_RESTORE; printf %q quotes the saved values.
BASH = (
    'eval "${{__SANDPIT_RESTORE:-}}"; __SANDPIT_RESTORE=;'
    ' if [ -z "${{__SANDPIT_ENVS:-}}" ]; then {create} __SANDPIT_ENVS=1; fi;'
    '{save}{run}'
)
BASH_SAVE = (
    ' for __k in {names}; do if [ -n "${{!__k+x}}" ]; then'
    ' __SANDPIT_RESTORE+=$(printf "export %s=%q;" "$__k" "${{!__k}}"); else __SANDPIT_RESTORE+="unset $__k;"; fi; done;'
    ' unset __k;'
)


def validated(value: object, what: str) -> dict[str, str]:
    """`value` as a map of variable names to strings; ValueError (for a 400) when it isn't one."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ITEMS:
        raise ValueError(f"{what} must be an object of at most {MAX_ITEMS} string values")
    for key, item in value.items():
        if not isinstance(key, str) or not NAME.fullmatch(key):
            raise ValueError(f"{what}: {str(key)[:100]!r} is not a valid variable name")
        if not isinstance(item, str) or len(item) > MAX_VALUE_CHARS or "\0" in item:
            raise ValueError(f"{what}: the value of {key} must be a string of at most {MAX_VALUE_CHARS} characters")
    return dict(value)


def envs_prelude(*, sandbox_id: str, language: str, create_envs: dict[str, str], run_envs: dict[str, str],
                 kernel: str = "") -> str:
    """The line that gives a run's kernel (`kernel`: a context's own, "" the language's) the
    variables, to run before its code ("" when none is needed). It is never stored with the run:
    the values are often secrets."""
    kind = KIND[language]
    key = (sandbox_id, kind, kernel)
    pending = key in _pending
    if not create_envs and not run_envs and not pending:
        return ""
    if run_envs:
        _pending.add(key)
    else:
        _pending.discard(key)
    if kind == "python":
        prelude = PYTHON.format(src=PYTHON_SRC, create=json.dumps(create_envs), run=json.dumps(run_envs))
    elif kind == "r":
        prelude = R.format(create=_r_list(create_envs), run=_r_list(run_envs))
    elif kind == "deno":
        prelude = DENO.format(create=json.dumps(create_envs), run=json.dumps(run_envs))
    else:
        prelude = BASH.format(
            create=" ".join(f"export {k}={shlex.quote(v)};" for k, v in create_envs.items()),
            save=BASH_SAVE.format(names=" ".join(run_envs)) if run_envs else "",
            run=" ".join(f"export {k}={shlex.quote(v)};" for k, v in run_envs.items()),
        )
    return prelude + "\n"



def _r_string(value: str) -> str:
    """An R string literal: JSON's string syntax, which R reads the same way (its escapes too)."""
    return json.dumps(value, ensure_ascii=False)


def _r_list(values: dict[str, str]) -> str:
    """`values` as an R named list (list() when empty)."""
    return "list(" + ", ".join(f"{_r_string(k)} = {_r_string(v)}" for k, v in values.items()) + ")"
