"""A lean HTTP/1.1 client for load generation: keep-alive connections over asyncio protocols, each
answer read only for its status and body.

The load generator shares this machine's two cores with the service it measures, and every moment
its own event loop is busy counts in the latencies it reports. aiohttp's client cost it 220–260
µs of CPU a request at 2,500 requests/s (0.55–0.64 of the 2 cores) and 400 µs at 500; this one
costs 80 and 160 µs (BENCHMARKS.md → Service), because it does what the benchmarks need and
nothing else. No TLS, redirects, cookies, compression or chunked answers: an
answer without Content-Length is an error, not a guess.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import NamedTuple


class Answer(NamedTuple):
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self._fail(ConnectionError("an answer without Content-Length"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        answer = Answer(int(head[9:12]), bytes(self.buffer[end + 4 : total]))
        del self.buffer[:total]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("the server closed the connection"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class LoadClient:
    """POSTs to one URL (http only), reusing idle connections and opening one more whenever every
    open one is waiting for an answer: an open-loop schedule is never held back by the client."""

    def __init__(self, url: str, content_type: str = "application/json") -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"LoadClient speaks plain http only, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self.prefix = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: "
        ).encode()
        self.idle: list[_Connection] = []
        self.opened = 0

    async def post(self, body: bytes) -> Answer:
        """Send ``body``; the answer, or OSError (ConnectionError) when the connection failed."""
        loop = asyncio.get_running_loop()
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                break
        else:
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
            self.opened += 1
        waiter: asyncio.Future[Answer] = loop.create_future()
        connection.waiter = waiter
        assert connection.transport is not None
        connection.transport.write(b"%s%d\r\n\r\n%s" % (self.prefix, len(body), body))
        answer = await waiter
        self.idle.append(connection)
        return answer

    def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()
        self.idle.clear()
