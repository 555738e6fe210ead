"""The control-plane API (`X-API-KEY`): create, connect, set timeout, kill, get and list sandboxes."""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta, timezone

from tests.e2b_server.wire import HandlerBase

log = logging.getLogger("tests.e2b_server")


class ApiRoutes(HandlerBase):
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
        elif action == "/metrics" and self.command == "GET":
            self.send_json(200, [_metrics(sandbox)])
        else:
            self.api_error(404, f"no route {self.command} {path}")


def _metrics(sandbox: object) -> dict[str, object]:
    """One entry of E2B's GET /sandboxes/{id}/metrics, measured on the sandbox's kernel processes
    (RSS, and CPU time over their lifetime as a share of the sandbox's 2 vCPUs)."""
    rss_bytes, cpu_s = 0, 0.0
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    for context in list(getattr(sandbox, "contexts", {}).values()):
        pid = getattr(getattr(context.manager, "provisioner", None), "pid", None)
        try:
            with open(f"/proc/{pid}/statm") as statm:
                rss_bytes += int(statm.read().split()[1]) * page
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
                cpu_s += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, ValueError, IndexError, TypeError):
            continue
    now = datetime.now(timezone.utc)
    lived_s = max((now - sandbox.started_at).total_seconds(), 1.0)  # type: ignore[attr-defined]
    return {
        "timestamp": now.isoformat(), "timestampUnix": int(now.timestamp()), "cpuCount": 2,
        "cpuUsedPct": round(min(cpu_s / lived_s / 2 * 100, 100.0), 2), "memUsed": rss_bytes, "memTotal": 512 * 1024 * 1024,
        "memCache": 0, "diskUsed": 0, "diskTotal": 1024 * 1024 * 1024,
    }
