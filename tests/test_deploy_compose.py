"""The deployment files as written: docker-compose.yml valid for docker-compose (the default set and
every profile) and consistent with the repository (mounted files exist, images replaceable through
variables, ports on loopback, start order by health), the Dockerfiles clean under hadolint, and the
air-gapped build's image variables the ones the compose file reads. Bringing the stack up needs a
Docker engine and minutes: that is `make e2e` (deploy/e2e.py), not this suite."""

from __future__ import annotations

import base64
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.waiting import eventually

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
        if name in {
            "scorer",
            "train",
            "stream",
            "opensearch-setup",
            "splunk-setup",
        }:  # built here, from the Dockerfile
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
    assert one_shot == {"train", "opensearch-setup", "splunk-setup"}
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


needs_compose = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose is not installed (Debian package docker-compose; make test installs it)",
)
AIRGAP_SCRIPT = ROOT / "deploy" / "docker" / "build-airgap-images.sh"
SECRETS = {
    "OCSF_ANOMALY_API_TOKEN": "api-token-from-env-file",
    "OCSF_ANOMALY_ADMIN_TOKEN": "admin-token-from-env-file",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password-from-env-file",
}


def compose_config(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``docker-compose config`` as compose resolves it: variables from .env and ``env``, nothing else
    of this process's environment that the file reads."""
    clean = {
        k: v for k, v in os.environ.items() if not k.endswith(("_IMAGE", "_TOKEN", "_PASSWORD", "_PORT"))
    }
    result = subprocess.run(
        ["docker-compose", "-f", str(cwd / "docker-compose.yml"), *args, "config"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


def test_no_file_tells_to_replace_dot_env_with_an_image_env_file() -> None:
    """`--env-file FILE` makes compose read FILE *instead of* .env: its tokens and passwords are gone."""
    for path in (ROOT / "README.md", COMPOSE, ROOT / "Makefile", AIRGAP_SCRIPT, ROOT / "deploy" / "e2e.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"--env-file[ =]+\S*airgap", text), f"{path.name} passes an image env file"
        assert "airgap.env" not in text.replace("rm -f deploy/docker/airgap.env", ""), path.name


@needs_compose
def test_the_airgapped_images_keep_the_tokens_and_passwords_of_dot_env(tmp_path: Path) -> None:
    script = AIRGAP_SCRIPT.read_text(encoding="utf-8")
    assert "--env-only" in script, (
        "the air-gapped build cannot write its variables alone"
    )  # (never build here)
    (tmp_path / "deploy" / "docker").mkdir(parents=True)
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    for name in ("build-airgap-images.sh", "mlflow.Dockerfile"):
        shutil.copy(ROOT / "deploy" / "docker" / name, tmp_path / "deploy" / "docker" / name)
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()) + "REDIS_IMAGE=mine/redis:1\n")
    for _ in range(2):  # a second run replaces its block, never adds one
        result = subprocess.run(
            ["bash", str(tmp_path / "deploy" / "docker" / "build-airgap-images.sh"), "--env-only"],
            capture_output=True,
            text=True,
            env={**os.environ, "AIRGAP_PREFIX": "site"},
        )
        assert result.returncode == 0, result.stderr
    text = env_file.read_text()
    assert text.count("# >>> make images-airgap") == text.count("# <<< make images-airgap") == 1
    assert all(f"{k}={v}\n" in text for k, v in SECRETS.items())

    services = compose_config(cwd=tmp_path)["services"]  # a plain `up -d`, as the README says
    assert services["scorer"]["environment"]["OCSF_ANOMALY_API_TOKEN"] == SECRETS["OCSF_ANOMALY_API_TOKEN"]
    assert (
        services["scorer"]["environment"]["OCSF_ANOMALY_ADMIN_TOKEN"] == SECRETS["OCSF_ANOMALY_ADMIN_TOKEN"]
    )
    assert (
        services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    )
    assert services["redis"]["image"] == "site/redis:debian"  # the block, last in .env, wins
    assert services["prometheus"]["image"] == "site/prometheus:debian"
    assert services["scorer"]["build"]["args"]["BASE_IMAGE"] == "site/python:3.11-bookworm"
    assert not (tmp_path / "deploy" / "docker" / "airgap.env").exists()


def test_make_wheelhouse_pins_the_image_extras_and_keeps_one_torch_wheel(tmp_path: Path) -> None:
    """The recipe itself, with pip replaced by `echo pip` (nothing downloaded or installed)."""
    pin = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)  # type: ignore[union-attr]
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    current = wheelhouse / f"torch-{pin}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    stale = wheelhouse / "torch-2.0.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    current.touch()
    stale.touch()
    stamp = tmp_path / "installed"
    stamp.touch()
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "wheelhouse",
            f"WHEELHOUSE={wheelhouse}",
            "PIP=echo pip",
            f"STAMP={stamp}",  # the venv as it is: nothing installed
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in wheelhouse.glob("torch-*.whl")) == [current.name]  # the stale one removed
    lines = result.stdout.splitlines()
    extras = next(
        i for i, line in enumerate(lines) if re.match(r"^pip install .*-e \.\[opensearch,kafka\]$", line)
    )
    freeze = next(i for i, line in enumerate(lines) if "pip freeze" in line)
    assert extras < freeze  # what the Dockerfile installs ("$1[opensearch,kafka]") is frozen too
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '"$1[opensearch,kafka]"' in dockerfile


