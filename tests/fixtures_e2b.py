"""Fixtures for the E2B backend: a local server that speaks E2B's protocol, driven by the real SDK.

`e2b_server` (one per test session) runs `tests.e2b_server` in a subprocess on a random port,
with real kernels from the kernels' venv. `e2b_backend` is an `E2BBackend` pointed at it through
the SDK's own options (`api_url`, `sandbox_url`); nothing is patched. After each test the server
is reset: faults cleared, sandboxes killed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

from runner.sandboxes.e2b import E2BBackend, E2BConfig
from tests.e2b_server import RunningServer, start_server


class E2BServerControl:
    """The test server plus its /_test/ control endpoints (faults, forgetting sandboxes)."""

    def __init__(self, running: RunningServer) -> None:
        self.url = running.url
        self.api_key = running.api_key
        self._http = httpx.Client(base_url=running.url, timeout=10)

    def inject(self, *, where: str, action: str, **options: Any) -> None:
        """Arm a fault; see tests.e2b_server.server.Fault for the options."""
        self._http.post("/_test/faults", json={"where": where, "action": action, **options}).raise_for_status()

    def forget(self, sandbox_id: str) -> None:
        """Make a sandbox vanish, as when E2B reaps it."""
        self._http.post(f"/_test/forget/{sandbox_id}").raise_for_status()

    def sandboxes(self) -> dict[str, dict[str, Any]]:
        return self._http.get("/_test/sandboxes").json()

    def requests(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self._http.get("/_test/requests").json()]

    def reset(self) -> None:
        self._http.post("/_test/reset").raise_for_status()

    def config(self, **overrides: Any) -> E2BConfig:
        values: dict[str, Any] = {
            "api_key": self.api_key,
            "api_url": self.url,
            "sandbox_url": self.url,
            "request_timeout_s": 15.0,
            "idle_timeout_s": 120,
            "file_max_bytes": settings.SANDBOX_FILE_MAX_BYTES,
        }
        return E2BConfig(**{**values, **overrides})



def e2b_settings(server: E2BServerControl, **overrides: object) -> override_settings:
    """Settings that point the app's E2B backend at `server` (SANDBOX_BACKEND="e2b"), plus `overrides`."""
    values: dict[str, object] = {
        "SANDBOX_BACKEND": "e2b",
        "E2B_API_KEY": server.api_key,
        "E2B_API_URL": server.url,
        "E2B_SANDBOX_URL": server.url,
        "E2B_REQUEST_TIMEOUT_S": 15.0,
    }
    return override_settings(**{**values, **overrides})


@pytest.fixture(scope="session")
def e2b_server_running() -> Iterator[RunningServer]:
    kernel_env = settings.SANDBOX_KERNEL_ENV
    if not (kernel_env / "bin" / "python").exists():
        pytest.skip(f"the kernels' venv is missing at {kernel_env}; run bin/setup")
    running = start_server(api_key="e2b_" + secrets.token_hex(18), kernel_env=kernel_env)
    yield running
    running.stop()


@pytest.fixture
def e2b_server(e2b_server_running: RunningServer) -> Iterator[E2BServerControl]:
    control = E2BServerControl(e2b_server_running)
    control.reset()
    yield control
    control.reset()


@pytest.fixture
def e2b_backend(e2b_server: E2BServerControl) -> E2BBackend:
    return E2BBackend(e2b_server.config())
