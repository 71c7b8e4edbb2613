"""The deployment files as written: docker-compose.yml valid for docker-compose (the default set and
every profile) and consistent with the repository (mounted files exist, images replaceable through
variables, ports on loopback, start order by health), the Dockerfiles clean under hadolint, and the
air-gapped build's image variables the ones the compose file reads. Bringing the stack up needs a
Docker engine and minutes: that is `make e2e` (deploy/e2e.py), not this suite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
PROFILES = ["kafka", "vector", "opensearch", "splunk"]
DOCKERFILES = [ROOT / "Dockerfile", *sorted((ROOT / "deploy" / "docker").glob("*.Dockerfile"))]
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
VARIABLE = re.compile(r"^\$\{([A-Z_]+):-([^}]+)\}$")  # ${NAME:-default}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (Debian package docker-compose; make test installs it)",
)
@pytest.mark.parametrize("profile", [None, *PROFILES])
def test_docker_compose_accepts_the_file(profile: str | None) -> None:
    command = ["docker-compose", "-f", str(COMPOSE)]
    if profile:
        command += ["--profile", profile]
    result = subprocess.run([*command, "config", "-q"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = subprocess.run([HADOLINT, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""  # not even an info-level finding


def test_every_image_can_be_replaced_and_defaults_to_an_official_one(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        match = VARIABLE.match(service["image"])
        if name in {"scorer", "train", "stream", "opensearch-setup"}:  # built here, from the Dockerfile
            assert service["image"] == "ocsf-anomaly:${OCSF_ANOMALY_VERSION:-0.1.0}"
            assert service["build"]["args"]["BASE_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim-bookworm}"
            continue
        assert match, f"{name}: image {service['image']!r} is not ${{VARIABLE:-default}}"
        assert ":" in match.group(2), f"{name}: the default image has no tag"


def test_the_airgapped_build_sets_variables_the_compose_file_reads() -> None:
    script = (ROOT / "deploy" / "docker" / "build-airgap-images.sh").read_text(encoding="utf-8")
    written = re.findall(r"^([A-Z_]+_IMAGE)=", script, re.MULTILINE)
    assert set(written) == {
        "PYTHON_IMAGE",
        "REDIS_IMAGE",
        "PROMETHEUS_IMAGE",
        "ALERTMANAGER_IMAGE",
        "MLFLOW_IMAGE",
    }
    text = COMPOSE.read_text(encoding="utf-8")
    for variable in written:
        assert "${" + variable + ":-" in text, f"docker-compose.yml never reads {variable}"
    assert (
        subprocess.run(["bash", "-n", str(ROOT / "deploy" / "docker" / "build-airgap-images.sh")]).returncode
        == 0
    )


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_mounted_files_are_in_the_repository(compose: dict[str, Any]) -> None:
    built_by_make = {"./dist", "./data/vector"}  # make splunk-app's output; the Vector profile's input folder
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and source not in built_by_make:
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_the_stack_starts_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["scorer"]["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "mlflow": {"condition": "service_healthy"},
        "train": {"condition": "service_completed_successfully"},
    }
    one_shot = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shot == {"train", "opensearch-setup"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            target = services[dependency]
            if condition["condition"] == "service_healthy":  # the image's HEALTHCHECK, or the file's
                assert "healthcheck" in target or target.get("build"), (
                    f"{name} waits on {dependency}'s health"
                )
                assert not target.get("healthcheck", {}).get("disable"), f"{dependency} has no health check"


def test_the_dockerfile_copies_only_what_the_context_keeps() -> None:
    kept = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text(encoding="utf-8").splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                for source in line.split()[1:-1]:  # every source; the last word is the destination
                    assert any(source.rstrip("/").startswith(k) for k in kept), (
                        f"{dockerfile.name}: {source} is not in the context"
                    )
