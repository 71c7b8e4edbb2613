"""OpenSearch's ingest path through the service, as a contract (integrations/opensearch).

No OpenSearch node can run here (no Debian package, no image registry to pull one from), so the
part of OpenSearch between a document and our service is played by tests/ml_commons.py, written
from ML Commons' source: the pipeline's ``input_map`` read from real documents (metadata fields
included), the connector's ``request_body`` rendered as ML Commons renders it, the request sent to
the real service on loopback (``POST /v1/integrations/opensearch``, with the connector's
Authorization header), its reply read as ML Commons reads it, and the pipeline's ``output_map``
applied: the document must come out with the verdict the service gives the same event through
``/v1/score``. Then the endpoint's own answers to what a misconfigured pipeline sends, and the
definitions' consistency with each other and with the files in integrations/opensearch.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_scorer import Scorer, serve_scorer
from ml_commons import MLCommonsError, apply_output_map, has_every_output, parameters, read_reply, render

from scorer.opensearch import definitions
from scorer.opensearch.definitions import Options
from scorer.paths import shared_data_dir

REPO = Path(__file__).resolve().parent.parent
DEFINITIONS = REPO / "integrations" / "opensearch" / "definitions"
TOKEN = "t0ken-for-the-opensearch-tests"
METADATA = {"_index": "ocsf-2026.12.03", "_id": "Xk3", "_version": -3, "_routing": None}


@pytest.fixture(scope="module")
def token_scorer(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scorer]:
    with serve_scorer(
        bundle_dir, tmp_path_factory.mktemp("os-scorer") / "serve.log", {"OCSF_ANOMALY_API_TOKEN": TOKEN}
    ) as served:
        yield served


@pytest.fixture(scope="module")
def vendor_events() -> list[dict[str, Any]]:
    path = shared_data_dir() / "ocsf_events" / "events.jsonl"
    if not path.exists():
        pytest.skip(f"real OCSF events not available at {path} (set OCSF_ANOMALY_SHARED_DATA)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _post(scorer: Scorer, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", scorer.port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _connector_call(scorer: Scorer, options: Options, params: dict[str, str]) -> tuple[int, bytes]:
    """What ML Commons sends for one document: the connector's action, its headers with the
    credential filled in, its request_body rendered."""
    connector = definitions.connector(options)
    (action,) = connector["actions"]
    token = connector["credential"]["token"]
    headers = {k: v.replace("${credential.token}", token) for k, v in action["headers"].items()}
    url = action["url"]
    assert url.startswith(scorer.url)
    assert re.fullmatch(definitions.trusted_regex(options), url), "the cluster would refuse the URL"
    return _post(scorer, url[len(scorer.url) :], render(action["request_body"], params).encode(), headers)


def _ingest(
    scorer: Scorer, options: Options, source: dict[str, Any], called: list[bool] | None = None
) -> dict[str, Any]:
    """One document through the pipeline: its remove processors (OpenSearch's RemoveProcessor: the
    field gone, a missing one ignored when ignore_missing; unconditional), then its
    ml_inference processor (not calling the model when the document holds every output field);
    the document as indexed. ``called`` is told whether the scorer was called."""
    *removes, processor = definitions.pipeline(options, "model-1")["processors"]
    document = json.loads(json.dumps(source))
    for remove in removes:
        assert "if" not in remove["remove"], "a condition this test does not evaluate"
        *parents, name = remove["remove"]["field"].split(".")
        holder = document
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and name in holder:
            del holder[name]
        else:
            assert remove["remove"]["ignore_missing"], "OpenSearch would fail the document"
    inference = processor["ml_inference"]
    (input_map,) = inference["input_map"]
    (output_map,) = inference["output_map"]
    skipped = not inference.get("override", False) and has_every_output(document, output_map)
    if called is not None:
        called.append(not skipped)
    if skipped:
        return document
    status, body = _connector_call(scorer, options, parameters(document, METADATA, input_map))
    assert status == 200, body
    apply_output_map(document, read_reply(body), output_map, override=inference.get("override", False))
    return document


def _score(scorer: Scorer, events: list[dict[str, Any]], token: str | None = None) -> list[dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, body = _post(scorer, "/v1/score", json.dumps(events).encode(), headers)
    assert status == 200, body
    results: list[dict[str, Any]] = json.loads(body)["results"]
    return results


def _check_indexed_as_scored(document: dict[str, Any], result: dict[str, Any]) -> None:
    anomaly = document["anomaly"]
    assert set(anomaly) == {name for name in definitions.OUTPUTS}
    # One document and a batch of forty take different BLAS paths: scores agree to 1e-4 (as in test_service), not bit for bit.
    assert anomaly["score"] == pytest.approx(result["score"], abs=1e-4)
    assert anomaly["p_value"] == pytest.approx(result["p_value"])
    assert anomaly["is_anomaly"] is result["is_anomaly"]
    assert anomaly["model_version"] == str(result["model"]["version"])  # text, as the mapping says
    assert anomaly["model_name"] == result["model"]["name"]
    assert anomaly["reason_fields"] == [reason["field"] for reason in result["reasons"]]
    assert len(anomaly["reasons"]) == len(result["reasons"])
    for text, reason in zip(anomaly["reasons"], result["reasons"], strict=True):
        assert text.startswith(f"{reason['field']}=")
        assert "(typical " in text


def test_real_vendor_documents_are_indexed_with_the_verdict_the_service_gives(
    vendor_events: list[dict[str, Any]], scorer: Scorer
) -> None:
    options = Options(scorer_url=scorer.url)
    first_of_each_class = {e.get("class_uid"): e for e in reversed(vendor_events)}
    events = list(first_of_each_class.values()) + vendor_events[:: max(1, len(vendor_events) // 40)]
    assert {e.get("class_uid") for e in events} >= {1007, 2004, 4001}
    for event, result in zip(events, _score(scorer, events), strict=True):
        document = _ingest(scorer, options, event)
        _check_indexed_as_scored(document, result)
        assert {k: v for k, v in document.items() if k != "anomaly"} == event  # nothing else touched


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("{{_index}}", "{\u200b{_index}}"),
        ("{{#x}}admin", "{\u200b{#x}}admin"),
        ("a{{{b", "a{\u200b{\u200b{b"),
    ],
)
def test_a_value_that_reads_as_a_template_is_indexed_as_it_reads(
    held_out_events: list[dict[str, Any]], scorer: Scorer, name: str, shown: str
) -> None:
    """ML Commons writes each reply field through ValueSource.wrap, which compiles a string holding
    "{{" as Mustache: a reason quoting the event's "{{_index}}" was indexed as the index's name, and
    "{{#x}}admin" (an unclosed section) failed the document. Template-like values are the kind an
    attacker sends and the scorer flags."""
    (event,) = [e for e in held_out_events if (e.get("actor") or {}).get("user")][:1]
    event = {**event, "actor": {**event["actor"], "user": {**event["actor"]["user"], "name": name}}}
    document = _ingest(scorer, Options(scorer_url=scorer.url), event)
    (reason,) = [r for r in document["anomaly"]["reasons"] if r.startswith("actor.user.name=")]
    assert reason.startswith(f"actor.user.name={shown} (typical ")  # a zero-width space between braces


def test_demo_documents_under_a_field_or_as_json_text_and_at_another_alpha(
    held_out_events: list[dict[str, Any]], scorer: Scorer
) -> None:
    events = held_out_events[:40]
    results = _score(scorer, events)
    as_object = Options(scorer_url=scorer.url, event_field="ocsf")
    as_text = Options(scorer_url=scorer.url, event_field="message")
    for event, result in zip(events, results, strict=True):
        _check_indexed_as_scored(_ingest(scorer, as_object, {"ocsf": event, "host": "fw01"}), result)
        # a JSON text in a string field is spliced as the object it holds (ML Commons does not escape JSON)
        _check_indexed_as_scored(_ingest(scorer, as_text, {"message": json.dumps(event)}), result)
    strict = Options(scorer_url=scorer.url, alpha=0.2)
    flagged = [_ingest(scorer, strict, event)["anomaly"] for event in events]
    assert all(a["alpha"] == 0.2 for a in flagged)
    assert [a["is_anomaly"] for a in flagged] == [r["p_value"] <= 0.2 for r in results]
    assert sum(a["is_anomaly"] for a in flagged) > sum(r["is_anomaly"] for r in results)


def test_a_document_scored_before_is_indexed_with_this_calls_verdict_whole(
    held_out_events: list[dict[str, Any]], scorer: Scorer
) -> None:
    """ML Commons writes only the fields a document lacks, and calls the scorer all the same: a
    document scored by `ocsf-anomaly score` (reasons as objects, no alpha) was indexed with its old
    is_anomaly beside the new call's alpha, and one scored through the pipeline at another alpha
    kept its old verdict beside the new call's model fields (the consistency review)."""
    (result,) = _score(scorer, [held_out_events[0]])
    scored_elsewhere = {**held_out_events[0], "anomaly": {**result, "is_anomaly": "planted"}}
    _check_indexed_as_scored(_ingest(scorer, Options(scorer_url=scorer.url), scored_elsewhere), result)
    for own in ("text", 7, ["a"], {"score": 1, "old": True}):  # the event's own field of that name
        _check_indexed_as_scored(
            _ingest(scorer, Options(scorer_url=scorer.url), {**held_out_events[0], "anomaly": own}), result
        )
    # one shaped as this pipeline's own (re-indexed, updated by query, or written so at the
    # source: the adversarial review's forged `is_anomaly: false`): scored again, whole
    loose = _ingest(scorer, Options(scorer_url=scorer.url, alpha=0.2), held_out_events[0])
    assert loose["anomaly"]["alpha"] == 0.2
    forged = {**loose, "anomaly": {**loose["anomaly"], "is_anomaly": False, "p_value": 1.0, "score": 0.0}}
    for document in (loose, forged):
        called: list[bool] = []
        again = _ingest(scorer, Options(scorer_url=scorer.url, alpha=0.01), document, called)
        assert called == [True]
        _check_indexed_as_scored(again, result)
        assert again["anomaly"]["alpha"] == 0.01
    # ... and beside an error (ML Commons before 2.16 fails a document holding a field it maps,
    # and on_failure wrote the error beside the verdict)
    failed = {
        **loose,
        "anomaly": {**loose["anomaly"], "error": "document already has field name anomaly.score"},
    }
    again = _ingest(scorer, Options(scorer_url=scorer.url, alpha=0.01), failed)
    _check_indexed_as_scored(again, result)
    assert again["anomaly"]["alpha"] == 0.01


