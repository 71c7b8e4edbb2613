"""Loopback helpers for the tests: a free port, and a relay in front of a real server that can
terminate TLS (as a load balancer does) or hold each new connection back (as a slow network or a
busy TLS peer does)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Relay:
    """A free loopback port whose connections are relayed in the clear to ``target_port``.

    ``tls``: (certificate, key) to serve TLS with; ``client_ca``: a client must then present a
    certificate it signed (mutual TLS). ``connect_delay``: seconds each new connection waits before
    it reaches the target, so its first answer comes that late; later traffic flows at once."""

    def __init__(
        self,
        target_port: int,
        *,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        connect_delay: float = 0.0,
    ) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.connect_delay = connect_delay
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*tls)
            if client_ca is not None:
                self.context.verify_mode = ssl.CERT_REQUIRED
                self.context.load_verify_locations(client_ca)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    def start(self) -> None:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", self.port, ssl=self.context), self.loop
        ).result(10)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.connect_delay)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def stop(self) -> None:
        # on the loop's own thread, before it stops: closed from this one, the server raced the loop
        # waking its waiters (CI: "'NoneType' object is not iterable" in Server._wakeup)
        if self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
