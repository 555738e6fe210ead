"""The E2B wire protocol on one local HTTP port, for driving the real SDK in tests.

Point the SDK at it with `api_url=http://127.0.0.1:PORT` and `sandbox_url=http://127.0.0.1:PORT`
(or `E2B_API_URL` / `E2B_SANDBOX_URL`). With `sandbox_url` set, the SDK sends every sandbox
request to that one URL and names the target in headers, which is how this server routes:

- no `E2b-Sandbox-Port` header: the control-plane API (`X-API-KEY`):
  `POST /v2/sandboxes`, `POST /v2/sandboxes/{id}/connect`, `POST /sandboxes/{id}/timeout`,
  `DELETE /sandboxes/{id}`, `GET /sandboxes/{id}`, `GET /v2/sandboxes`;
- `E2b-Sandbox-Port: 49999`: the code interpreter: `POST /execute` (NDJSON stream), `/contexts`;
- `E2b-Sandbox-Port: 49983`: envd (`X-Access-Token`): `GET /health`, `GET|POST /files`, and the
  Connect RPCs `filesystem.Filesystem/ListDir` (unary, JSON) and `process.Process/Start`
  (server stream, `application/connect+json` envelopes).

A sandbox unknown to the proxy gets the edge's 502 "... was not found", an unknown one on the API
a 404, as E2B answers. Faults are injected through `POST /_test/faults` (see `Faults`).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import logging
import os
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jupyter_client.kernelspec import KernelSpecManager

from tests.e2b_server.kernels import KERNEL_FOR_LANGUAGE, KernelContext, write_kernel_specs

log = logging.getLogger(__name__)

JUPYTER_PORT = "49999"
ENVD_PORT = "49983"
ENVD_VERSION = "0.5.7"
HOME = "/home/user"


@dataclass
class Fault:
    """One injected fault.

    where: "api" (control plane), "execute", "envd" or "any".
    action: "status" (answer `status` with an E2B-shaped error body), "drop" (for execute: close
    the stream abruptly after `after_lines` output objects), or "delay" (sleep `delay_s` first).
    times: how many requests it hits; None means until cleared.
    """

    where: str
    action: str
    status: int = 500
    after_lines: int = 0
    delay_s: float = 0.0
    times: int | None = 1
    path_contains: str = ""
    hits: int = 0


@dataclass
class SandboxState:
    id: str
    template: str
    metadata: dict[str, str]
    access_token: str
    root: Path
    started_at: datetime
    end_at: datetime
    contexts: dict[str, KernelContext] = field(default_factory=dict)
    default_contexts: dict[str, str] = field(default_factory=dict)  # language -> context id
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def home(self) -> Path:
        return self.root / "home"

    def as_api(self) -> dict[str, Any]:
        return {
            "templateID": self.template,
            "sandboxID": self.id,
            "clientID": "local",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": self.access_token,
            "domain": None,
        }

    def as_listed(self) -> dict[str, Any]:
        return {
            **self.as_api(),
            "startedAt": self.started_at.isoformat(),
            "endAt": self.end_at.isoformat(),
            "cpuCount": 2,
            "memoryMB": 512,
            "diskSizeMB": 1024,
            "state": "running",
            "metadata": self.metadata,
        }


class E2BState:
    """Everything the server knows: the API key, sandboxes, and pending faults."""

    def __init__(self, *, api_key: str, kernel_env: Path, root: Path) -> None:
        self.api_key = api_key
        self.kernel_env = kernel_env
        self.root = root
        self.specs: KernelSpecManager = write_kernel_specs(root / "specs", kernel_env)
        self.sandboxes: dict[str, SandboxState] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
        self.lock = threading.Lock()

    # --- faults ---------------------------------------------------------------------------------

    def take_fault(self, where: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.where not in (where, "any") or fault.path_contains not in path:
                    continue
                fault.hits += 1
                if fault.times is not None and fault.hits >= fault.times:
                    self.faults.remove(fault)
                return fault
        return None

    # --- sandboxes ------------------------------------------------------------------------------

    def kernel_env_vars(self, sandbox: SandboxState) -> dict[str, str]:
        site = sandbox.root / "site"
        return {
            "PATH": f"{self.kernel_env / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(sandbox.home),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(site),
            "DENO_DIR": str(sandbox.root / "deno"),
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "NO_COLOR": "1",
            # Kernel and library state lives beside the workspace, not in it.
            "IPYTHONDIR": str(sandbox.root / "dot" / "ipython"),
            "MPLCONFIGDIR": str(sandbox.root / "dot" / "matplotlib"),
            "XDG_CACHE_HOME": str(sandbox.root / "dot" / "cache"),
            "XDG_CONFIG_HOME": str(sandbox.root / "dot" / "config"),
            "E2B_SANDBOX": "true",
            "E2B_SANDBOX_ID": sandbox.id,
        }

    def create_sandbox(self, *, template: str, timeout_s: int, metadata: dict[str, str]) -> SandboxState:
        sandbox_id = "i" + secrets.token_hex(10)
        now = datetime.now(timezone.utc)
        sandbox = SandboxState(
            id=sandbox_id,
            template=template,
            metadata=metadata,
            access_token=secrets.token_urlsafe(24),
            root=self.root / sandbox_id,
            started_at=now,
            end_at=now + timedelta(seconds=timeout_s),
        )
        for sub in ("home", "site", "deno", "dot"):
            (sandbox.root / sub).mkdir(parents=True)
        # Like the template, the python context is up before the sandbox is handed out.
        self.context_for(sandbox, "python")
        with self.lock:
            self.sandboxes[sandbox_id] = sandbox
        return sandbox

    def context_for(self, sandbox: SandboxState, language: str) -> KernelContext:
        with sandbox.lock:
            context_id = sandbox.default_contexts.get(language)
            if context_id is None:
                context = KernelContext(
                    language=language, cwd=sandbox.home, env=self.kernel_env_vars(sandbox), specs=self.specs
                )
                sandbox.contexts[context.id] = context
                sandbox.default_contexts[language] = context.id
                context_id = context.id
            return sandbox.contexts[context_id]

    def get(self, sandbox_id: str) -> SandboxState | None:
        with self.lock:
            sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is not None and sandbox.end_at <= datetime.now(timezone.utc):
            self.kill(sandbox_id)  # its timeout passed: E2B has killed it
            return None
        return sandbox

    def kill(self, sandbox_id: str) -> bool:
        with self.lock:
            sandbox = self.sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            return False
        for context in list(sandbox.contexts.values()):
            context.shutdown()
        shutil.rmtree(sandbox.root, ignore_errors=True)
        return True

    def reap(self) -> None:
        for sandbox_id in list(self.sandboxes):
            self.get(sandbox_id)

    def shutdown(self) -> None:
        for sandbox_id in list(self.sandboxes):
            self.kill(sandbox_id)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "E2BServer"

    def setup(self) -> None:
        super().setup()
        # Streams are many small writes: without this, Nagle plus delayed ACKs add ~40 ms per run.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s %s", self.address_string(), format % args)

    # --- plumbing -------------------------------------------------------------------------------

    @property
    def state(self) -> E2BState:
        return self.server.state

    def body(self) -> bytes:
        """The request body, read once (dispatch reads it up front so that a keep-alive
        connection never carries an unread body into the next request)."""
        if self._body is None:
            self._body = self._read_body()
        return self._body

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def json_body(self) -> Any:
        raw = self.body()
        return json.loads(raw) if raw else {}

    def send_bytes(self, status: int, data: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), headers=headers)

    def send_empty(self, status: int = 204) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def api_error(self, status: int, message: str) -> None:
        headers = {"Retry-After": "0"} if status == 429 else None
        self.send_json(status, {"code": status, "message": message}, headers=headers)

    def start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def client_gone(self) -> bool:
        """Whether the client closed its end (the SDK closes the request to stop a run)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def drop_connection(self) -> None:
        """Close the socket without finishing the response: a stream cut mid-run."""
        self.stream_broken = self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- dispatch -------------------------------------------------------------------------------

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

    def apply_fault(self, where: str, path: str) -> Fault | None:
        """Serve a status/delay fault if one is armed; returns a "drop" fault for the caller."""
        fault = self.state.take_fault(where, path)
        if fault is None:
            return None
        if fault.action == "delay":
            time.sleep(fault.delay_s)
            return None
        if fault.action == "status":
            self.api_error(fault.status, {401: "Invalid API key", 429: "Rate limit exceeded"}.get(fault.status, "Internal server error"))
            return fault
        return fault  # "drop": the caller decides when

    # --- the control-plane API ------------------------------------------------------------------

    def api(self, path: str, query: dict[str, list[str]]) -> None:
        body = self.json_body() if self.command in ("POST", "PUT") else {}
        fault = self.apply_fault("api", path)
        if fault is not None and fault.action == "status":
            return
        if self.headers.get("X-API-KEY") != self.state.api_key:
            self.api_error(401, "Invalid API key, it must start with 'e2b_' prefix and be 40 characters long")
            return
        if path in ("/v2/sandboxes", "/sandboxes") and self.command == "POST":
            try:
                sandbox = self.state.create_sandbox(
                    template=body.get("templateID", "code-interpreter-v1"),
                    timeout_s=int(body.get("timeout", 15)),
                    metadata=body.get("metadata") or {},
                )
            except Exception as exc:
                log.exception("sandbox start failed")
                self.api_error(500, f"failed to start sandbox: {exc}")
                return
            self.send_json(201, sandbox.as_api())
            return
        if path in ("/v2/sandboxes", "/sandboxes") and self.command == "GET":
            self.send_json(200, [s.as_listed() for s in list(self.state.sandboxes.values())])
            return
        match = re.fullmatch(r"(?:/v2)?/sandboxes/([^/]+)(/[a-z]+)?", path)
        if not match:
            self.api_error(404, f"no route {self.command} {path}")
            return
        sandbox_id, action = match.group(1), match.group(2) or ""
        sandbox = self.state.get(sandbox_id)
        if sandbox is None:
            self.api_error(404, f"sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it")
            return
        if action == "/connect" and self.command == "POST":
            timeout_s = body.get("timeout")
            if timeout_s is not None:  # connect only ever extends the timeout
                sandbox.end_at = max(sandbox.end_at, datetime.now(timezone.utc) + timedelta(seconds=int(timeout_s)))
            self.send_json(200, sandbox.as_api())
        elif action == "/timeout" and self.command == "POST":
            sandbox.end_at = datetime.now(timezone.utc) + timedelta(seconds=int(body["timeout"]))
            self.send_empty()
        elif action == "" and self.command == "DELETE":
            self.state.kill(sandbox_id)
            self.send_empty()
        elif action == "" and self.command == "GET":
            self.send_json(200, sandbox.as_listed())
        else:
            self.api_error(404, f"no route {self.command} {path}")

    # --- the code interpreter (port 49999) ------------------------------------------------------

    def code_interpreter(self, sandbox: SandboxState, path: str) -> None:
        if path == "/health":
            self.send_bytes(200, b'"OK"')
            return
        if path == "/contexts" and self.command == "GET":
            self.send_json(200, [c.describe() for c in list(sandbox.contexts.values())])
            return
        if path == "/contexts" and self.command == "POST":
            body = self.json_body()
            language = (body.get("language") or "python").lower()
            language = {"js": "javascript", "ts": "typescript"}.get(language, language)
            if language not in KERNEL_FOR_LANGUAGE:
                self.send_bytes(500, f"no kernel for language {language}".encode(), "text/plain")
                return
            context = KernelContext(language=language, cwd=sandbox.home, env=self.state.kernel_env_vars(sandbox), specs=self.state.specs)
            sandbox.contexts[context.id] = context
            self.send_json(200, context.describe())
            return
        if path == "/execute" and self.command == "POST":
            self.execute(sandbox)
            return
        self.send_bytes(404, b"Not Found", "text/plain")

    def execute(self, sandbox: SandboxState) -> None:
        request = self.json_body()
        fault = self.apply_fault("execute", "/execute")
        if fault is not None and fault.action == "status":
            return
        if request.get("context_id") and request.get("language"):
            self.send_bytes(400, b"Only one of context_id or language can be provided", "text/plain")
            return
        if request.get("context_id"):
            context = sandbox.contexts.get(request["context_id"])
            if context is None:
                self.send_bytes(404, f"Context {request['context_id']} not found".encode(), "text/plain")
                return
        else:
            language = (request.get("language") or "python").lower()
            language = {"js": "javascript", "ts": "typescript"}.get(language, language)
            if language not in KERNEL_FOR_LANGUAGE:
                self.send_bytes(500, f"no kernel for language {language}".encode(), "text/plain")
                return
            try:
                context = self.state.context_for(sandbox, language)
            except Exception as exc:
                self.send_bytes(500, f"Failed to create context: {exc}".encode(), "text/plain")
                return
        self.start_stream("application/json")
        drop_after = fault.after_lines if fault is not None and fault.action == "drop" else None
        sent = 0
        for item in context.execute(request.get("code", ""), client_gone=self.client_gone):
            if self.stream_broken:
                continue  # the client is gone; execute() interrupts the kernel and drains it
            if drop_after is not None and sent >= drop_after and item["type"] != "keepalive":
                # Cut the stream mid-run. The sandbox lives on and the run is interrupted,
                # as when the connection between E2B's edge and the client breaks.
                self.drop_connection()
                continue
            try:
                self.write_chunk(json.dumps(item).encode() + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                self.stream_broken = self.close_connection = True
                continue
            if item["type"] != "keepalive":
                sent += 1
        if self.stream_broken:
            return
        if self.state.get(sandbox.id) is None:
            self.drop_connection()  # the sandbox was killed under the run: its VM vanishes mid-stream
            return
        try:
            self.write_chunk(b'{"type": "end_of_execution"}\n')
            self.end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- envd (port 49983) ----------------------------------------------------------------------

    def workspace_path(self, sandbox: SandboxState, raw: str) -> Path | None:
        """The host path for a sandbox path, or None when it is outside /home/user."""
        if not raw.startswith("/"):
            raw = f"{HOME}/{raw}"
        normalized = os.path.normpath(raw)
        if normalized != HOME and not normalized.startswith(HOME + "/"):
            return None
        return sandbox.home / os.path.relpath(normalized, HOME)

    def envd(self, sandbox: SandboxState, path: str, query: dict[str, list[str]]) -> None:
        fault = self.apply_fault("envd", path)
        if fault is not None and fault.action == "status":
            return
        if path == "/health":
            self.send_empty()
        elif path == "/files" and self.command == "GET":
            self.files_read(sandbox, query)
        elif path == "/files" and self.command == "POST":
            self.files_write(sandbox, query)
        elif path == "/filesystem.Filesystem/ListDir":
            self.list_dir(sandbox)
        elif path == "/filesystem.Filesystem/Stat":
            self.stat(sandbox)
        elif path == "/process.Process/Start":
            self.process_start(sandbox)
        else:
            self.send_json(404, {"code": "unimplemented", "message": f"{path} is not implemented by the test server"})

    def confined(self, sandbox: SandboxState, target: Path) -> bool:
        """Whether `target`, symlinks resolved, stays in the workspace. envd would follow a link
        anywhere in its VM; this server's "VM" is the test host, so it refuses instead."""
        home = os.path.realpath(sandbox.home)
        resolved = os.path.realpath(target)
        return resolved == home or resolved.startswith(home + "/")

    def files_read(self, sandbox: SandboxState, query: dict[str, list[str]]) -> None:
        raw = query.get("path", [""])[0]
        target = self.workspace_path(sandbox, raw)
        if target is None or not self.confined(sandbox, target):
            self.send_json(403, {"code": 403, "message": f"path '{raw}' is outside the test server's workspace"})
        elif not target.is_file():
            self.send_json(404, {"code": 404, "message": f"path '{raw}' does not exist"})
        else:
            self.send_bytes(200, target.read_bytes(), "application/octet-stream")

    def files_write(self, sandbox: SandboxState, query: dict[str, list[str]]) -> None:
        body = self.body()
        content_type = self.headers.get("Content-Type", "")
        uploads: list[tuple[str, bytes]] = []
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            for part in message.iter_parts():
                name = query.get("path", [None])[0] or part.get_filename() or ""
                uploads.append((name, part.get_payload(decode=True) or b""))
        else:
            uploads.append((query.get("path", [""])[0], body))
        written = []
        for raw, data in uploads:
            target = self.workspace_path(sandbox, raw)
            if target is None or not self.confined(sandbox, target):
                self.send_json(403, {"code": 403, "message": f"path '{raw}' is outside the test server's workspace"})
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append({"name": target.name, "type": "file", "path": os.path.normpath(raw if raw.startswith("/") else f"{HOME}/{raw}")})
        self.send_json(200, written)

    def list_dir(self, sandbox: SandboxState) -> None:
        request = self.json_body()
        raw = request.get("path", HOME)
        target = self.workspace_path(sandbox, raw)
        if target is None or not target.is_dir():
            self.send_json(404, {"code": "not_found", "message": f"directory '{raw}' does not exist"})
            return
        base = os.path.normpath(raw if raw.startswith("/") else f"{HOME}/{raw}")
        entries = [entry_info(child, f"{base}/{child.name}") for child in sorted(target.iterdir())]
        self.send_json(200, {"entries": entries})

    def stat(self, sandbox: SandboxState) -> None:
        raw = self.json_body().get("path", HOME)
        target = self.workspace_path(sandbox, raw)
        if target is None or not os.path.lexists(target):
            self.send_json(404, {"code": "not_found", "message": f"path '{raw}' does not exist"})
            return
        self.send_json(200, {"entry": entry_info(target, os.path.normpath(raw if raw.startswith("/") else f"{HOME}/{raw}"))})

    def process_start(self, sandbox: SandboxState) -> None:
        """A Connect server stream: start, data (base64 stdout/stderr), end, then end-of-stream."""
        raw = self.body()
        if len(raw) < 5:
            self.send_json(400, {"code": "invalid_argument", "message": "missing request envelope"})
            return
        (length,) = struct.unpack(">I", raw[1:5])
        request = json.loads(raw[5 : 5 + length] or b"{}")
        process = request.get("process", {})
        args = [a for a in process.get("args", []) if a != "-l"]  # no login shell: keep our PATH
        cwd = self.workspace_path(sandbox, process.get("cwd") or HOME) or sandbox.home
        env = {**self.state.kernel_env_vars(sandbox), "PIP_TARGET": str(sandbox.root / "site"), **(process.get("envs") or {})}
        proc = subprocess.Popen(
            [process.get("cmd", "/bin/bash"), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.start_stream("application/connect+json")

        def send(message: dict[str, Any], flags: int = 0) -> None:
            data = json.dumps(message).encode()
            self.write_chunk(struct.pack(">BI", flags, len(data)) + data)

        try:
            send({"event": {"start": {"pid": proc.pid}}})
            streams = {proc.stdout: "stdout", proc.stderr: "stderr"}
            last = time.monotonic()
            while streams:
                ready, _, _ = select.select(list(streams), [], [], 1.0)
                for stream in ready:
                    chunk = os.read(stream.fileno(), 65536)
                    if not chunk:
                        del streams[stream]
                        continue
                    send({"event": {"data": {streams[stream]: base64.b64encode(chunk).decode()}}})
                    last = time.monotonic()
                if time.monotonic() - last > 5:
                    send({"event": {"keepalive": {}}})
                    last = time.monotonic()
                if self.client_gone():
                    raise BrokenPipeError
            code = proc.wait()
            status = f"exit status {code}" if code >= 0 else f"signal: {signal.Signals(-code).name.lower()}"
            send({"event": {"end": {"exitCode": code, "exited": code >= 0, "status": status}}})
            send({}, flags=0x02)
            self.end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def entry_info(host_path: Path, sandbox_path: str) -> dict[str, Any]:
    """envd's EntryInfo (proto JSON) for a path, lstat'ed like envd: a symlink is marked as one."""
    info = host_path.lstat()
    is_link = host_path.is_symlink()
    entry: dict[str, Any] = {
        "name": host_path.name,
        "type": "FILE_TYPE_DIRECTORY" if host_path.is_dir() else "FILE_TYPE_FILE",
        "path": sandbox_path,
        "size": str(info.st_size),
        "mode": info.st_mode & 0o777,
        "permissions": "",
        "owner": "user",
        "group": "user",
        "modifiedTime": datetime.fromtimestamp(info.st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if is_link:
        entry["isSymlink"] = True
        entry["symlinkTarget"] = os.readlink(host_path)
    return entry


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
