"""integrations/vector_dev/vector.yaml: the file is whole (every input names a component, every
${VAR} has a default, the scorer's and Vector's addresses agree), and its VRL runs as Vector runs
it: compiled and executed by Vector's own VRL (vrl-python), on real events the service enriched,
and through each of the file's own ``tests:`` blocks, replayed here over its remap and route
transforms as ``vector test`` would (no Vector binary can run here)."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import vrl_python  # Vector's VRL compiler and runtime (the dev extra)
import yaml
from dotted import nested
from live_scorer import serve_app
from vector_downstream import Downstream

from scorer.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = ROOT / "integrations" / "vector_dev" / "vector.yaml"
COMPOSE_PATH = ROOT / "docker-compose.yml"
HOP_PATH = "/v1/integrations/vector"
Event = dict[str, Any]
VARIABLE = re.compile(r"\$(\$|\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")
RUNTIME = vrl_python.VRLRuntime()


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG_PATH.read_text())
    return loaded


def _outputs(name: str, component: dict[str, Any]) -> set[str]:
    """The output ids a component offers its consumers, as Vector names them."""
    if component.get("type") == "route":
        return {f"{name}.{route}" for route in component["route"]} | {f"{name}._unmatched"}
    if component.get("type") == "remap" and component.get("reroute_dropped"):
        return {name, f"{name}.dropped"}
    return {name}


def _producers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**config["sources"], **config["transforms"]}


def test_every_input_names_an_output_and_every_output_is_consumed(config: dict[str, Any]) -> None:
    offered = {o for name, c in _producers(config).items() for o in _outputs(name, c)}
    consumers = {**config["transforms"], **config["sinks"]}
    used = {i for component in consumers.values() for i in component["inputs"]}
    assert used <= offered, f"inputs that name no component's output: {used - offered}"
    assert offered - used == {"enriched"} - used, f"outputs that go nowhere: {offered - used}"


def test_every_variable_has_a_default_and_vrl_writes_no_bare_dollar(config: dict[str, Any]) -> None:
    text = CONFIG_PATH.read_text()
    for match in VARIABLE.finditer(text):
        token = match.group(1)
        assert token == "$" or (token.startswith("{") and ":-" in token), (
            f"{match.group(0)} has no default: write ${{VAR:-default}} (or $$ for a literal $)"
        )
    for name, transform in config["transforms"].items():
        if "source" in transform:
            assert "$" not in transform["source"].replace("$$", ""), name


def test_the_scorer_and_vector_agree_on_the_addresses(config: dict[str, Any], bundle_dir: Path) -> None:
    from scorer.service.app import create_app

    sink = config["sinks"]["scorer"]
    assert sink["uri"] == "${OCSF_ANOMALY_URL:-http://127.0.0.1:8080}" + HOP_PATH
    assert sink["healthcheck"]["uri"] == sink["uri"]  # the HEAD the scorer answers without a token
    app = create_app(Settings(model_dir=bundle_dir, threads=1))
    methods = {r.method for r in app.router.routes() if r.resource and r.resource.canonical == HOP_PATH}
    assert {"POST", "HEAD"} <= methods

    source = config["sources"]["enriched"]
    default_address = re.fullmatch(r"\$\{VECTOR_ENRICHED_ADDRESS:-([^}]+)\}", source["address"])
    assert default_address, source["address"]
    local = f"http://{default_address.group(1)}{source['path']}"
    assert Settings(vector_downstream_url=local).vector_downstream_url == local  # the README's setting

    services = yaml.safe_load(COMPOSE_PATH.read_text())["services"]
    downstream = urlsplit(services["scorer"]["environment"]["OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL"])
    vector_env = services["vector"]["environment"]
    assert downstream.path == source["path"]
    assert downstream.hostname == "vector"
    assert vector_env["VECTOR_ENRICHED_ADDRESS"].rsplit(":", 1)[1] == str(downstream.port)
    assert vector_env["OCSF_ANOMALY_URL"] == "http://scorer:8080"
    mounts = services["vector"]["volumes"]
    assert "./integrations/vector_dev/vector.yaml:/etc/vector/vector.yaml:ro" in mounts
    events_dir = re.search(r"\$\{OCSF_EVENTS_DIR:-([^}]+)\}", config["sources"]["ocsf_events"]["include"][0])
    assert events_dir
    assert any(m.split(":")[1] == events_dir.group(1) for m in mounts)


def test_acknowledgements_are_on_from_the_file_source_to_every_sink(config: dict[str, Any]) -> None:
    for name, sink in config["sinks"].items():
        assert sink.get("acknowledgements", {}).get("enabled") is True, name
    assert config["sources"]["enriched"]["acknowledgements"]["enabled"] is True
    assert config["sources"]["enriched"]["decoding"]["codec"] == "json"
    assert config["sinks"]["scorer"]["encoding"]["codec"] == "json"


# --- the VRL, run as Vector runs it ------------------------------------------------------------------


def _run(config: dict[str, Any], name: str, event: Event) -> dict[str, list[Event]]:
    """Every transform output the event reaches from transform ``name`` on, as Vector's topology
    carries it (remap, with its ``dropped`` output; route, with ``_unmatched``): output id -> events."""
    transform = config["transforms"][name]
    reached: dict[str, list[Event]] = {}
    if transform["type"] == "remap":
        try:
            outputs = {name: RUNTIME.execute(transform["source"], event).processed_event}
        except RuntimeError:
            if not (transform.get("drop_on_error") and transform.get("reroute_dropped")):
                return reached  # Vector drops it (or keeps it unchanged without drop_on_error)
            outputs = {f"{name}.dropped": event}
    elif transform["type"] == "route":
        matched = {
            f"{name}.{route}": event
            for route, condition in transform["route"].items()
            if RUNTIME.execute(condition, event).runtime_result is True
        }
        outputs = matched or {f"{name}._unmatched": event}
    else:
        raise AssertionError(f"no replay for transform type {transform['type']}")
    for output, produced in outputs.items():
        reached.setdefault(output, []).append(produced)
        for consumer, downstream in config["transforms"].items():
            if output in downstream["inputs"]:
                for out, events in _run(config, consumer, produced).items():
                    reached.setdefault(out, []).extend(events)
    return reached


def _unit_tests() -> list[Any]:
    tests = yaml.safe_load(CONFIG_PATH.read_text()).get("tests", [])
    return [pytest.param(test, id=test["name"]) for test in tests]


def test_the_file_has_unit_tests_for_the_remaps_and_the_route(config: dict[str, Any]) -> None:
    inserted = {i["insert_at"] for test in config["tests"] for i in test["inputs"]}
    extracted = {o["extract_from"] for test in config["tests"] for o in test.get("outputs", [])}
    route = config["transforms"]["route_anomalies"]
    assert {"parse_ocsf", "severity"} <= inserted
    assert _outputs("route_anomalies", route) <= extracted


@pytest.mark.parametrize("test", _unit_tests())
def test_each_unit_test_block_passes(config: dict[str, Any], test: dict[str, Any]) -> None:
    reached: dict[str, list[Event]] = {}
    for given in test["inputs"]:
        assert given["type"] == "log"
        for output, events in _run(config, given["insert_at"], nested(given["log_fields"])).items():
            reached.setdefault(output, []).extend(events)
    for expected in test.get("outputs", []):
        events = reached.get(expected["extract_from"])
        assert events, f"nothing came out of {expected['extract_from']}; reached {sorted(reached)}"
        for event in events:
            for condition in expected["conditions"]:
                assert condition["type"] == "vrl"
                # an assert!/assert_eq! that fails raises; a plain boolean condition must be true
                # (Vector's own `vector test` fails a condition that returns false)
                assert RUNTIME.execute(condition["source"], event).runtime_result is True, condition
    for silent in test.get("no_outputs_from", []):
        assert silent not in reached, f"{silent} got {reached[silent]}"


def test_a_unit_test_condition_that_does_not_hold_fails(config: dict[str, Any]) -> None:
    """The replay can fail: a wrong expectation raises."""
    (event,) = _run(config, "severity", {"anomaly": {"p_value": 0.5, "is_anomaly": False}})[
        "route_anomalies._unmatched"
    ]
    with pytest.raises(RuntimeError, match="assertion failed"):
        RUNTIME.execute('assert_eq!(.anomaly.severity, "critical")', event)


@pytest.fixture(scope="module")
def enriched(bundle_dir: Path) -> Iterator[list[Any]]:
    """Real demo events (normal and anomalous) and a line that is not an object, as the service's
    Vector hop forwards them to the ``http_server`` source."""
    from scorer.demo import generate_events

    events, _ = generate_events(300, seed=7, anomaly_rate=0.2)
    with Downstream() as receiver:
        settings = Settings(model_dir=bundle_dir, threads=1, vector_downstream_url=receiver.url)
        with serve_app(settings) as base_url:
            address = urlsplit(base_url)
            connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
            payload = json.dumps([*events, "a line that is not an object"])
            connection.request("POST", HOP_PATH, body=payload, headers={"Content-Type": "application/json"})
            assert connection.getresponse().status == 200
            connection.close()
        yield receiver.events


def test_severity_and_route_on_events_the_service_enriched(
    config: dict[str, Any], enriched: list[Any]
) -> None:
    ranks = {"unscored": 0, "informational": 1, "low": 2, "high": 4, "critical": 5}
    seen: dict[str, int] = {}
    for event in enriched:
        reached = _run(config, "severity", event)
        ((output, (routed,)),) = ((k, v) for k, v in reached.items() if k.startswith("route_anomalies"))
        (after_severity,) = reached["severity"]
        anomaly = routed["anomaly"]
        seen[anomaly["severity"]] = seen.get(anomaly["severity"], 0) + 1
        assert anomaly["severity_id"] == ranks[anomaly["severity"]]
        assert {k: v for k, v in routed.items() if k != "anomaly"} == {
            k: v for k, v in event.items() if k != "anomaly"
        }  # every other field as it came, types included
        assert after_severity == routed
        if "error" in event["anomaly"]:
            assert output == "route_anomalies.unscored"
        elif event["anomaly"]["is_anomaly"]:
            assert output == "route_anomalies.anomaly"
            assert anomaly["severity"] in {"critical", "high"}
            assert (anomaly["severity"] == "critical") == (event["anomaly"]["p_value"] <= 0.001)
        else:
            assert output == "route_anomalies._unmatched"
            assert anomaly["severity"] in {"low", "informational"}
    assert seen.get("unscored") == 1
    assert seen.get("critical", 0) + seen.get("high", 0) > 0
    assert seen.get("informational", 0) > 0


def test_a_file_line_that_is_not_a_json_object_goes_to_the_unscored_sink(config: dict[str, Any]) -> None:
    for line in ["not json", "[1, 2]", '"text"', "{truncated"]:
        reached = _run(config, "parse_ocsf", {"message": line})
        assert list(reached) == ["parse_ocsf.dropped"]
        assert "parse_ocsf.dropped" in config["sinks"]["unscored"]["inputs"]
    event = {"class_uid": 3002, "time": 1733000000000, "user": {"name": "a"}, "ratio": 1.5}
    (parsed,) = _run(config, "parse_ocsf", {"message": json.dumps(event)})["parse_ocsf"]
    assert parsed == event


def test_the_readme_http_request_alternative_compiles(config: dict[str, Any]) -> None:
    readme = (CONFIG_PATH.parent / "README.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    (transform,) = yaml.safe_load(block)["transforms"].values()
    assert transform["inputs"] == ["parse_ocsf"]
    assert "parse_ocsf" in config["transforms"]
    RUNTIME.compile(transform["source"])  # raises on an unknown function or an unhandled error
