"""`python -m tests.e2b_server`: serve the E2B protocol locally until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tests.e2b_server.server import E2BServer, E2BState


def _stop_when_orphaned(stop: threading.Event) -> None:
    """A test run killed with SIGKILL can't stop us: exit (and shut the kernels down) when our
    parent goes away."""
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-key", required=True, help="the one API key the server accepts")
    parser.add_argument("--kernel-env", default="/var/lib/sandpit/kenv", help="venv with ipykernel, bash_kernel and deno")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="e2b-test-server-") as root:
        state = E2BState(api_key=args.api_key, kernel_env=Path(args.kernel_env), root=Path(root))
        server = E2BServer(state, host=args.host, port=args.port)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        threading.Thread(target=_stop_when_orphaned, args=(stop,), daemon=True).start()
        print(f"READY {server.url}", flush=True)
        stop.wait()
        server.shutdown()
        state.shutdown()


if __name__ == "__main__":
    main()