def test_a_document_indexed_unscored_then_again_through_the_pipeline_loses_its_old_error(
    held_out_events: list[dict[str, Any]], scorer: Scorer
) -> None:
    """The README's way to score documents the scorer could not (indexed with anomaly.error): re-index
    them through the pipeline. Their old error stayed beside the new verdict: counted as unscored on
    the dashboard, and as an anomaly too (the review)."""
    options = Options(scorer_url=scorer.url)
    unscored = {**held_out_events[0], "anomaly": {"error": "Error from remote service: connection refused"}}
    scored = _ingest(scorer, options, unscored)
    (result,) = _score(scorer, [held_out_events[0]])
    _check_indexed_as_scored(scored, result)  # its fields, and nothing else: no error


def test_the_connector_carries_the_token_and_a_placeholder_is_refused(
    held_out_events: list[dict[str, Any]], token_scorer: Scorer
) -> None:
    params = parameters(held_out_events[0], METADATA, {"event": "$"})
    status, body = _connector_call(
        token_scorer, Options(scorer_url=token_scorer.url, scorer_token=TOKEN), params
    )
    assert status == 200, body
    status, body = _connector_call(token_scorer, Options(scorer_url=token_scorer.url), params)
    assert status == 403  # a token, and the wrong one: the document gets anomaly.error, no verdict
    assert json.loads(body)["error"]["code"] == "forbidden"


