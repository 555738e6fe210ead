"""envd (sandbox port 49983): `/health`, `/files` and the Connect RPCs the SDK's `files.*` and
`commands.run` use (ListDir and Stat unary in JSON; Process/Start a server stream of envelopes)."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.e2b_server.state import HOME, SandboxState
from tests.e2b_server.wire import HandlerBase


class EnvdRoutes(HandlerBase):
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
        elif path == "/filesystem.Filesystem/Remove":
            self.remove(sandbox)
        elif path == "/filesystem.Filesystem/Move":
            self.move(sandbox)
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

    def remove(self, sandbox: SandboxState) -> None:
        raw = self.json_body().get("path", "")
        target = self.workspace_path(sandbox, raw)
        if target is None or target == sandbox.home:
            self.send_json(403, {"code": "permission_denied", "message": f"path '{raw}' can't be removed here"})
        elif not os.path.lexists(target):
            self.send_json(404, {"code": "not_found", "message": f"path '{raw}' does not exist"})
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
            self.send_json(200, {})

    def move(self, sandbox: SandboxState) -> None:
        request = self.json_body()
        source = self.workspace_path(sandbox, request.get("source", ""))
        destination = self.workspace_path(sandbox, request.get("destination", ""))
        if source is None or destination is None:
            self.send_json(403, {"code": "permission_denied", "message": "paths must stay in the test server's workspace"})
        elif not os.path.lexists(source) or not destination.parent.is_dir():
            self.send_json(404, {"code": "not_found", "message": f"path '{request.get('source')}' does not exist"})
        else:
            os.rename(source, destination)
            self.send_json(200, {"entry": entry_info(destination, os.path.normpath(request["destination"]))})

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
