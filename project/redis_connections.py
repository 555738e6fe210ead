"""Redis connections for channels-redis whose commands can be cancelled (settings' CHANNEL_LAYERS).

redis-py sends every command inside `asyncio.wait_for(write, socket_timeout)` when a socket
timeout is set (we set one: see settings). On Python 3.11, `wait_for` runs the write as a task of
its own, and a `cancel()` landing just as that write finishes is swallowed (CPython gh-86296,
fixed by 3.12's `wait_for`): the cancelled channel-layer receive goes on to its next blocking pop,
and on, forever. That hung runtime_stop's listener (a test's teardown on Postgres + Redis), and
any `wait_for(layer.receive(...))` or cancelled stream read with it; under a stress of cancels at
random moments, 1 in 20 was lost. These connections write under a timeout context instead, in the
cancelled task itself, so a cancel always ends the command. Everything else is redis-py's.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from typing import Any

from redis.asyncio import connection as redis_connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# As redis-py chooses (asyncio.timeout has a cancellation bug before 3.11.3: redis-py issue 2633).
if sys.version_info >= (3, 11, 3):
    from asyncio import timeout as write_timeout
else:
    from async_timeout import timeout as write_timeout

# 3.12's wait_for awaits the write in the calling task: redis-py's own send is safe there.
WAIT_FOR_LOSES_CANCELS = sys.version_info < (3, 12)


class _CancellableSends(redis_connection.AbstractConnection):
    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        """redis-py's send_packed_command, its write under a timeout context rather than wait_for."""
        if not self.socket_timeout or not WAIT_FOR_LOSES_CANCELS:
            return await super().send_packed_command(command, check_health)
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            async with write_timeout(self.socket_timeout):
                await self._send_packed_command(command)
        except asyncio.TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            await self.disconnect(nowait=True)
            err_no, errmsg = ("UNKNOWN", e.args[0]) if len(e.args) == 1 else (e.args[0], e.args[1])
            raise RedisConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
        except BaseException:
            await self.disconnect(nowait=True)  # a half-sent command leaves the connection unusable
            raise


class CancellableConnection(_CancellableSends, redis_connection.Connection):
    pass


class CancellableSSLConnection(_CancellableSends, redis_connection.SSLConnection):
    pass


class CancellableUnixDomainSocketConnection(_CancellableSends, redis_connection.UnixDomainSocketConnection):
    pass


CANCELLABLE: dict[type[redis_connection.AbstractConnection], type[redis_connection.AbstractConnection]] = {
    redis_connection.Connection: CancellableConnection,
    redis_connection.SSLConnection: CancellableSSLConnection,
    redis_connection.UnixDomainSocketConnection: CancellableUnixDomainSocketConnection,
}


def channel_layer_host(url: str, **options: Any) -> dict[str, Any]:
    """A channels-redis `hosts` entry for `url` (redis://, rediss:// or unix://): the connection
    pool's keyword arguments, with `options` (the URL's query string wins, as in from_url) and the
    cancellable connection class for the URL's scheme."""
    kwargs: dict[str, Any] = {**options, **redis_connection.parse_url(url)}
    kwargs["connection_class"] = CANCELLABLE[kwargs.get("connection_class", redis_connection.Connection)]
    return kwargs
