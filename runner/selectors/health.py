"""Reads that span models or backends. Keyword-only, typed, named <entity>_<action>."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from runner.sandboxes.base import backend_name_from_settings, get_backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxStatus:
    ok: bool
    backend: str  # "local", "e2b", or "none" when no backend could even be loaded
    detail: str
    isolation: str


async def sandbox_status() -> SandboxStatus:
    """Whether code can run right now, and if not, why, in words fit for the page."""
    try:
        name = backend_name_from_settings()
        backend = get_backend(name)
    except Exception as exc:  # a misconfigured or unimportable backend is degraded mode, not a crash
        log.exception("sandbox backend could not be loaded")
        return SandboxStatus(ok=False, backend="none", detail=f"no sandbox backend could be loaded: {exc}", isolation="none")
    try:
        health = await backend.health()
    except Exception as exc:
        log.exception("sandbox backend health check failed")
        return SandboxStatus(ok=False, backend=name, detail=f"the {name} sandbox did not answer: {exc}", isolation="none")
    return SandboxStatus(ok=health.ok, backend=name, detail=health.detail, isolation=health.isolation)
