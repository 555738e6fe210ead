"""Sandboxes: the Protocol (base) and one module per backend, imported lazily by `get_backend`."""

from runner.sandboxes.base import (
    LANGUAGES,
    Backend,
    Error,
    Event,
    FileInfo,
    Health,
    Outcome,
    Result,
    Sandbox,
    SandboxError,
    SandboxGone,
    SandboxUnavailable,
    Stderr,
    Stdout,
    get_backend,
)

__all__ = [
    "LANGUAGES",
    "Backend",
    "Error",
    "Event",
    "FileInfo",
    "Health",
    "Outcome",
    "Result",
    "Sandbox",
    "SandboxError",
    "SandboxGone",
    "SandboxUnavailable",
    "Stderr",
    "Stdout",
    "get_backend",
]
