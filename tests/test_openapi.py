"""The service does what its OpenAPI document says: schemathesis against the live /openapi.json.

Schemathesis (its CLI, as a user would run it) loads the document the service serves and sends
every operation its examples, its coverage cases (boundary values, missing and wrong parameters,
methods a path does not take) and a bounded number of generated cases, positive and negative,
checking each answer: no 5xx; a documented status, content type, headers and body; a schema-valid
request accepted; 405 with Allow for a method a path does not take; 401 without the token. It is
deterministic and keeps no example database. (It leaves out GET /openapi.json, the document itself.)

One of its checks is left out: ``negative_data_rejection`` (a request the document calls invalid
must be refused). By design the service answers an element or an NDJSON line that is not an event
with an error in its place (unless ``strict=true``), and scores an event whatever its fields hold,
so a schema-violating body is often, rightly, answered 200. The query parameters, where the
document is exact, are checked here with hypothesis instead.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_scorer import serve_app
from vector_downstream import Downstream

from scorer.detector import Detector
from scorer.service.handlers import FLAGS
from scorer.service.schema import STRICT_VALUES, openapi
from scorer.settings import Settings

TOKEN = "schemathesis-token"
MAX_EXAMPLES = 25  # generated cases per operation and mode, beside the examples and coverage cases
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
)
# Warnings that would mean the run tested less than it seems: every call refused for want of a
# token, NDJSON answers left unread, a pattern it cannot generate from, a document it misreads.
FAIL_ON_WARNINGS = (
    "missing_auth",
    "missing_deserializer",
    "unsupported_regex",
    "unused_openapi_auth",
    "validation_mismatch",
)
DEEP = 1_023  # levels of nesting: as deep as an event in an array can be read (orjson reads 1,024)


@pytest.fixture(scope="module")
def downstream() -> Iterator[Downstream]:
    """Where the Vector hop forwards (a real receiver standing in for Vector's http_server source)."""
    with Downstream() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def live_settings(bundle_dir: Path, downstream: Downstream) -> Settings:
    # small limits, so that generated requests can pass them; a token, so that auth is exercised
    return Settings(
        model_dir=bundle_dir,
        threads=2,
        max_events=20,
        max_body_bytes=64 * 1024,
        api_token=TOKEN,
        vector_downstream_url=downstream.url,
    )


@pytest.fixture(scope="module")
def live(live_settings: Settings) -> Iterator[str]:
    with serve_app(live_settings) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def document(live: str) -> dict[str, Any]:
    status, _, served = _call(live, "GET", "/openapi.json")
    assert status == 200
    assert isinstance(served, dict)
    return served


def _call(
    base_url: str,
    method: str,
    target: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    *,
    parse: bool = True,
) -> tuple[int, str, Any]:
    """Status, content type and body (parsed when JSON or NDJSON, and ``parse``) of one call with the token."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    kind = response.headers.get("Content-Type", "").split(";")[0]
    if not parse:
        return response.status, kind, data
    if kind == "application/json":
        return response.status, kind, json.loads(data)
    if kind == "application/x-ndjson":
        return response.status, kind, [json.loads(line) for line in data.splitlines()]
    return response.status, kind, data


def _check(document: dict[str, Any], path: str, status: int, kind: str, body: Any) -> None:
    """``body`` is what the document says ``POST path`` answers with ``status`` (an NDJSON body as
    the array of its lines)."""
    schema = document["paths"][path]["post"]["responses"][str(status)]["content"][kind]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)


# ---------------------------------------------------------------------- schemathesis
def _config(tmp_path: Path) -> Path:
    lines = [
        "workers = 1",  # with 2, hypothesis' lambda descriptions raced in its coverage phase (4.32.5)
        f'headers = {{ Authorization = "Bearer {TOKEN}" }}',
        "[cache]",
        "enabled = false",  # no .schemathesis/ directory of crashes
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        "deterministic = true",
        'database = "none"',
        "[warnings]",
        f"fail-on = {json.dumps(list(FAIL_ON_WARNINGS))}",
        *(f"[checks.{name}]\nenabled = true" for name in CHECKS),
        "[checks.negative_data_rejection]",
        "enabled = false",
    ]
    path = tmp_path / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_schemathesis_finds_nothing_the_document_does_not_say(
    live: str, document: dict[str, Any], tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(_config(tmp_path)),
        "run",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        f"{live}/openapi.json",
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-30_000:]
    summary = json.loads(report.read_text(encoding="utf-8"))
    # every operation but GET /openapi.json, the document schemathesis loaded (it does not call it)
    operations = sum(len(item) for item in document["paths"].values()) - 1
    assert summary["operations"]["tested"] == operations, output[-30_000:]
    assert summary["test_cases"]["generated"] >= 10 * operations, output[-30_000:]


def test_the_document_describes_the_service_as_configured(
    document: dict[str, Any], live_settings: Settings
) -> None:
    (alpha,) = [p for p in document["paths"]["/v1/score"]["post"]["parameters"] if p["name"] == "alpha"]
    calibration = Detector.load(live_settings.model_dir).calibration
    assert alpha["schema"]["minimum"] == calibration.smallest_alpha  # 1/601: the bundle's 600 events
    assert document == json.loads(orjson.dumps(openapi(live_settings, calibration.smallest_alpha)))
    schemas = document["components"]["schemas"]
    assert schemas["EventArray"]["maxItems"] == live_settings.max_events
    assert schemas["EventArray"]["items"] == {"$ref": "#/components/schemas/Event"}
    assert document["paths"]["/v1/score"]["post"]["security"] == [{"apiToken": []}]
    assert "security" not in openapi()["paths"]["/v1/score"]["post"]  # no token configured: open
    assert set(STRICT_VALUES) == set(FLAGS)


def test_the_document_says_what_enrich_keeps_and_when_vector_is_unhealthy(
    live: str, document: dict[str, Any]
) -> None:
    """What is not an event comes back under _raw beside its error, and nothing else: the document
    took an item with its error alone (the original gone) for an enriched event, and knew no 503
    for Vector's health check."""
    error = {"code": "not_an_event", "message": "element 1 is a number, not an object", "index": 1}
    status, kind, answer = _call(live, "POST", "/v1/enrich", b'[{"class_uid": 4001}, 5]')
    assert status == 200
    assert answer[1] == {"_raw": 5, "anomaly": {"error": error}}
    _check(document, "/v1/enrich", 200, kind, answer)
    status, kind, lines = _call(live, "POST", "/v1/enrich", b"{oops\n", "application/x-ndjson")
    assert (status, lines[0]["_raw"]) == (200, "{oops")
    _check(document, "/v1/enrich", 200, kind, lines)
    for wrong in ({"anomaly": {"error": error}}, {"_raw": 5, "anomaly": {"error": error}, "other": 1}):
        with pytest.raises(jsonschema.ValidationError):
            _check(document, "/v1/enrich", 200, "application/json", [answer[0], wrong])
    health = document["paths"]["/v1/integrations/vector"]["head"]
    assert "security" not in health
    assert "no_downstream" in health["responses"]["503"]["description"]
    assert health["responses"]["503"]["headers"]["Retry-After"]["required"] is True


def test_every_operation_documents_the_417_any_request_with_another_expectation_gets(
    live: str, document: dict[str, Any]
) -> None:
    """aiohttp answers an Expect header it does not meet on every route; the document listed 417
    nowhere (the review)."""
    address = urlsplit(live)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
            try:
                headers = {"Authorization": f"Bearer {TOKEN}", "Expect": "foo", "Content-Length": "0"}
                connection.request(method.upper(), path.replace("{version}", "1"), headers=headers)
                response = connection.getresponse()
                body = response.read()
            finally:
                connection.close()
            assert response.status == 417, (method, path)
            described = operation["responses"]["417"]
            if method != "head":
                schema = described["content"]["application/json"]["schema"]
                jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(
                    orjson.loads(body)
                )


# ---------------------------------------------------------------------- the query, with hypothesis
def _any_case(value: str) -> st.SearchStrategy[str]:
    return st.tuples(*(st.sampled_from(sorted({c.lower(), c.upper()})) for c in value)).map("".join)


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(
    value=st.one_of(
        st.sampled_from(STRICT_VALUES).flatmap(_any_case),
        st.sampled_from(["", "null", "none", "on", "off", "2", "-1", "t", "tru", "true ", " yes"]),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    )
)
def test_strict_takes_what_the_document_says(live: str, document: dict[str, Any], value: str) -> None:
    (parameter,) = [p for p in document["paths"]["/v1/score"]["post"]["parameters"] if p["name"] == "strict"]
    pattern = parameter["schema"]["anyOf"][1]["pattern"]
    status, _, body = _call(live, "POST", f"/v1/score?strict={quote(value, safe='')}", b"[{}, 7]")
    if re.fullmatch(pattern, value):
        assert status == (422 if value.lower() in ("true", "1", "yes") else 200), (value, body)
    else:
        assert (status, body["error"]["code"]) == (400, "bad_strict"), value


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(value=st.floats() | st.sampled_from([0.0, 1.0, -0.0, 5e-324, 1 - 2**-53, math.inf, math.nan]))
def test_alpha_takes_what_the_document_says(live: str, document: dict[str, Any], value: float) -> None:
    (parameter,) = [p for p in document["paths"]["/v1/score"]["post"]["parameters"] if p["name"] == "alpha"]
    schema = parameter["schema"]
    status, _, body = _call(live, "POST", f"/v1/score?alpha={value!r}", b"{}")
    if schema["exclusiveMinimum"] < value < schema["exclusiveMaximum"] and value >= schema["minimum"]:
        assert status == 200, (value, body)
    else:
        assert (status, body["error"]["code"]) == (400, "bad_alpha"), value


# ---------------------------------------------------------------------- found on the way
def _deep(levels: int) -> bytes:
    """An event nested ``levels`` deep, as JSON."""
    inner = b'{"x":' * (levels - 2) + b'{"class_uid":4001}' + b"}" * (levels - 2)
    return b'{"class_uid":4001,"unmapped":' + inner + b"}"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", _deep(DEEP)),
        ("application/json", b'[{"class_uid": 4001},' + _deep(DEEP) + b"]"),
        # an integer beyond 64 bits makes the body be read again by the standard library, which
        # reads less deep than orjson: that answered 500
        (
            "application/json",
            b'[{"class_uid": 4001, "n": 123456789012345678901},' + _deep(DEEP) + b"]",
        ),
        ("application/x-ndjson", b'{"class_uid": 4001}\n\n' + _deep(DEEP) + b"\n"),
    ],
)
def test_an_event_as_deep_as_can_be_read_is_written_back_whole(
    live: str, document: dict[str, Any], content_type: str, body: bytes
) -> None:
    """/v1/enrich answered 500 for an event it could read but not write back (orjson writes 254
    levels; the standard library, its fallback, about 980 at Python's default recursion limit);
    then an error in its place, which the Vector hop forwarded alone: the event was lost. Whatever
    is read is written back, strict or not; /v1/score scores it."""
    for query in ("", "?strict=true"):
        status, kind, data = _call(live, "POST", "/v1/enrich" + query, body, content_type, parse=False)
        assert status == 200, data
        # read as orjson reads (1,024 levels), not as this process's standard library would
        answer = (
            [orjson.loads(line) for line in data.splitlines()] if "ndjson" in kind else orjson.loads(data)
        )
        *_, last = [answer] if isinstance(answer, dict) else answer
        assert "score" in last.pop("anomaly")
        levels, inner = 1, last
        while set(inner) - {"class_uid"}:
            inner = inner["unmapped" if levels == 1 else "x"]
            levels += 1
        assert (levels, inner) == (DEEP, {"class_uid": 4001})

    status, kind, answer = _call(live, "POST", "/v1/score", body, content_type)
    assert status == 200
    assert all("score" in result for result in answer["results"])


@pytest.mark.parametrize(
    "event",
    [
        {
            "class_uid": 4001,
            "unmapped": {"id": -9223372036854775809, "big": 18446744073709551616, "ok": 2**63},
        },
        json.loads(_deep(300)),  # deeper than orjson writes
    ],
    ids=["integers beyond 64 bits", "300 levels"],
)
def test_enrich_gives_every_original_field_back_as_it_came(live: str, event: dict[str, Any]) -> None:
    status, _, answer = _call(live, "POST", "/v1/enrich", json.dumps(event).encode())
    assert status == 200, answer
    assert "score" in answer.pop("anomaly")
    assert answer == event  # not -9.223372036854776e18: orjson alone reads such an integer as a float