def test_what_a_misconfigured_pipeline_sends_fails_the_document_with_a_reason(scorer: Scorer) -> None:
    options = Options(scorer_url=scorer.url, event_field="message")
    # a text field that holds no JSON: ML Commons escapes it, and the body is no longer JSON
    with pytest.raises(MLCommonsError, match="Invalid payload"):
        _ingest(scorer, options, {"message": "Dec  3 07:00:01 fw01 sshd[4242]: Accepted password"})
    with pytest.raises(MLCommonsError, match="Cannot find field"):
        _ingest(scorer, options, {"msg": "{}"})
    # a JSON field that is not an object: the service says what it expected (on_failure keeps it)
    status, body = _connector_call(
        scorer, options, parameters({"message": [1, 2]}, METADATA, {"event": "message"})
    )
    assert status == 422
    assert "input_map" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"event": ', "application/json", 400, "malformed_json"),
        (b'{"ocsf": {}}', "application/json", 422, "not_an_event"),
        (b'{"event": "{}"}', "application/json", 422, "not_an_event"),
        (b"[{}]", "application/json", 422, "not_an_event"),
        (b'{"event": {}}', "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_bad_bodies_get_a_clear_4xx(
    scorer: Scorer, body: bytes, content_type: str, status: int, code: str
) -> None:
    answer_status, answer = _post(scorer, definitions.ENDPOINT, body, {"Content-Type": content_type})
    assert answer_status == status
    assert json.loads(answer)["error"]["code"] == code


