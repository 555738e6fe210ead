"""`python -m tests.e2b_server.bench`: the E2B backend's overhead over the raw SDK, on the local server.

Runs `1` thirty times each way on one sandbox, alternating, and prints the medians and their ratio.
This measures our wrapper (event mapping, deadline, keep-alive), not E2B's network.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import django


async def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from django.conf import settings
    from e2b_code_interpreter import AsyncSandbox

    from runner.sandboxes.e2b import E2BBackend, E2BConfig
    from tests.e2b_server import start_server

    server = start_server(api_key="e2b_bench", kernel_env=settings.SANDBOX_KERNEL_ENV)
    try:
        config = E2BConfig(api_key="e2b_bench", api_url=server.url, sandbox_url=server.url, idle_timeout_s=300)
        backend = E2BBackend(config)
        started = time.perf_counter()
        sandbox = await backend.create(owner_id=0, session_id="bench")
        create_ms = (time.perf_counter() - started) * 1000
        raw = await AsyncSandbox.connect(sandbox.id, **config.sdk_options())
        raw_s, ours_s = [], []
        for i in range(35):
            t = time.perf_counter()
            await raw.run_code("1", on_result=lambda r: None)
            raw_elapsed = time.perf_counter() - t
            t = time.perf_counter()
            await sandbox.run("1", language="python", on_event=lambda e: None, timeout_s=10)
            ours_elapsed = time.perf_counter() - t
            if i >= 5:  # warm-up
                raw_s.append(raw_elapsed)
                ours_s.append(ours_elapsed)
        raw_ms, ours_ms = statistics.median(raw_s) * 1000, statistics.median(ours_s) * 1000
        print(f"create (python kernel start): {create_ms:.0f} ms")
        print(f"run('1'), median of {len(raw_s)}: raw SDK {raw_ms:.2f} ms, E2BSandbox {ours_ms:.2f} ms, ratio {ours_ms / raw_ms:.2f}")
        await sandbox.close()
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
