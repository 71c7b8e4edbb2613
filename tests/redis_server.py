"""A throwaway redis-server for the tests that need a real one (the embedding cache, the Vector hop's
shared memory of forwarded batches): the binary Debian installs, on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


class RedisServer:
    """A throwaway redis-server on a free loopback port (never the machine's 6379). With
    ``data_dir`` it keeps its data there (append-only file), so it can be stopped and started
    again with what it held, as a production Redis restarts."""

    def __init__(self, data_dir: Path | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        keep = (
            ["--appendonly", "yes", "--dir", str(self.data_dir)] if self.data_dir else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *keep],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self, graceful: bool = False) -> None:
        """Kill it; ``graceful``: SIGTERM, on which Redis writes its data out and exits."""
        if self.process is not None:
            if graceful:
                self.process.terminate()
            else:
                self.process.kill()
            self.process.wait(10)
            self.process = None

    def keys(self) -> int:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
            conn.sendall(b"DBSIZE\r\n")
            return int(conn.recv(64).strip().lstrip(b":"))
