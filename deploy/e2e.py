"""`make e2e`: bring the docker-compose stack up on this machine and prove that it works.

Starts dockerd if none runs (and stops it at the end if it started it, unless --keep); builds the
images (the official bases when they can be pulled, else the air-gapped path, `make images-airgap`,
which writes its image variables into .env's marked block); brings up
scorer, redis, mlflow, prometheus, alertmanager and the train job under a project name of its own,
on free loopback ports; waits for the scorer; then checks, through the published ports, that:

1. OCSF events from ../shared/data the model never trained on are scored by the container;
2. Redis in the stack holds embedding cache entries;
3. MLflow in the stack holds the registered demo model with its champion alias;
4. Prometheus in the stack scrapes the scorer (its query API returns scorer metrics);
5. an anomaly alert reaches Alertmanager's API;
6. the scorer container, restarted, serves the same registered model again;
7. `down -v` leaves no container, volume or network of the project behind.

Each step is printed; the first failure stops it with what failed (and the service's last log
lines), exit status 1. Grafana and the profiles' services are not started: their images cannot be
pulled here and have no Debian package (their configuration is checked by `make test`).

    .venv/bin/python deploy/e2e.py [--keep] [--airgap | --official]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "ocsf-anomaly-e2e"
SERVICES = ["scorer", "redis", "mlflow", "prometheus", "alertmanager", "train"]
# what `make images-airgap` writes into .env; emptied (so the official defaults apply) for --official
IMAGE_VARIABLES = ("PYTHON_IMAGE", "REDIS_IMAGE", "PROMETHEUS_IMAGE", "ALERTMANAGER_IMAGE", "MLFLOW_IMAGE")
OFFICIAL_PROBE = "python:3.11-slim-bookworm"
MODEL = "ocsf-anomaly-demo"
ALERT_P_VALUE = "0.01"  # the stack's alert level here: the demo model's calibration reaches it
STARTED = time.monotonic()


class Failed(Exception):
    """A check failed: what, and which service's log to show."""

    def __init__(self, what: str, service: str | None = None) -> None:
        super().__init__(what)
        self.service = service


def step(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.0f} s] {text}", flush=True)


def run(*command: str, check: bool = True, capture: bool = False, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
    )
    if check and result.returncode != 0:
        raise Failed(
            f"`{' '.join(command)}` exited {result.returncode}" + (f":\n{result.stdout}" if capture else "")
        )
    return result.stdout or ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(url: str, body: Any = None, timeout: float = 30) -> Any:
    """GET (or POST ``body`` as JSON) ``url``; the JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def wait_for(check: Callable[[], Any], what: str, timeout: float, service: str | None = None) -> Any:
    """``check()``'s first truthy answer (errors count as not yet), or Failed after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            answer = check()
            if answer:
                return answer
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(2)
    raise Failed(
        f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else ""),
        service,
    )


