"""The chat page of a heavy session in Chromium, against the page of an empty one, in one run.

    .venv/bin/python bench/page.py [--n 15]

Starts a real Daphne (embedded defaults: SQLite in a temp dir, in-memory channel layer, local
sandbox), makes three sessions through the websocket exactly as a browser would:
- "empty": no runs: the page's own cost, the floor;
- "light": one `print('hello')`;
- "heavy": one run that prints past the 2 MiB output cap (a plot, then 25,000 lines of 80 x's),
and loads each page in turn, sample by sample, in headless Chromium (Debian's, via Playwright):
- bytes: the HTML document's size;
- first paint: the browser's first-contentful-paint;
- last run visible: from navigation start until the end of the last run is on screen and
  the page's socket is open (the page is usable).
Medians are printed, and each session's ratio to the empty one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

from ws import Server, _prepare_database, _socket  # noqa: E402  (bench/ is on sys.path)

CHROMIUM = "/usr/bin/chromium"
HEAVY_CODE = (
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n"
    "for i in range(25_000):\n    print(i, 'x' * 80)"
)
LAST_RUN_VISIBLE_JS = """() => {
  const turns = document.querySelectorAll('#turns > li.turn');
  const last = turns[turns.length - 1];
  if (document.body.dataset.socket !== 'open') return false;
  if (!last) return true; // the empty session: usable once its socket is open
  const r = last.getBoundingClientRect(); // its end (the newest output) on screen
  return r.height > 0 && r.bottom > 0 && r.bottom <= window.innerHeight + 1;
}"""


async def _run_to_end(ws: Any, code: str) -> None:
    await ws.send(json.dumps({"type": "run", "code": code, "language": "python", "client_id": "bench"}))
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "execution.finished":
            return
        if frame["type"] == "error":
            raise RuntimeError(frame)


async def _fill(server: Server, cookie: str, sessions: dict[str, str]) -> None:
    for name, code in (("light", "print('hello')"), ("heavy", HEAVY_CODE)):
        ws = await _socket(server, sessions[name], cookie)
        await _run_to_end(ws, code)
        await ws.close()


def _measure(page: Any, url: str) -> dict[str, float]:
    response = page.goto(url, wait_until="commit")
    body = response.body()
    page.wait_for_function(LAST_RUN_VISIBLE_JS, polling="raf", timeout=60_000)
    timing = page.evaluate("""() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      return { now: performance.now(), start: nav.startTime, fcp: fcp ? fcp.startTime : NaN };
    }""")
    return {"bytes": len(body), "first_paint_ms": timing["fcp"] - timing["start"], "visible_ms": timing["now"] - timing["start"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=15, help="page loads per session (median reported)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sandpit-bench-page-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"DJANGO_SETTINGS_MODULE": "project.settings", "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
                "LOG_LEVEL": "WARNING"})
    server = None
    try:
        cookie_header, session_ids = _prepare_database(env, 2)
        sessions = dict(zip(("empty", "light", "heavy"), session_ids))
        server = Server(env, tmp)
        from django.conf import settings

        asyncio.run(_fill(server, cookie_header, sessions))
        cookie = cookie_header.split("=", 1)[1]
        from playwright.sync_api import sync_playwright

        samples: dict[str, list[dict[str, float]]] = {name: [] for name in sessions}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "domain": "127.0.0.1", "path": "/"}])
            page = context.new_page()
            for i in range(args.n + 2):
                for name, session_id in sessions.items():
                    result = _measure(page, f"http://127.0.0.1:{server.port}/sessions/{session_id}/")
                    if i >= 2:  # the first two warm up
                        samples[name].append(result)
            browser.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.n} loads per session, alternated")
    print(f"{'median of each':22} {'HTML bytes':>11} {'first paint':>12} {'last run visible':>17} {'vs empty':>9}")
    floor = statistics.median(s["visible_ms"] for s in samples["empty"])
    for name, rows in samples.items():
        size = statistics.median(s["bytes"] for s in rows)
        paint = statistics.median(s["first_paint_ms"] for s in rows)
        visible = statistics.median(s["visible_ms"] for s in rows)
        print(f"{name:22} {size:11,.0f} {paint:10.0f}ms {visible:15.0f}ms {visible / floor:8.2f}x")


if __name__ == "__main__":
    main()
