"""E2B's own Python test suites, unmodified, against a fresh Sandpit, through the installed SDKs.

    .venv/bin/python bench/e2b_suites.py [--suite code-interpreter|core|all] [-k EXPR] [PATH ...]
        [--postgres postgres://...] [--redis redis://...] [--markdown] [--strict]

Starts a Sandpit (bench/stack.py: a fresh database, one real Daphne, the local backend), makes a
user and an API key, and runs pytest in a subprocess on the suites in ../shared/e2b-suites/ (read
from there, never copied) with E2B_API_URL = E2B_SANDBOX_URL = the Daphne and E2B_API_KEY the key.
The suites' pytest.ini options are applied as far as the installed plugins allow: pytest-asyncio
and pytest-timeout are installed; pytest-xdist (code-interpreter's `--numprocesses=2`) is not, so
its tests run one at a time. The core suite runs only its in-scope folders (IN_SCOPE) and skips the
modules that don't import against the pinned SDK (BROKEN_IMPORTS).

It prints pass/total per suite and folder, then each failure with its class from
bench/e2b_suites_expected.toml (`cloud-only`: a feature Sandpit doesn't have; `gap`: one it
should have; `suite`: can't pass against the pinned SDK; `unlisted`: not in the file, i.e. a
regression or a new test). `PATH ...` (relative to
the suites' folder, e.g. `code-interpreter/python/tests/sync/test_basic.py`) and `-k` narrow the
run while developing. An unlisted failure runs once more, alone (`--no-retry` to skip); one that
passes then counts as passed and is named. `--strict` exits 1 when an unlisted test fails, or
when a listed entry's tests ran and all passed (the file must stay true): CI's e2b stage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR / "bench"))

from stack import Stack  # noqa: E402  (bench/ is on sys.path)

SUITES_DIR = Path(os.environ.get("E2B_SUITES_DIR", BASE_DIR.parent / "shared" / "e2b-suites")).resolve()
EXPECTED_FILE = Path(os.environ.get("E2B_SUITES_EXPECTED", BASE_DIR / "bench" / "e2b_suites_expected.toml"))
CI_ROOT = "code-interpreter/python"
CORE_ROOT = "e2b/packages/python-sdk"
# The core suite's sandbox-level folders (the scope: sandbox, files, commands, API).
IN_SCOPE = [
    "tests/sync/sandbox_sync", "tests/async/sandbox_async",
    "tests/sync/api_sync", "tests/async/api_async", "tests/shared/sandbox", "tests/shared/api",
]
# Core modules that fail to import against e2b 2.63.0 (the suites' README says which).
BROKEN_IMPORTS = ["tests/test_validate_api_key.py", "tests/test_envd_client_transport.py"]
# The suites' pytest.ini options that apply here (markers, asyncio loop scopes, the core's timeout).
INI = {
    CI_ROOT: """[pytest]
markers =
    skip_debug: skip test if E2B_DEBUG is set.
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
addopts = --import-mode=importlib
timeout = 120
""",
    CORE_ROOT: """[pytest]
markers =
    skip_debug: skip test if E2B_DEBUG is set.
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
addopts = --import-mode=importlib
pythonpath = {suite_dir}/tests
timeout = 30
filterwarnings =
    ignore:'asyncio\\.iscoroutinefunction' is deprecated.*:DeprecationWarning:pytest_asyncio\\.plugin
    ignore:'asyncio\\.get_event_loop_policy' is deprecated.*:DeprecationWarning:pytest_asyncio\\.plugin