class Dockerd:
    """The Docker engine: the one running, or one started here (and stopped by ``stop``)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def ensure(self) -> None:
        if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            step("Docker engine: already running")
            return
        if shutil.which("dockerd") is None:
            raise Failed("no Docker engine: apt-get install -y docker.io (it provides dockerd)")
        step("Docker engine: starting dockerd (log: /tmp/ocsf-anomaly-e2e-dockerd.log)")
        log = open("/tmp/ocsf-anomaly-e2e-dockerd.log", "ab")  # noqa: SIM115 (kept open for the daemon)
        self.process = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(
            lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, "dockerd", 60
        )

    def stop(self, keep: bool = False) -> None:
        if self.process is None:
            return
        if keep:  # the kept stack runs on it
            step(
                f"Docker engine: the dockerd started here (pid {self.process.pid}) keeps running for the kept"
                f" stack; stop it with: docker-compose -p {PROJECT} down -v && kill {self.process.pid}"
            )
            return
        step("Docker engine: stopping the dockerd started here")
        self.process.terminate()
        self.process.wait(60)


class Stack:
    def __init__(self, airgap: bool, ports: dict[str, int]) -> None:
        self.ports = ports
        # the environment wins over .env: the checks call the scorer without a token, and the official
        # images are the defaults even when an earlier `make images-airgap` left its block in .env
        self.env = {
            "SCORER_PORT": str(ports["scorer"]),
            "MLFLOW_PORT": str(ports["mlflow"]),
            "PROMETHEUS_PORT": str(ports["prometheus"]),
            "ALERTMANAGER_PORT": str(ports["alertmanager"]),
            "OCSF_ANOMALY_ALERTS_P_VALUE": ALERT_P_VALUE,
            "OCSF_ANOMALY_API_TOKEN": "",
            "OCSF_ANOMALY_ADMIN_TOKEN": "",
            **({} if airgap else dict.fromkeys(IMAGE_VARIABLES, "")),
        }

    def compose(self, *args: str, capture: bool = False, check: bool = True) -> str:
        command = ["docker-compose", "-p", PROJECT, "-f", "docker-compose.yml"]
        return run(*command, *args, capture=capture, check=check, env=self.env)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", service, capture=True, check=False)


def build(mode: str) -> bool:
    """Build the images; whether they are the air-gapped ones (their variables in .env)."""
    if mode == "auto":
        step(f"images: can {OFFICIAL_PROBE} be pulled?")
        pulled = subprocess.run(["docker", "pull", "-q", OFFICIAL_PROBE], capture_output=True).returncode == 0
        mode = "official" if pulled else "airgap"
        step(
            f"images: {'yes: official bases' if pulled else 'no: the air-gapped build (make images-airgap)'}"
        )
    if mode == "airgap":
        run("make", "images-airgap")
        return True
    run("make", "image")
    return False


def unseen_events() -> list[dict[str, Any]]:
    """Real vendor OCSF events (../shared/data/ocsf_events): the demo model trained on synthetic ones."""
    path = ROOT.parent / "shared" / "data" / "ocsf_events" / "events.jsonl"
    if not path.exists():
        raise Failed(f"{path} is missing: the e2e check scores real OCSF events from ../shared/data")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:200] if line.strip()]


def demo_anomalies() -> list[dict[str, Any]]:
    """Injected anomalies of the demo company (scorer.demo, from the venv `make e2e` runs in), the
    events most likely to alert."""
    from scorer.demo import generate_events

    events, labels = generate_events(2_000, seed=99, anomaly_rate=0.05)
    return [event for event, label in zip(events, labels, strict=True) if label != "normal"]


def checks(stack: Stack) -> None:
    scorer = stack.url("scorer")
    step("waiting for the scorer (the train job trains and registers the demo model first: minutes)")
    wait_for(
        lambda: http(scorer + "/readyz").get("status") == "ready", "the scorer's /readyz", 1500, "scorer"
    )
    version = http(scorer + "/v1/models")["champion"]["version"]
    step(f"scorer ready, serving {MODEL} version {version}")

    events = unseen_events()
    results = http(scorer + "/v1/score", events, timeout=120)["results"]
    scored = [r for r in results if "p_value" in r]
    if len(scored) != len(events):
        raise Failed(f"1. {len(events) - len(scored)} of {len(events)} vendor events not scored", "scorer")
    step(f"1. ok: {len(scored)} real OCSF events from ../shared/data scored by the container")

    def cached() -> int:
        # the password, if the stack has one, as the health check gives it
        count = '[ -z "$REDIS_PASSWORD" ] || export REDISCLI_AUTH="$REDIS_PASSWORD"; exec redis-cli DBSIZE'
        return int(stack.compose("exec", "-T", "redis", "sh", "-c", count, capture=True).split()[-1])

    entries = wait_for(cached, "embedding cache entries in Redis", 30, "redis")
    step(f"2. ok: Redis in the stack holds {entries} embedding cache entries")

    query = urllib.parse.urlencode({"name": MODEL, "alias": "champion"})
    alias = http(f"{stack.url('mlflow')}/api/2.0/mlflow/registered-models/alias?{query}")
    if str(alias["model_version"]["version"]) != str(version):
        raise Failed(
            f"3. MLflow's champion is version {alias['model_version']['version']}, the scorer serves {version}",
            "mlflow",
        )
    step(f"3. ok: MLflow in the stack holds {MODEL} version {version} as champion")

    def scraped() -> list[Any]:
        answer = http(stack.url("prometheus") + "/api/v1/query?query=ocsf_anomaly_events_total")
        return list(answer["data"]["result"])

    series = wait_for(scraped, "Prometheus to scrape the scorer", 120, "prometheus")
    step(
        f"4. ok: Prometheus in the stack scrapes the scorer ({len(series)} series of ocsf_anomaly_events_total)"
    )

    anomalies = demo_anomalies()
    answers = http(scorer + "/v1/score", anomalies, timeout=120)["results"]
    rare = sum(a["p_value"] <= float(ALERT_P_VALUE) for a in answers)
    if not rare:
        raise Failed(
            f"5. none of {len(anomalies)} injected anomalies scored at or below p = {ALERT_P_VALUE}", "scorer"
        )

    def alerted() -> list[Any]:
        alerts = http(stack.url("alertmanager") + "/api/v2/alerts")
        return [a for a in alerts if a["labels"].get("alertname") == "OCSFAnomaly"]

    alerts = wait_for(alerted, "an OCSFAnomaly alert in Alertmanager", 60, "alertmanager")
    step(
        f"5. ok: {len(alerts)} anomaly alerts in Alertmanager ({rare} events at or below p = {ALERT_P_VALUE})"
    )

    stack.compose("restart", "scorer")
    wait_for(lambda: http(scorer + "/readyz").get("status") == "ready", "the restarted scorer", 300, "scorer")
    again = http(scorer + "/v1/models")["champion"]["version"]
    if again != version or len(http(scorer + "/v1/score", events[:10])["results"]) != 10:
        raise Failed(f"6. after a restart the scorer serves version {again}, not {version}", "scorer")
    step(f"6. ok: restarted, the scorer serves version {again} again")


def leftovers() -> list[str]:
    label = f"label=com.docker.compose.project={PROJECT}"
    found = []
    for kind, command in (
        ("container", ["docker", "ps", "-aq", "--filter", label]),
        ("volume", ["docker", "volume", "ls", "-q", "--filter", label]),
        ("network", ["docker", "network", "ls", "-q", "--filter", label]),
    ):
        found += [f"{kind} {name}" for name in run(*command, capture=True).split()]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack up (no down -v) to look around")
    images = parser.add_mutually_exclusive_group()
    images.add_argument(
        "--airgap", dest="mode", action="store_const", const="airgap", help="build air-gapped"
    )
    images.add_argument("--official", dest="mode", action="store_const", const="official", help="pull bases")
    parser.set_defaults(mode="auto")
    args = parser.parse_args()
    dockerd = Dockerd()
    stack: Stack | None = None
    status = 0
    try:
        dockerd.ensure()
        airgap = build(args.mode)
        names = ("scorer", "mlflow", "prometheus", "alertmanager")
        stack = Stack(airgap, {name: free_port() for name in names})
        stack.compose("down", "-v", "--remove-orphans", capture=True, check=False)  # a previous run's
        step(f"up: {', '.join(SERVICES)} (project {PROJECT}; scorer on {stack.url('scorer')})")
        stack.compose("up", "-d", "--no-build", *SERVICES)
        checks(stack)
    except urllib.error.HTTPError as error:  # a check's call answered with an error status
        status = 1
        print(f"\nFAILED: {error.url}: HTTP {error.code}: {error.read()[:500]!r}", file=sys.stderr)
    except Failed as failure:
        status = 1
        print(f"\nFAILED: {failure}", file=sys.stderr)
        if stack is not None and failure.service:
            print(
                f"--- last lines of {failure.service}'s log ---\n{stack.logs(failure.service)}",
                file=sys.stderr,
            )
    finally:
        if stack is not None and not args.keep:
            stack.compose("down", "-v", "--remove-orphans", capture=True, check=False)
            left = leftovers()
            if left:
                print(f"\nFAILED: 7. down -v left {', '.join(left)}", file=sys.stderr)
                status = 1
            elif status == 0:
                step("7. ok: down -v left no container, volume or network behind")
        elif stack is not None:
            step(f"kept: the stack stays up (project {PROJECT}; scorer on {stack.url('scorer')})")
        dockerd.stop(keep=args.keep)
    step("e2e passed" if status == 0 else "e2e failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
