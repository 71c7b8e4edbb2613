"""deploy/prometheus, deploy/alertmanager and deploy/grafana, as the stack runs them: Prometheus's
own promtool checks the config and runs the rules' unit tests (each alert fires and stays quiet
when it should), amtool checks Alertmanager's config and routes, every metric and label the rules
and the dashboard read exists on a live scorer's (and stream consumer's) /metrics, and a real
Prometheus scrapes a real scorer on loopback and evaluates the recording rules over it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from live_scorer import serve_app
from loopback import free_port
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scorer.settings import Settings
from scorer.stream.loop import StreamMetrics

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
METRIC = re.compile(r"\b(ocsf_anomaly_[a-z_]+|ocsf_anomaly:[a-z0-9_:]+)")
MATCHER = re.compile(r"\b(ocsf_anomaly_[a-z_]+)\{([^}]*)\}")
BY = re.compile(r"\bby \(([^)]*)\)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; make test installs it)")
    return path


def _run(*command: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_promtool_checks_the_config_and_the_rules() -> None:
    promtool = _tool("promtool", "prometheus")
    out = _run(promtool, "check", "config", "prometheus.yml", cwd=PROMETHEUS_DIR)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in out
    _run(promtool, "check", "rules", *map(str, RULE_FILES))


def test_the_rules_unit_tests_pass_and_cover_every_alert() -> None:
    promtool = _tool("promtool", "prometheus")
    _run(promtool, "test", "rules", "tests.yml", cwd=PROMETHEUS_DIR)
    tests = yaml.safe_load((PROMETHEUS_DIR / "tests.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])}
    fired = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    alerts = {rule["alert"] for group in _rules("alerts.yml") for rule in group["rules"]}
    assert alerts <= fired, f"alerts never shown firing: {alerts - fired}"
    assert {"OCSFAnomalyErrorRate", "OCSFAnomalyRateFarFromAlpha", "OCSFAnomalyStreamDeadLetters"} <= tested


def test_a_unit_test_that_expects_the_wrong_thing_fails(tmp_path: Path) -> None:
    """The rules' tests can fail: the same file, with one expected annotation changed."""
    promtool = _tool("promtool", "prometheus")
    text = (
        (PROMETHEUS_DIR / "tests.yml").read_text().replace("10% of scorer requests", "9% of scorer requests")
    )
    broken = PROMETHEUS_DIR / f".tests-broken-{tmp_path.name}.yml"
    broken.write_text(text)
    try:
        result = subprocess.run(
            [promtool, "test", "rules", broken.name], cwd=PROMETHEUS_DIR, capture_output=True
        )
    finally:
        broken.unlink()
    assert result.returncode != 0