@pytest.mark.parametrize("on_disk", [True, False], ids=["wheel on disk", "fresh machine"])
def test_torch_s_cpu_build_comes_from_the_disk_or_pytorch_s_cpu_index(tmp_path: Path, on_disk: bool) -> None:
    """PyPI's torch of the pin is the CUDA build, several GB: on a fresh Debian machine with PyPI alone,
    `make run` pulled it (the last notes' list). The recipe takes a wheel pip's find-links hold
    without asking any index, and else asks PyTorch's CPU index beside PyPI. pip replaced by a
    script that records its arguments and, as on a machine with no wheel on disk, fails
    `--no-index` (nothing downloaded or installed)."""
    pin = re.search(r'"(torch==[^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)  # type: ignore[union-attr]
    calls = tmp_path / "calls"
    pip = tmp_path / "pip"
    refuse = "" if on_disk else 'case "$*" in *--no-index*) exit 1;; esac\n'
    pip.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n{refuse}')
    pip.chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    stamp = tmp_path / "installed"
    result = subprocess.run(
        ["make", "--no-print-directory", str(stamp), f"VENV={venv}", f"PIP={pip}", f"STAMP={stamp}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    asked = calls.read_text().splitlines()
    from_index = [f"install -q --extra-index-url https://download.pytorch.org/whl/cpu {pin}"]
    assert asked == [
        f"install -q --no-index --no-deps {pin}",
        *([] if on_disk else from_index),
        "install -q -e .",
    ]
    said = f"no {pin} wheel on pip's find-links: asking https://download.pytorch.org/whl/cpu and PyPI"
    assert (said in result.stdout.splitlines()) == (not on_disk), result.stdout  # said, not only echoed
    assert stamp.exists()


@needs_compose
def test_the_opensearch_connector_gets_the_scorer_token_off_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From the environment, not the command line, which the host's ps shows every user."""
    from scorer.cli import build_parser
    from scorer.cli.opensearch import _options

    for token in ("s3cret", ""):
        env = {"OCSF_ANOMALY_API_TOKEN": token} if token else {}
        setup = compose_config("--profile", "opensearch", env=env)["services"]["opensearch-setup"]
        command = setup["command"]
        assert "--scorer-token" not in command
        assert setup["environment"]["OCSF_ANOMALY_API_TOKEN"] == token
        args = build_parser().parse_args(command)
        monkeypatch.setenv("OCSF_ANOMALY_API_TOKEN", token)
        assert _options(args, token_from_environment=True).scorer_token == (token or None)
        # the profile promises its Dashboards with the integration's saved objects: imported once it answers
        assert args.dashboards_url == "http://opensearch-dashboards:5601"
        assert setup["depends_on"]["opensearch-dashboards"] == {"condition": "service_healthy"}


@needs_compose
def test_the_stream_consumer_alerts_as_the_service_does() -> None:
    """The consumer had the alerts' URL and not their level: a site that set OCSF_ANOMALY_ALERTS_P_VALUE
    in .env had the service and the consumer alert at different levels."""
    services = compose_config("--profile", "kafka", env={"OCSF_ANOMALY_ALERTS_P_VALUE": "0.0001"})["services"]
    alerting = {
        k: v for k, v in services["scorer"]["environment"].items() if k.startswith("OCSF_ANOMALY_ALERTS_")
    }
    assert alerting["OCSF_ANOMALY_ALERTS_P_VALUE"] == "0.0001"
    assert {k: services["stream"]["environment"].get(k) for k in alerting} == alerting


@needs_compose
def test_the_splunk_app_is_pointed_at_the_scorer_with_its_token() -> None:
    env = {"OCSF_ANOMALY_API_TOKEN": "s3cret", "SPLUNK_PASSWORD": "changeme1"}
    services = compose_config("--profile", "splunk", env=env)["services"]
    setup = services["splunk-setup"]
    assert setup["restart"] == "no"
    assert setup["environment"]["SCORER_URL"] == "http://scorer:8080"
    assert setup["environment"]["SPLUNKD_URL"] == "https://splunk:8089"
    assert setup["environment"]["OCSF_ANOMALY_API_TOKEN"] == "s3cret"
    assert setup["environment"]["SPLUNK_PASSWORD"] == "changeme1"
    script = setup["entrypoint"][-1]
    assert f"{ROOT}/deploy/splunk/configure.py:{script}:ro" in setup["volumes"]
    assert setup["depends_on"]["scorer"] == {"condition": "service_healthy"}
    assert services["splunk"]["depends_on"]["scorer"] == {"condition": "service_healthy"}


@needs_compose
def test_the_splunk_profile_installs_the_package_make_splunk_app_writes() -> None:
    """`make splunk-app` names the package by app.conf's version; the profile looked for it by the
    scorer image's OCSF_ANOMALY_VERSION, so a new image's version broke it (the docs review)."""
    conf = (ROOT / "integrations" / "splunk" / "ocsf_anomaly" / "default" / "app.conf").read_text()
    version = re.search(r"^\[id\][^\[]*?^version *= *(\S+)", conf, re.M | re.S)
    assert version is not None
    env = {"SPLUNK_PASSWORD": "changeme1", "OCSF_ANOMALY_VERSION": "9.9.9"}
    splunk = compose_config("--profile", "splunk", env=env)["services"]["splunk"]
    assert splunk["environment"]["SPLUNK_APPS_URL"] == f"/tmp/apps/ocsf_anomaly-{version[1]}.tgz"
    again = compose_config("--profile", "splunk", env={**env, "SPLUNK_APP_VERSION": "1.2.3"})["services"]
    assert again["splunk"]["environment"]["SPLUNK_APPS_URL"] == "/tmp/apps/ocsf_anomaly-1.2.3.tgz"


@pytest.mark.parametrize("token", ["s3cret", ""])
def test_the_splunk_setup_writes_the_url_and_stores_the_token(token: str) -> None:
    """deploy/splunk/configure.py against a stand-in splunkd that records the calls."""
    calls: list[tuple[str, str, dict[str, list[str]], str]] = []
    answers = {"passwords": 409}  # a token stored by an earlier run

    class Splunkd(http.server.BaseHTTPRequestHandler):
        def answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            calls.append(("GET", self.path, {}, self.headers["Authorization"]))
            self.answer(200 if self.path == "/services/apps/local/ocsf_anomaly" else 404)

        def do_POST(self) -> None:
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            calls.append(("POST", self.path, form, self.headers["Authorization"]))
            self.answer(answers.pop("passwords") if self.path.endswith("/storage/passwords") else 200)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Splunkd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "splunk" / "configure.py")],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "SPLUNKD_URL": f"http://127.0.0.1:{server.server_address[1]}",
                "SPLUNK_PASSWORD": "changeme1",
                "SCORER_URL": "http://scorer:8080",
                "OCSF_ANOMALY_API_TOKEN": token,
                "SPLUNK_SETUP_WAIT_SECONDS": "20",
            },
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert {auth for *_, auth in calls} == {"Basic " + base64.b64encode(b"admin:changeme1").decode()}
    conf = [
        (path, form) for method, path, form, _ in calls if method == "POST" and "conf-ocsf_anomaly" in path
    ]
    assert conf == [
        (
            "/servicesNS/nobody/ocsf_anomaly/configs/conf-ocsf_anomaly/scorer",
            {"url": ["http://scorer:8080"], "output_mode": ["json"]},
        )
    ]
    stored = [(path, form.get("password")) for method, path, form, _ in calls if "storage/passwords" in path]
    if token:
        assert stored == [
            ("/servicesNS/nobody/ocsf_anomaly/storage/passwords", ["s3cret"]),
            ("/servicesNS/nobody/ocsf_anomaly/storage/passwords/ocsf_anomaly%3Ascorer_token%3A", ["s3cret"]),
        ]
    else:
        assert stored == []


