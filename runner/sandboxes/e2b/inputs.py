"""What the E2B backend accepts from callers: workspace paths, package names, and E2B results
turned into MIME bundles. Pure functions; no SDK calls."""

from __future__ import annotations

import json
import posixpath
import shlex

from e2b_code_interpreter.models import Result as E2BResult

from runner.sandboxes.base import validate_packages

WORKSPACE = "/home/user"

# E2B result formats → MIME types, in the order a renderer should prefer them.
RESULT_MIME_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "svg": "image/svg+xml",
    "html": "text/html",
    "markdown": "text/markdown",
    "latex": "text/latex",
    "json": "application/json",
    "text": "text/plain",
}

def workspace_path(path: str) -> str:
    """The absolute sandbox path for a workspace path. Raises ValueError for anything outside it."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValueError("A file path must be a non-empty string.")
    joined = path if path.startswith("/") else posixpath.join(WORKSPACE, path)
    normalized = posixpath.normpath(joined)
    if ".." in path.split("/") or not (normalized == WORKSPACE or normalized.startswith(WORKSPACE + "/")):
        raise ValueError(f"The path {path!r} is outside the workspace ({WORKSPACE}); use a path inside it.")
    return normalized


def install_command(packages: list[str], language: str) -> str:
    """The shell command that installs `packages`. Raises ValueError for a name that isn't one."""
    validate_packages(packages, language=language)
    quoted = " ".join(shlex.quote(name) for name in packages)
    if language in ("javascript", "typescript"):
        return f"npm install --no-audit --no-fund {quoted}"
    return f"pip install --disable-pip-version-check --no-input {quoted}"


def mime_bundle(result: E2BResult) -> dict[str, str]:
    """An E2B Result as a MIME bundle; JSON payloads are serialised, other formats kept as is."""
    bundle: dict[str, str] = {}
    for field_name, mime in RESULT_MIME_TYPES.items():
        value = getattr(result, field_name, None)
        if value is None or value == "":
            continue
        bundle[mime] = value if isinstance(value, str) else json.dumps(value)
    return bundle