def _rules(name: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((PROMETHEUS_DIR / "rules" / name).read_text())["groups"]
    return groups


def test_alertmanager_config_and_routes() -> None:
    amtool = _tool("amtool", "prometheus-alertmanager")
    _run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    cases = {
        "security-analysts": [
            "alertname=OCSFAnomaly",
            "severity=warning",
            "entity=user:alice",
            "class_uid=3002",
        ],
        "security-analysts-urgent": ["alertname=OCSFAnomaly", "severity=critical", "entity=ip:10.0.0.5"],
        "sre": ["alertname=OCSFAnomalyScorerDown", "job=ocsf-anomaly", "severity=critical"],
    }
    for receiver, labels in cases.items():
        out = _run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
        assert out.split() == [receiver], (labels, out)


@pytest.fixture(scope="module")
def live_metrics(bundle_dir: Path, held_out_events: list[dict[str, Any]]) -> str:
    """A live scorer's /metrics after it scored events and offered alerts (to a receiver that is not
    there), and the stream consumer's metrics, as one exposition text."""
    settings = Settings(
        model_dir=bundle_dir, threads=1, alerts_url="http://127.0.0.1:9/", alpha=0.5, alerts_p_value=0.5
    )
    with serve_app(settings) as base_url:
        body = json.dumps(held_out_events[:64]).encode()
        request = urllib.request.Request(
            base_url + "/v1/score", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
        with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    return text + generate_latest(StreamMetrics().registry).decode()


def _families(text: str) -> dict[str, set[str]]:
    """Every sample name in the exposition (and its family's name) -> the label names seen on it."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        names.setdefault(family.name, set())
        if family.type == "counter":
            names.setdefault(family.name + "_total", set())
        if family.type == "histogram":
            for suffix in HISTOGRAM_SUFFIXES:
                names.setdefault(family.name + suffix, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
            names[family.name].update(sample.labels)
    return names


def _declared_labels() -> dict[str, set[str]]:
    """The label names each of the service's metrics is declared with."""
    from scorer.service.metrics import Metrics

    return {
        name: set(collector._labelnames)
        for collector, names in Metrics().registry._collector_to_names.items()
        for name in names
        if hasattr(collector, "_labelnames")
    }


def _expressions() -> list[str]:
    exprs = [
        rule["expr"] for name in ("recording.yml", "alerts.yml") for g in _rules(name) for rule in g["rules"]
    ]
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "ocsf-anomaly.json").read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return [str(e) for e in exprs]


def test_every_metric_and_label_the_rules_and_dashboard_read_exists(live_metrics: str) -> None:
    live = _families(live_metrics)
    declared = _declared_labels()  # a metric with no sample yet shows no labels on /metrics
    recorded = {rule["record"] for g in _rules("recording.yml") for rule in g["rules"]}
    for expr in _expressions():
        for name in METRIC.findall(expr):
            assert name in live or name in recorded, f"{name} (in {expr!r}) is on no live /metrics"
        for name, matchers in MATCHER.findall(expr):
            base = name.removesuffix("_total")
            for label in re.findall(r"(\w+)\s*=~?", matchers):
                seen = live.get(name, set()) | live.get(base, set()) | declared.get(base, set())
                assert label in seen, f"{name} has no label {label} (in {expr!r})"
    grouped = {label.strip() for expr in _expressions() for by in BY.findall(expr) for label in by.split(",")}
    all_labels = set().union(*live.values())
    assert grouped - {"le"} <= all_labels, f"grouping labels on no metric: {grouped - all_labels}"


def test_the_dashboard_reads_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "ocsf-anomaly.yml").read_text())
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mounts = services["grafana"]["volumes"]
    assert any(m.endswith(":" + provider["providers"][0]["options"]["path"] + ":ro") for m in mounts)
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "ocsf-anomaly.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
    assert source["url"] == "http://prometheus:9090"


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_the_scorer_and_records(
    bundle_dir: Path, held_out_events: list[dict[str, Any]], tmp_path: Path
) -> None:
    prometheus = _tool("prometheus", "prometheus")
    with serve_app(Settings(model_dir=bundle_dir, threads=1)) as scorer_url:
        target = scorer_url.removeprefix("http://")
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
        config.pop("alerting")
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "ocsf-anomaly"]
        job["static_configs"] = [{"targets": [target]}]
        config["scrape_configs"] = [job]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("wb"),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            body = json.dumps(held_out_events[:32]).encode()
            deadline = time.monotonic() + 60
            events: list[dict[str, Any]] = []
            rate: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not (events and rate):
                request = urllib.request.Request(
                    scorer_url + "/v1/score", data=body, headers={"Content-Type": "application/json"}
                )
                urllib.request.urlopen(request, timeout=30).close()
                time.sleep(0.5)
                try:
                    events = _query(base, 'sum(ocsf_anomaly_events_total{job="ocsf-anomaly"})')
                    rate = _query(base, "sum(ocsf_anomaly:events:rate5m)")
                except OSError:
                    continue  # Prometheus still starting
            assert events, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert float(events[0]["value"][1]) >= 32
            assert rate, "the recording rule ocsf_anomaly:events:rate5m produced nothing"
            assert float(rate[0]["value"][1]) > 0
            (up,) = _query(base, 'up{job="ocsf-anomaly"}')
            assert up["value"][1] == "1"
        finally:
            process.terminate()
            process.wait(30)
