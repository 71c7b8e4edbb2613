"""The container image's health check (the Dockerfile's HEALTHCHECK), run as the image runs it
against the real service: it asks where `serve` answers with the same settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from certificates import make_certificate
from live_scorer import closed_port, serve_scorer

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"


def _image_check() -> list[str]:
    """The Dockerfile's HEALTHCHECK command (its JSON form), with this interpreter for python3."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    command: list[str] = json.loads(line.split(" CMD ", 1)[1])
    assert command[0] == "python3"
    return [sys.executable, *command[1:]]


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _image_check(), capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_the_check_finds_the_service_where_its_settings_put_it(
    bundle_dir: Path, tmp_path: Path, tls: bool
) -> None:
    """The check asked http://127.0.0.1:8080 whatever the settings: a scorer serving HTTPS (as the
    README advises beyond loopback), or on another port, was unhealthy, and the compose services
    that wait on it never started."""
    env: dict[str, str] = {}
    if tls:
        cert, key = make_certificate(tmp_path, "scorer")
        env = {"OCSF_ANOMALY_TLS_CERT_FILE": str(cert), "OCSF_ANOMALY_TLS_KEY_FILE": str(key)}
    with serve_scorer(bundle_dir, tmp_path / "serve.log", env=env) as scorer:
        done = _check({**env, "OCSF_ANOMALY_PORT": str(scorer.port), "OCSF_ANOMALY_HOST": "0.0.0.0"})
    assert done.returncode == 0, done.stderr


def test_a_service_that_does_not_answer_is_unhealthy() -> None:
    with closed_port() as port:
        done = _check({"OCSF_ANOMALY_PORT": str(port)})
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: http://127.0.0.1:{port}/healthz: "), done.stderr
