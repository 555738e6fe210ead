"""The E2B wire protocol on one local HTTP port, for driving the real SDK in tests.

Point the SDK at it with `api_url=http://127.0.0.1:PORT` and `sandbox_url=http://127.0.0.1:PORT`
(or `E2B_API_URL` / `E2B_SANDBOX_URL`). With `sandbox_url` set, the SDK sends every sandbox
request to that one URL and names the target in headers, which is how this server routes:

- no `E2b-Sandbox-Port` header: the control-plane API (`X-API-KEY`):
  `POST /v2/sandboxes`, `POST /v2/sandboxes/{id}/connect`, `POST /sandboxes/{id}/timeout`,
  `DELETE /sandboxes/{id}`, `GET /sandboxes/{id}`, `GET /v2/sandboxes`;
- `E2b-Sandbox-Port: 49999`: the code interpreter: `POST /execute` (NDJSON stream), `/contexts`;
- `E2b-Sandbox-Port: 49983`: envd (`X-Access-Token`): `GET /health`, `GET|POST /files`, and the
  Connect RPCs `filesystem.Filesystem/ListDir` and `Stat` (unary, JSON) and `process.Process/Start`
  (server stream, `application/connect+json` envelopes).

A sandbox unknown to the proxy gets the edge's 502 "... was not found", an unknown one on the API
a 404, as E2B answers. Faults are injected through `POST /_test/faults` (see `state.Fault`).

Modules: `state` (sandboxes, faults), `wire` (HTTP plumbing), `api`, `interpreter` and `envd`
(the three route families), `kernels` (real Jupyter kernels behind the contexts).
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.e2b_server.api import ApiRoutes
from tests.e2b_server.envd import EnvdRoutes
from tests.e2b_server.interpreter import InterpreterRoutes
from tests.e2b_server.state import E2BState, Fault

log = logging.getLogger(__name__)

JUPYTER_PORT = "49999"
ENVD_PORT = "49983"


class Handler(ApiRoutes, InterpreterRoutes, EnvdRoutes):
    """Routes one request by its headers: API, code interpreter or envd (see the module doc)."""

    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def dispatch(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        self.stream_broken = False
        self._body: bytes | None = None
        self.body()
        self.state.requests.append((self.command, path))
        try:
            if path.startswith("/_test/"):
                self.control(path)
                return
            port = self.headers.get("E2b-Sandbox-Port")
            if port is None:
                self.api(path, query)
                return
            sandbox = self.state.get(self.headers.get("E2b-Sandbox-Id", ""))
            if sandbox is None:
                # What E2B's edge proxy answers for a sandbox that is gone.
                sandbox_id = self.headers.get("E2b-Sandbox-Id", "")
                self.send_json(502, {"code": 502, "message": f"The sandbox {sandbox_id} was not found", "sandboxId": sandbox_id})
                return
            if self.headers.get("X-Access-Token") != sandbox.access_token:
                self.send_json(401, {"code": 401, "message": "invalid access token"})
                return
            if port == JUPYTER_PORT:
                self.code_interpreter(sandbox, path)
            elif port == ENVD_PORT:
                self.envd(sandbox, path, query)
            else:
                self.send_json(502, {"code": 502, "message": f"port {port} is not open", "sandboxId": sandbox.id})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- test control ---------------------------------------------------------------------------

    def control(self, path: str) -> None:
        if path == "/_test/faults" and self.command == "POST":
            self.state.faults.append(Fault(**self.json_body()))
            self.send_empty()
        elif path == "/_test/faults" and self.command == "DELETE":
            self.state.faults.clear()
            self.send_empty()
        elif path == "/_test/requests":
            self.send_json(200, self.state.requests)
        elif path == "/_test/reset":
            self.state.faults.clear()
            self.state.requests.clear()
            for sandbox_id in list(self.state.sandboxes):
                self.state.kill(sandbox_id)
            self.send_empty()
        elif path.startswith("/_test/forget/"):
            # The sandbox vanishes as if E2B had reaped it.
            self.state.kill(path.rsplit("/", 1)[1])
            self.send_empty()
        elif path == "/_test/sandboxes":
            self.send_json(200, {s.id: {"metadata": s.metadata, "end_at": s.end_at.isoformat()} for s in list(self.state.sandboxes.values())})
        else:
            self.send_json(404, {"message": "unknown control path"})


class E2BServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: E2BState, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), Handler)
        self.state = state
        self._reaper = threading.Thread(target=self._reap_forever, daemon=True)
        self._reaper.start()

    def _reap_forever(self) -> None:
        while True:
            time.sleep(0.5)
            try:
                self.state.reap()
            except Exception:
                log.exception("reaping expired sandboxes failed")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"
