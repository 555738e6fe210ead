"""The raw floor both benchmarks measure against: a stock jupyter_client client on a sandbox kernel.

Imported by bench/sandbox.py and bench/ws.py (run as scripts, so this folder is on sys.path).
No Django here: bench/ws.py sets its environment up before Django loads.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient


def raw_client_for(kernel: Any) -> AsyncKernelClient:
    """A stock jupyter_client client on a sandbox kernel's ipc sockets (host-side paths)."""
    conn = json.loads((kernel.control_dir / "kernel.json").read_text())
    conn["ip"] = f"{kernel.control_dir}/k"
    client = AsyncKernelClient()
    client.load_connection_info(conn)
    client.start_channels(hb=False, stdin=False)
    return client


async def raw_execute(client: AsyncKernelClient, code: str) -> int:
    """Execute and wait for execute_reply plus idle, as a careful raw client does; returns stdout bytes."""
    msg_id = client.execute(code)
    got = 0
    idle = False
    while not idle:
        msg = await client.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            got += len(msg["content"]["text"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    while True:
        reply = await client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            return got
