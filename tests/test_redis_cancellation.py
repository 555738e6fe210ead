"""A cancelled channel-layer receive on Redis ends, whenever the cancel lands (project/redis_connections.py).

On Python 3.11, redis-py's `wait_for` around each write swallowed a cancel landing as the write
finished: the receive went on to its next blocking pop, and a teardown waiting for it hung.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from channels_redis.core import RedisChannelLayer

from project.redis_connections import channel_layer_host
from tests.fixtures_drills import private_redis  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(120)

ATTEMPTS = 300


async def test_a_cancelled_receive_ends_wherever_the_cancel_lands(private_redis) -> None:  # noqa: F811
    # As settings build it for REDIS_URL.
    layer = RedisChannelLayer(hosts=[channel_layer_host(private_redis.url, socket_timeout=30)], prefix="cancels")
    random.seed(20261203)
    stuck: list[asyncio.Future[object]] = []
    try:
        for attempt in range(ATTEMPTS):
            # A receive cleans its backup queue, then blocks in BZPOPMIN: a write and a read each.
            receiving = asyncio.ensure_future(layer.receive(f"cancels.{attempt}"))
            await asyncio.sleep(random.uniform(0, 0.02))
            receiving.cancel()
            done, _ = await asyncio.wait({receiving}, timeout=2)
            if not done:
                stuck.append(receiving)
        assert not stuck, f"{len(stuck)} of {ATTEMPTS} cancelled receives went on receiving"
    finally:
        for receiving in stuck:  # cancel again until they end, so this test's loop can close
            while not receiving.done():
                receiving.cancel()
                await asyncio.wait({receiving}, timeout=0.5)
        await layer.close_pools()