@needs_compose
def test_kafka_and_vector_keep_their_state_on_named_volumes() -> None:
    config = compose_config("--profile", "kafka", "--profile", "vector")
    named = set(config["volumes"])

    def on_named_volume(service: str, path: str) -> bool:
        volumes = config["services"][service]["volumes"]
        return any(v.split(":")[0] in named and v.split(":")[1] == path for v in volumes)

    kafka = config["services"]["kafka"]
    assert on_named_volume("kafka", kafka["environment"]["KAFKA_LOG_DIRS"])  # log.dirs: the topics
    vector_yaml = (ROOT / "integrations" / "vector_dev" / "vector.yaml").read_text()
    data_dir = re.search(r'^data_dir: "\$\{VECTOR_DATA_DIR:-([^}]+)\}"', vector_yaml, re.MULTILINE)
    assert data_dir, "vector.yaml's data_dir is not ${VECTOR_DATA_DIR:-...}"
    assert "VECTOR_DATA_DIR" not in config["services"]["vector"]["environment"]
    assert on_named_volume("vector", data_dir.group(1))  # checkpoints and the disk buffer


def test_every_long_running_service_of_the_default_set_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if service.get("profiles") or service.get("restart") == "no":
            continue
        check = service.get("healthcheck", {})
        assert (check and not check.get("disable")) or service.get("build"), f"{name} has no health check"


