"""A throwaway redis-server for the tests that need a real one (the embedding cache, the Vector hop's
shared memory of forwarded batches): the binary Debian installs, on a free loopback port."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path


class RedisServer:
    """A throwaway redis-server on a free loopback port (never the machine's 6379). With
    ``data_dir`` it keeps its data there (append-only file), so it can be stopped and started
    again with what it held, as a production Redis restarts."""

    def __init__(self, data_dir: Path | None = None, tls: tuple[Path, Path] | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.data_dir = data_dir
        self.tls = tls  # (certificate, key): TLS only, on the port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[0]}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        keep = (
            ["--appendonly", "yes", "--dir", str(self.data_dir)] if self.data_dir else ["--appendonly", "no"]
        )
        listen = ["--port", str(self.port)]
        if self.tls:
            cert, key = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            listen += [
                "--tls-cert-file",
                str(cert),
                "--tls-key-file",
                str(key),
                "--tls-ca-cert-file",
                str(cert),
            ]
        self.process = subprocess.Popen(
            ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "", *keep],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60  # a bound against hanging: a loaded host starts it late
        while time.monotonic() < deadline:
            try:
                with self._connect() as conn:
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
            self.process.wait(30)
            self.process = None

    def _connect(self) -> socket.socket:
        # a guard against hanging: on a busy host Redis may answer seconds late
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        if not self.tls:
            return conn
        context = ssl.create_default_context(cafile=str(self.tls[0]))
        return context.wrap_socket(conn, server_hostname="127.0.0.1")

    def keys(self) -> int:
        with self._connect() as conn:
            conn.sendall(b"DBSIZE\r\n")
            return int(conn.recv(64).strip().lstrip(b":"))
