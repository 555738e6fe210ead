"""E2BBackend: creates, reconnects to and health-checks E2B sandboxes."""

from __future__ import annotations

import time

from e2b_code_interpreter import AsyncSandbox

from runner.sandboxes.base import LANGUAGES, Health, SandboxGone, SandboxUnavailable
from runner.sandboxes.e2b.config import E2BConfig
from runner.sandboxes.e2b.errors import translate_error
from runner.sandboxes.e2b.sandbox import E2BSandbox


class E2BBackend:
    """Sandboxes in E2B cloud. One instance per process; it holds no sandbox state itself."""

    name = "e2b"
    languages: frozenset[str] = LANGUAGES

    def __init__(self, config: E2BConfig | None = None) -> None:
        self._config = config
        self._health: tuple[float, E2BConfig, Health] | None = None

    @property
    def config(self) -> E2BConfig:
        # Read on use, never at construction: building the backend touches neither settings nor
        # the network, and a settings change (a new key) applies without a new instance.
        return self._config if self._config is not None else E2BConfig.from_settings()

    def _check_key(self) -> None:
        if not self.config.api_key:
            raise SandboxUnavailable("E2B is selected but E2B_API_KEY is not set.")

    async def create(self, *, owner_id: int, session_id: str) -> "E2BSandbox":
        """Start a sandbox for one chat session. Raises SandboxUnavailable or SandboxError."""
        self._check_key()
        config = self.config
        try:
            sdk = await AsyncSandbox.create(
                template=config.template or None,
                timeout=config.idle_timeout_s,
                metadata={"sandpit_user": str(owner_id), "sandpit_session": session_id},
                **config.sdk_options(),
            )
        except Exception as exc:
            raise translate_error(exc, config, doing="start an E2B sandbox") from None
        return E2BSandbox(sdk, config)

    async def connect(self, sandbox_id: str) -> "E2BSandbox":
        """Re-attach to a running sandbox. Raises SandboxGone when E2B no longer has it."""
        self._check_key()
        config = self.config
        try:
            sdk = await AsyncSandbox.connect(sandbox_id, timeout=config.idle_timeout_s, **config.sdk_options())
        except Exception as exc:
            raise translate_error(exc, config, doing="reconnect to the E2B sandbox") from None
        return E2BSandbox(sdk, config)

    async def workspace(self, *, session_id: str, sandbox_id: str) -> "E2BSandbox | None":
        """An E2B workspace lives only as long as its sandbox: the live one, else None."""
        if not sandbox_id:
            return None
        try:
            return await self.connect(sandbox_id)
        except SandboxGone:
            return None

    async def health(self) -> Health:
        """Whether E2B accepts our key and answers, checked by listing one sandbox.

        A failed check is retried on the next call after `health_cache_s` seconds, so degraded mode
        ends by itself once E2B is reachable again.
        """
        config = self.config
        if self._health is not None:
            checked_at, checked_config, health = self._health
            if checked_config == config and time.monotonic() - checked_at < config.health_cache_s:
                return health
        health = await self._check_health(config)
        self._health = (time.monotonic(), config, health)
        return health

    async def _check_health(self, config: E2BConfig) -> Health:
        if not config.api_key:
            return Health(ok=False, detail="E2B is selected but E2B_API_KEY is not set.", isolation="e2b")
        options = {**config.sdk_options(), "request_timeout": min(config.request_timeout_s, 10.0)}
        try:
            await AsyncSandbox.list(limit=1, **options).next_items()
        except Exception as exc:
            error = translate_error(exc, config, doing="check E2B's status")
            return Health(ok=False, detail=str(error), isolation="e2b")
        return Health(ok=True, detail="E2B cloud sandboxes are available.", isolation="e2b")
