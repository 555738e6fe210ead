"""The code interpreter (sandbox port 49999): `/execute` streams NDJSON, `/contexts` manages kernels."""

from __future__ import annotations

import json

from tests.e2b_server.kernels import KERNEL_FOR_LANGUAGE, KernelContext
from tests.e2b_server.state import SandboxState
from tests.e2b_server.wire import HandlerBase


class InterpreterRoutes(HandlerBase):
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