""",
}
# cloud-only: a feature Sandpit doesn't have (answered by a clear error); gap: one it should have;
# suite: the test can't pass against the pinned SDK anywhere (it patches what 2.63.0 no longer calls).
CLASSES = ("cloud-only", "gap", "suite")
SUITE_NAMES = {CI_ROOT: "code-interpreter", CORE_ROOT: "core (in scope)"}


@dataclass
class Outcome:
    suite_root: str
    test_id: str  # relative to the suite root: tests/sync/test_basic.py::test_basic
    passed: bool
    skipped: bool
    message: str

    @property
    def folder(self) -> str:
        return str(Path(self.test_id.split("::")[0]).parent)


@dataclass
class Expected:
    test_id: str  # "<suite root>/<test id>", or a prefix ending in "/" or "*" (a folder, a file's tests)
    reason: str
    kind: str  # one of CLASSES

    def matches(self, full_id: str) -> bool:
        if self.test_id.endswith("*"):
            return full_id.startswith(self.test_id[:-1])
        if self.test_id.endswith("/"):
            return full_id.startswith(self.test_id)
        return full_id == self.test_id or full_id.startswith(self.test_id + "[")


def load_expected(path: Path = EXPECTED_FILE) -> list[Expected]:
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text())
    out = []
    for item in data.get("failure", []):
        if item.get("class") not in CLASSES:
            raise SystemExit(f"{path}: {item.get('id')}: class must be one of {', '.join(CLASSES)}")
        out.append(Expected(item["id"], item["reason"], item["class"]))
    return out


def classify(outcome: Outcome, expected: list[Expected]) -> Expected | None:
    full = f"{outcome.suite_root}/{outcome.test_id}"
    return next((e for e in expected if e.matches(full)), None)


def run_suite(root: str, targets: list[str], env: dict[str, str], keyword: str, tmp: Path, name: str = "") -> list[Outcome]:
    suite_dir = SUITES_DIR / root
    ini = tmp / f"{SUITE_NAMES[root].split()[0]}{'-' + name if name else ''}.ini"
    ini.write_text(INI[root].replace("{suite_dir}", str(suite_dir)))
    junit = tmp / f"{ini.stem}.xml"
    argv = [sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(suite_dir), "-p", "no:cacheprovider",
            "-p", "no:django", "-q", "-rN", "--junitxml", str(junit), "-o", "junit_family=xunit2"]
    if root == CORE_ROOT:
        argv += [arg for path in BROKEN_IMPORTS for arg in ("--ignore", path)]
    if keyword:
        argv += ["-k", keyword]
    argv += targets
    started = time.monotonic()
    print(f"== {SUITE_NAMES[root]}: pytest {' '.join(targets)}", flush=True)
    proc = subprocess.run(argv, cwd=suite_dir, env=env, capture_output=True, text=True)
    print(f"   {time.monotonic() - started:.0f} s; pytest exit {proc.returncode}", flush=True)
    (tmp / f"{ini.stem}.log").write_text(proc.stdout + proc.stderr)
    if not junit.exists():
        raise SystemExit(f"pytest wrote no report:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return parse_junit(root, junit)


def parse_junit(root: str, junit: Path) -> list[Outcome]:
    outcomes = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        file = case.get("file") or ""
        if not file:  # classname is a dotted path (tests.sync.test_basic or tests.sync.test_x.TestClass)
            parts = classname.split(".")
            path = SUITES_DIR / root
            consumed = 0
            for i, part in enumerate(parts):
                if (path / f"{part}.py").exists():
                    path, consumed = path / f"{part}.py", i + 1
                    break
                path = path / part
            file = str(path.relative_to(SUITES_DIR / root)) if path.suffix == ".py" else classname
            names = parts[consumed:]
        else:
            names = []
        test_id = "::".join([file, *names, name])
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        bad = failure if failure is not None else error
        message = ""
        if bad is not None:
            message = bad.get("message") or next(iter((bad.text or "").strip().splitlines()[-1:]), "")
            message = " ".join(message.split())[:160]
        outcomes.append(Outcome(root, test_id, passed=bad is None and skipped is None, skipped=skipped is not None and bad is None, message=message))
    return outcomes


def report(outcomes: list[Outcome], expected: list[Expected], markdown: bool) -> tuple[int, int]:
    """Print the figures and the failures; the numbers of unlisted failures and of stale entries
    (listed, some of their tests run, none of them failing: the file should drop them)."""
    by_suite: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_suite[outcome.suite_root].append(outcome)
    unlisted = stale_count = 0
    rows = []
    for root, items in by_suite.items():
        passed = sum(o.passed for o in items)
        print(f"\n{SUITE_NAMES[root]}: {passed} of {len(items)} pass ({sum(o.skipped for o in items)} skipped)")
        rows.append((SUITE_NAMES[root], "(all)", passed, len(items)))
        folders: dict[str, list[Outcome]] = defaultdict(list)
        for o in items:
            folders[o.folder].append(o)
        for folder in sorted(folders):
            p = sum(o.passed for o in folders[folder])
            print(f"  {folder:45s} {p:4d} / {len(folders[folder])}")
            rows.append((SUITE_NAMES[root], folder, p, len(folders[folder])))
        counts: dict[str, int] = defaultdict(int)
        for o in items:
            if o.passed:
                continue
            match = classify(o, expected)
            kind = match.kind if match else "unlisted"
            counts[kind] += 1
            unlisted += match is None
            why = match.reason if match else o.message
            print(f"    FAIL [{kind}] {o.test_id}: {why}")
        print("  failures by class: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
        stale = [e.test_id for e in expected if stale_entry(e, root, items)]
        stale_count += len(stale)
        for test_id in stale:
            print(f"    PASS [listed] {test_id}: listed as failing in {EXPECTED_FILE.name}, but every test of it run passed")
    if markdown:
        print("\n| suite | folder | pass | total |\n|---|---|---|---|")
        for suite, folder, p, total in rows:
            print(f"| {suite} | `{folder}` | {p} | {total} |")
    return unlisted, stale_count


def stale_entry(entry: Expected, root: str, items: list[Outcome]) -> bool:
    """Some of the entry's tests ran (not skipped) and none failed."""
    ran = [o for o in items if entry.matches(f"{root}/{o.test_id}") and not o.skipped]
    return bool(ran) and all(o.passed for o in ran)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["code-interpreter", "core", "all"], default="all")
    parser.add_argument("-k", dest="keyword", default="")
    parser.add_argument("paths", nargs="*", help="test files or folders, relative to the suites' folder")
    parser.add_argument("--postgres", default="", help="a Postgres admin URL: the stack gets a fresh database there")
    parser.add_argument("--redis", default="")
    parser.add_argument("--markdown", action="store_true", help="also print the figures as a Markdown table")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a failure isn't in the expected file")
    parser.add_argument("--no-retry", dest="retry", action="store_false", help="don't run unexpected failures a second time")
    args = parser.parse_args()
    if not SUITES_DIR.is_dir():
        raise SystemExit(f"no suites at {SUITES_DIR} (set E2B_SUITES_DIR)")
    targets: dict[str, list[str]] = defaultdict(list)
    for path in args.paths:
        root = next((r for r in (CI_ROOT, CORE_ROOT) if path.startswith(r + "/") or path == r), None)
        if root is None:
            raise SystemExit(f"{path}: not under {CI_ROOT}/ or {CORE_ROOT}/")
        targets[root].append(path[len(root) + 1:] or "tests")
    if not args.paths:
        if args.suite in ("code-interpreter", "all"):
            targets[CI_ROOT] = ["tests"]
        if args.suite in ("core", "all"):
            targets[CORE_ROOT] = IN_SCOPE
    expected = load_expected()
    began = time.monotonic()
    # Many short-lived sandboxes: no idle pool worth keeping, and room for the suites' parallel ones.
    stack = Stack(servers=1, postgres=args.postgres, redis=args.redis,
                  extra_env={"SANDBOX_BACKEND": "local", "E2B_API_KEY": "", "E2B_API_URL": "", "E2B_SANDBOX_URL": "",
                             "SANDBOX_MAX_LIVE": "40", "LOG_LEVEL": "WARNING"})
    try:
        script = ("from django.contrib.auth import get_user_model\nfrom runner import services\n"
                  "u = get_user_model().objects.create_user('e2b-suites', password='suites-pw-123')\n"
                  "print(services.api_key_create(owner=u, name='suites')[1])")
        key = stack.manage(script).strip().splitlines()[-1]
        url = f"http://127.0.0.1:{stack.servers[0].port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("E2B_", "DJANGO_", "DATABASE_URL", "REDIS_URL"))}
        env.update({"E2B_API_URL": url, "E2B_SANDBOX_URL": url, "E2B_API_KEY": key, "PYTHONDONTWRITEBYTECODE": "1"})
        with tempfile.TemporaryDirectory(prefix="e2b-suites-") as tmp:
            outcomes: list[Outcome] = []
            for root, paths in targets.items():
                found = run_suite(root, paths, env, args.keyword, Path(tmp))
                # A failure the file doesn't expect runs once more, alone: this machine is shared
                # and a few tests are timing-sensitive. Both tries are reported.
                again = [o.test_id for o in found if not o.passed and classify(o, expected) is None]
                if again and args.retry:
                    retried = {o.test_id: o for o in run_suite(root, again, env, "", Path(tmp), name="retry")}
                    for o in found:
                        if o.test_id in retried and retried[o.test_id].passed:
                            print(f"   passed on its second try: {o.test_id}")
                            o.passed, o.message = True, ""
                outcomes += found
            unlisted, stale = report(outcomes, expected, args.markdown)
        log = stack.servers[0].log
        print(f"\nSandpit's log: {log.stat().st_size} bytes, {log.read_text(errors='replace').count('Traceback')} tracebacks")
        workspaces = stack.tmp / "state" / "workspaces"
        print(f"workspace folders left: {len(list(workspaces.iterdir())) if workspaces.is_dir() else 0}")
    finally:
        stack.stop()
    print(f"suites took {time.monotonic() - began:.0f} s; unlisted failures: {unlisted}; stale entries: {stale}")
    if args.strict and (unlisted or stale):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
