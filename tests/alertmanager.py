"""A throwaway Prometheus Alertmanager for the alert tests: the binary Debian's
``prometheus-alertmanager`` package installs, on a free loopback port, without clustering (no
gossip port), its configuration and storage in a temporary directory.

It can be stopped and started again on the same port, as a receiver that goes down and comes back
(its alerts live in memory, so a restarted one holds only what was posted since).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BINARY = "prometheus-alertmanager"
SKIP_REASON = f"{BINARY} is not installed (apt-get install -y prometheus-alertmanager)"

# One route, to a receiver with no integrations: alerts are stored and queryable, never notified.
CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


def available() -> bool:
    return shutil.which(BINARY) is not None


class Alertmanager:
    """``start()`` / ``stop()`` a real Alertmanager; ``alerts()`` reads what it holds."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._dir = tempfile.TemporaryDirectory(prefix="alertmanager-")
        self._config = Path(self._dir.name) / "alertmanager.yml"
        self._config.write_text(CONFIG, encoding="utf-8")
        self._log = Path(self._dir.name) / "alertmanager.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    BINARY,
                    f"--config.file={self._config}",
                    f"--storage.path={Path(self._dir.name) / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60  # a bound against hanging: a loaded host starts it late
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"alertmanager exited at start:\n{self._log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"alertmanager was not ready in time:\n{self._log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert it holds (``GET /api/v2/alerts``: active, silenced, inhibited, unprocessed)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            alerts: list[dict[str, Any]] = json.loads(response.read())
            return alerts
