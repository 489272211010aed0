"""A minimal, fast HTTP/1.1 server for load tests: answers every GET with 200 and a
short body naming the path. Run as a separate process so it has its own core:

    python -m tests.fastserver PORT_FILE

It binds 127.0.0.1 on a free port, writes the port to PORT_FILE, and serves until
killed (SIGTERM) or until its parent process goes away.
"""

from __future__ import annotations

import asyncio
import os
import sys

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the test extra
    uvloop = None


class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            path = head.split(b" ", 2)[1]
            body = b"ok " + path
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )


def _announce(port_file: str, port: int) -> None:
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, port_file)  # the test sees the whole number or nothing


async def _serve(port_file: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    _announce(port_file, port)
    parent = os.getppid()
    async with server:
        while os.getppid() == parent:  # exit with the test that started us
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.run(_serve(sys.argv[1]))
    else:
        asyncio.run(_serve(sys.argv[1]))
