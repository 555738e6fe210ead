"""Where and how to reach E2B: one frozen value, from settings or given by a caller (tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class E2BConfig:
    """Where and how to reach E2B. Built from settings unless a caller passes its own."""

    api_key: str
    domain: str = ""
    api_url: str = ""
    sandbox_url: str = ""
    template: str = ""
    request_timeout_s: float = 30.0
    idle_timeout_s: int = 900
    file_max_bytes: int = 10 * 1024 * 1024
    # How long a health answer is reused: /healthz may be polled, but E2B should not be.
    health_cache_s: float = 5.0

    @classmethod
    def from_settings(cls) -> "E2BConfig":
        from django.conf import settings

        return cls(
            api_key=settings.E2B_API_KEY,
            domain=settings.E2B_DOMAIN,
            api_url=settings.E2B_API_URL,
            sandbox_url=settings.E2B_SANDBOX_URL,
            template=settings.E2B_TEMPLATE,
            request_timeout_s=settings.E2B_REQUEST_TIMEOUT_S,
            idle_timeout_s=settings.SANDBOX_IDLE_TIMEOUT_S,
            file_max_bytes=settings.SANDBOX_FILE_MAX_BYTES,
        )

    def sdk_options(self) -> dict[str, Any]:
        """Connection options for every SDK call, passed explicitly (the SDK would otherwise read
        E2B_* env vars itself; settings.py is the one reader of the environment). Debug mode, which
        skips E2B's API altogether, is always off."""
        options: dict[str, Any] = {"api_key": self.api_key, "request_timeout": self.request_timeout_s, "debug": False}
        if self.domain:
            options["domain"] = self.domain
        if self.api_url:
            options["api_url"] = self.api_url
        if self.sandbox_url:
            options["sandbox_url"] = self.sandbox_url
        return options

    def __repr__(self) -> str:  # keep the key out of any log line or traceback that prints us
        return f"E2BConfig(domain={self.domain!r}, api_url={self.api_url!r}, template={self.template!r})"
