"""Runs `deno jupyter --kernel` inside the sandbox and relays its TCP sockets to Unix sockets.

Deno's Jupyter kernel only speaks TCP, and TCP does not cross the sandbox's network namespace.
ZMTP framing is the same over TCP and ipc, so a byte relay lets the server reach the kernel
through Unix sockets in the control directory, exactly as it reaches the Python kernel.

    relay.py CONNECTION_FILE DENO_BINARY

The connection file is the ipc one the server wrote; this process exits with deno's status.
"""

import asyncio
import json
import os
import signal
import socket
import sys

CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def free_tcp_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main() -> int:
    conn_path, deno = sys.argv[1], sys.argv[2]
    with open(conn_path) as f:
        conn = json.load(f)
    ports = free_tcp_ports(len(CHANNELS))
    tcp_conn = dict(conn, transport="tcp", ip="127.0.0.1", **dict(zip(CHANNELS, ports)))
    tcp_path = "/tmp/.deno-kernel.json"
    fd = os.open(tcp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tcp_conn, f)
    kernel = await asyncio.create_subprocess_exec(deno, "jupyter", "--kernel", "--conn", tcp_path)

    def serve(port: int):
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for _ in range(3000):  # deno may still be starting: retry for up to 30 s
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                    break
                except OSError:
                    await asyncio.sleep(0.01)
            else:
                writer.close()
                return
            for s in (writer, up_writer):
                sock = s.get_extra_info("socket")
                if sock is not None and sock.family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        return on_client

    servers = []
    for name, port in zip(CHANNELS, ports):
        path = f"{conn['ip']}-{conn[name]}"
        if os.path.exists(path):
            os.unlink(path)
        servers.append(await asyncio.start_unix_server(serve(port), path=path))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, kernel.kill)
    return await kernel.wait()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
