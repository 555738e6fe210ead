"""SDK and network failures as our SandboxError family, with messages fit for the page."""

from __future__ import annotations

import logging
import re

import httpx
from e2b_code_interpreter import (
    AuthenticationException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    SandboxNotRunningException,
    ServiceBusyException,
    TimeoutException,
)

from runner.sandboxes.base import SandboxError, SandboxGone, SandboxUnavailable
from runner.sandboxes.e2b.config import E2BConfig

log = logging.getLogger("runner.sandboxes.e2b")


def scrub(text: str, config: E2BConfig) -> str:
    """`text` with the API key removed, for anything that may reach a log or a page."""
    return text.replace(config.api_key, "[E2B_API_KEY]") if config.api_key else text


def is_broken_stream(exc: BaseException) -> bool:
    return isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError))


def translate_error(exc: BaseException, config: E2BConfig, *, doing: str) -> SandboxError:
    """The SandboxError for an SDK or network failure, with a message fit for the page."""
    message = scrub(str(exc), config)
    log.warning("E2B: could not %s: %s: %s", doing, type(exc).__name__, message)
    if isinstance(exc, SandboxError):
        return exc
    if isinstance(exc, AuthenticationException):
        return SandboxUnavailable("E2B API key rejected: check E2B_API_KEY (E2B answered 401 Unauthorized).")
    if isinstance(exc, RateLimitException):
        return SandboxUnavailable("E2B rate limit reached, try again in a moment.")
    if isinstance(exc, ServiceBusyException):
        return SandboxUnavailable("E2B is temporarily unavailable (503), try again in a moment.")
    if isinstance(exc, (SandboxNotRunningException, NotFoundException)) or any(
        sign in message for sign in ("was not found", "sandbox was killed")
    ):
        return SandboxGone("The E2B sandbox is gone (it timed out or was stopped); its variables and files are lost.")
    if isinstance(exc, TimeoutException):
        return SandboxUnavailable(f"E2B did not answer in time, so could not {doing}; try again in a moment.")
    if isinstance(exc, (httpx.TransportError, ConnectionError, OSError)):
        return SandboxUnavailable(f"E2B could not be reached (network error), so could not {doing}.")
    if isinstance(exc, SandboxException):
        status = getattr(exc, "status_code", None) or _leading_status(message)
        if status is not None and status >= 500:
            return SandboxUnavailable(f"E2B had an internal error (HTTP {status}), so could not {doing}; try again later.")
        if status is not None:
            return SandboxError(f"E2B refused to {doing} (HTTP {status}).")
    return SandboxError(f"Could not {doing} on E2B ({type(exc).__name__}).")


def _leading_status(message: str) -> int | None:
    match = re.match(r"^(\d{3})\b", message)
    return int(match.group(1)) if match else None
