"""Session workspaces for the test run: one folder under the state dir, removed at the end.

The local backend keeps each session's workspace on disk after its sandbox closes (by design), so
tests point SANDBOX_WORKSPACES_DIR at a folder of their own, for this process and the Daphnes it
starts (they inherit the environment), rather than leaving files in the real one.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings


@pytest.fixture(scope="session", autouse=True)
def workspaces_dir() -> Iterator[Path]:
    path = Path(settings.SANDBOX_STATE_DIR) / f"workspaces-test-{os.getpid()}"
    previous = os.environ.get("SANDBOX_WORKSPACES_DIR")
    os.environ["SANDBOX_WORKSPACES_DIR"] = str(path)
    try:
        with override_settings(SANDBOX_WORKSPACES_DIR=path):
            yield path
    finally:
        if previous is None:
            os.environ.pop("SANDBOX_WORKSPACES_DIR", None)
        else:
            os.environ["SANDBOX_WORKSPACES_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


def unjam_fifo(path: Path) -> None:
    """Release any thread blocked opening the FIFO at `path` for reading (a writer opening it lets
    them through to end of file): the old code's threads would otherwise outlive the test."""
    for _ in range(50):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                return  # no reader is waiting
            raise
        os.close(fd)
        time.sleep(0.05)
