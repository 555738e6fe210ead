"""Fixtures for sandbox backends: the conformance suite runs against every name in BACKEND_PARAMS.

`backend` is parametrised by BACKEND_PARAMS. "local" is the real local backend (kernels in bwrap);
any other name `x` comes from a fixture called `x_backend` (e.g. `e2b_backend` in
tests/fixtures_e2b.py), so a backend joins the suite by adding its name here and its fixture there.
`sandbox` is a fresh sandbox of that backend, closed after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from runner.sandboxes.base import Backend, Error, Event, Result, Sandbox, Stderr, Stdout, get_backend

BACKEND_PARAMS: list[str] = ["local", "e2b"]


def local_backend_or_skip() -> Backend:
    backend = get_backend("local")
    problem = backend.isolation.problem  # type: ignore[attr-defined]
    if problem:
        pytest.skip(f"the local sandbox can't run here: {problem}")
    return backend


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> Backend:
    name = request.param
    if name == "local":
        return local_backend_or_skip()
    return request.getfixturevalue(f"{name}_backend")


@pytest_asyncio.fixture
async def sandbox(backend: Backend) -> AsyncIterator[Sandbox]:
    created = await backend.create(owner_id=1, session_id=str(uuid.uuid4()))
    try:
        yield created
    finally:
        await created.close()


@dataclass
class Collected:
    """Events from one run, in order, with helpers to read them."""

    events: list[Event] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def stdout(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Stdout))

    @property
    def stderr(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Stderr))

    @property
    def results(self) -> list[Result]:
        return [e for e in self.events if isinstance(e, Result)]

    @property
    def errors(self) -> list[Error]:
        return [e for e in self.events if isinstance(e, Error)]

    @property
    def text(self) -> str:
        """Everything a user would read: streams, plain-text results and error values, in order."""
        parts = []
        for e in self.events:
            if isinstance(e, (Stdout, Stderr)):
                parts.append(e.text)
            elif isinstance(e, Result):
                parts.append(e.data.get("text/plain", ""))
            elif isinstance(e, Error):
                parts.append(f"{e.ename}: {e.evalue}")
        return "".join(parts)


async def run(sandbox: Sandbox, code: str, *, language: str = "python", timeout_s: float = 30):
    """Run code, returning (outcome, Collected events)."""
    collected = Collected()
    outcome = await sandbox.run(code, language=language, on_event=collected, timeout_s=timeout_s)
    return outcome, collected
