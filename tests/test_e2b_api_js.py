"""The JavaScript E2B SDK (`@e2b/code-interpreter` from npm, under the machine's Node) against
Sandpit's E2B-compatible API: create, run code with state, a file, kill (tests/js/basics.mjs).
`bin/setup --test` installs the SDK into tests/js/node_modules (npm ci, from the lock file)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from runner import services
from runner.models import ApiSandbox, Execution
from tests.fixtures_daphne import Daphne

JS_DIR = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(NODE is None, reason="no node on this machine"),
    pytest.mark.skipif(not (JS_DIR / "node_modules" / "@e2b" / "code-interpreter").is_dir(),
                       reason="the JS SDK is not installed: run bin/setup --test (npm ci in tests/js)"),
]


def test_javascript_sdk_basics(daphnes: Callable[..., Daphne]) -> None:
    server = daphnes(SANDBOX_BACKEND="local", E2B_API_KEY="", E2B_API_URL="", E2B_SANDBOX_URL="")
    user = get_user_model().objects.create_user(username="nodeuser", password="pw")
    _row, key = services.api_key_create(owner=user, name="node")
    url = f"http://127.0.0.1:{server.port}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(JS_DIR), "E2B_API_URL": url, "E2B_SANDBOX_URL": url, "E2B_API_KEY": key}
    done = subprocess.run([str(NODE), "basics.mjs"], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["text"] == "42"
    assert seen["stdout"] == ["hello from python\n"]
    assert seen["js"] == ["42\n"]
    assert seen["error"] == "ZeroDivisionError"
    assert seen["file"] == seen["python_reads"] == "written by node"
    assert seen["running"] is False
    row = ApiSandbox.objects.get()
    assert row.sandbox_id == seen["sandboxId"] and row.session.title == "from node" and row.killed_at is not None
    assert list(Execution.objects.filter(session=row.session).values_list("code", flat=True))[:2] == ["x = 20", "x * 2 + 2"]
