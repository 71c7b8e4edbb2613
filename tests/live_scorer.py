"""The real scoring service for tests that call it over HTTP: ``ocsf-anomaly serve`` of a bundle on
a free loopback port (the Splunk command, the OpenSearch connector's contract), or the app in this
process on one (``serve_app``: the OpenAPI checks, the Vector hop)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from scorer.service.app import create_app
from scorer.settings import Settings


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, then released: connecting is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    yield port


@dataclass
class Scorer:
    """The real ocsf-anomaly service, serving on a loopback port."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("GET", path)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()


@contextmanager
def serve_scorer(bundle: Path, log: Path, env: Mapping[str, str] | None = None) -> Iterator[Scorer]:
    """``ocsf-anomaly serve`` of ``bundle`` (one worker, one thread) on a free loopback port, its
    stderr in ``log``; stopped on exit."""
    with closed_port() as port:
        pass
    environment = {
        **os.environ,
        "OCSF_ANOMALY_MODEL_POLL_SECONDS": "0",
        "OCSF_ANOMALY_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        **(env or {}),
    }
    command = [sys.executable, "-m", "scorer.cli", "serve", "--model", str(bundle)]
    command += ["--port", str(port), "--workers", "1"]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stderr=sink, env=environment)
    try:
        deadline = time.monotonic() + 180
        while "try:" not in log.read_text() and process.poll() is None:
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        assert process.poll() is None, log.read_text()
        yield Scorer(process, port, log)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)


@contextmanager
def serve_app(settings: Settings, ssl_context: ssl.SSLContext | None = None) -> Iterator[str]:
    """The service's app in this process, on a real loopback port, in a thread with its own event
    loop (over TLS with ``ssl_context``): its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(settings))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