def test_opensearch_metadata_beside_the_source_does_not_change_the_verdict(
    held_out_events: list[dict[str, Any]], scorer: Scorer
) -> None:
    event = held_out_events[1]
    bare = _post(scorer, definitions.ENDPOINT, json.dumps({"event": event}).encode(), {})
    with_metadata = {**event, **METADATA, "_ingest": {"timestamp": "2026-12-03T10:00:00Z"}}
    wrapped = _post(scorer, definitions.ENDPOINT, json.dumps({"event": with_metadata}).encode(), {})
    assert bare[0] == wrapped[0] == 200
    assert json.loads(bare[1]) == json.loads(wrapped[1])
    # a UTF-8 byte order mark opening the body is read past, as every JSON body of the service's
    bommed = _post(scorer, definitions.ENDPOINT, b"\xef\xbb\xbf" + json.dumps({"event": event}).encode(), {})
    assert bommed == bare


# ---------------------------------------------------------------- the definitions among themselves
def test_the_definitions_agree_with_each_other() -> None:
    options = Options(
        scorer_url="http://10.0.0.5:8080",
        name="ocsf-x",
        pipeline_name="scored",
        index_patterns=("ocsf-a-*", "ocsf-b-*"),
    )
    paths = [step.path for step in definitions.steps(options, sample={})]
    assert "/_ingest/pipeline/scored" in paths
    assert "/_ingest/pipeline/scored/_simulate" in paths
    component = definitions.component_template(options)
    template = definitions.index_template(options)
    removed, processor = definitions.pipeline(options, "m")["processors"]
    assert removed == {
        "remove": {
            **removed["remove"],
            "field": "anomaly",
            "ignore_missing": True,
        }
    }
    assert component["template"]["settings"]["index.default_pipeline"] == options.pipeline
    assert template["composed_of"] == [options.component_template]
    assert template["index_patterns"] == ["ocsf-a-*", "ocsf-b-*"]
    mapped = component["template"]["mappings"]["properties"]["anomaly"]["properties"]
    (output_map,) = processor["ml_inference"]["output_map"]
    assert {field.removeprefix("anomaly.") for field in output_map} | {"error"} == set(mapped)
    assert processor["ml_inference"]["on_failure"][0]["set"]["field"] == "anomaly.error"
    assert all(field.count(".") == 1 for field in output_map)  # ML Commons skips deeper new targets
    (action,) = definitions.connector(options)["actions"]
    regex = definitions.trusted_regex(options)
    assert re.fullmatch(regex, action["url"])
    assert not re.fullmatch(regex, "http://10.0.0.5:8080/v1/score")
    assert not re.fullmatch(regex, "http://10.0.0.5:80800/v1/integrations/opensearch")
    settings = definitions.cluster_settings(options, ["^https://api\\.openai\\.com/.*$"])["persistent"]
    assert settings[definitions.TRUSTED_SETTING] == ["^https://api\\.openai\\.com/.*$", regex]
    assert settings[definitions.PRIVATE_IP_SETTING] is True
    public = definitions.cluster_settings(Options(scorer_url="https://scorer.example.com"), [regex])
    assert definitions.PRIVATE_IP_SETTING not in public["persistent"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://scorer", "http"), ("http://scorer:8080/v1/score", "without a path"), ("scorer:8080", "http")],
)
def test_a_scorer_url_with_a_path_or_no_scheme_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Options(scorer_url=url)


def test_the_committed_definitions_are_what_render_writes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scorer.cli", "opensearch", "render", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "_cluster/settings" in done.stderr
    written = {p.name: p.read_text() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_text() for p in DEFINITIONS.iterdir()}
    assert written == committed, (
        "run: ocsf-anomaly opensearch render --output-dir integrations/opensearch/definitions"
    )
    for text in written.values():
        json.loads(text)
    printed = subprocess.run(
        [sys.executable, "-m", "scorer.cli", "opensearch", "render"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed.count("\n# ") + 1 == len(written)