@needs_compose
@pytest.mark.parametrize("password", ["", "Cache-pass_42"])
def test_the_cache_s_redis_asks_the_scorer_for_redis_password(password: str) -> None:
    """Every container of the stack reaches the cache's Redis, and whoever writes there can put one
    event's embedding in another's place: `REDIS_PASSWORD` gives it one (the deployment review). The
    compose file's Redis command, its health check and the scorer's URL, as compose resolves them,
    run here against Debian's redis-server (no Docker engine here; the port and bind added): the
    health check passes with what the Redis container is given and fails without it (redis-cli exits
    0 on NOAUTH, so it reads the answer), and the scorer's URL connects."""
    import redis

    services = compose_config(env={"REDIS_PASSWORD": password})["services"]  # over an .env's
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = services["redis"]["command"]
    assert command[0] == "redis-server"
    server = subprocess.Popen(
        [*command, "--port", str(port), "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL
    )
    try:
        url = services["scorer"]["environment"]["OCSF_ANOMALY_REDIS_URL"]
        assert url.startswith("redis://")
        assert "@redis:6379/" in url
        client = redis.Redis.from_url(url.replace("@redis:6379", f"@127.0.0.1:{port}"))
        eventually(lambda: _answers(client), "the compose file's redis-server to answer")
        client.set("k", b"v")
        assert client.get("k") == b"v"

        kind, check = services["redis"]["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        # `config` writes a $ the engine passes on as $$; the port is the one started here
        check = check.replace("$$", "$").replace("redis-cli", f"redis-cli -p {port}", 1)
        without = {k: v for k, v in os.environ.items() if k not in ("REDISCLI_AUTH", "REDIS_PASSWORD")}

        def health(**env: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["sh", "-c", check], env={**without, **env}, capture_output=True, text=True)

        given = services["redis"]["environment"]  # what the container has
        healthy = health(**given)
        assert healthy.returncode == 0
        assert "AUTH" not in healthy.stderr  # no empty password sent, refused with a warning
        # an operator's `docker compose exec redis redis-cli`: nor there (the review of the first version)
        operator = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], env={**without, **given}, capture_output=True, text=True
        )
        assert "AUTH" not in operator.stderr, operator.stderr
        wrong = health(REDIS_PASSWORD="not-it")
        assert (wrong.returncode == 0) == (not password)  # no password asked: any AUTH is let through
        if password:
            assert health().returncode != 0
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=port).ping()
    finally:
        server.terminate()
        server.wait(30)


def _answers(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
