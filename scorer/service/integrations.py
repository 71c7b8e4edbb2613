"""Endpoints shaped for one host each, thin over the service's one scoring path (``anomalies``).

``POST /v1/integrations/opensearch``: what an OpenSearch ingest pipeline's ``ml_inference``
processor sends through our ML Commons connector (integrations/opensearch), one document a call:
``{"event": <the OCSF document>}``. The answer is one flat JSON object that the pipeline's
``output_map`` reads field by field (ML Commons reads a remote model's reply as a map; before
OpenSearch 3.5 every number in it comes back a double, so what must stay text, the model version,
is sent as text; a path missing from the reply fails the document, so every mapped field is always
there).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from scorer.explain import reason_text
from scorer.service.errors import ApiError
from scorer.service.handlers import anomalies, json_response, read_body, turn_to_parse
from scorer.service.keys import METRICS
from scorer.service.requests import JSON_TYPES, Batch, Item, loads

# What OpenSearch adds beside a document's source when an ingest processor's input_map reads the
# whole document ("$"): never part of the event.
OPENSEARCH_METADATA = frozenset(
    {
        "_index",
        "_id",
        "_routing",
        "_version",
        "_version_type",
        "_if_seq_no",
        "_if_primary_term",
        "_op_type",
        "_ingest",
    }
)


async def opensearch(request: web.Request) -> web.Response:
    """One OCSF document from an OpenSearch ingest pipeline → its verdict as one flat object."""
    body, alpha = await read_body(request)
    async with turn_to_parse(request, len(body)):
        started = time.perf_counter()
        event = _opensearch_event(body, request.headers.get("Content-Type", ""))
    request.app[METRICS].stage_seconds.labels("parse").observe(time.perf_counter() - started)
    (anomaly,) = await anomalies(request, Batch([Item(event)], "object"), alpha)
    return json_response(flat(anomaly, alpha))


def _opensearch_event(body: bytes, content_type: str) -> dict[str, Any]:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind and kind not in JSON_TYPES:
        raise ApiError(
            415, "unsupported_media_type", f"content type {kind!r} is not accepted: send application/json"
        )
    try:
        value = loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    event = value.get("event") if isinstance(value, dict) else None
    if not isinstance(event, dict):
        raise ApiError(
            422,
            "not_an_event",
            'expected {"event": <the OCSF document, a JSON object>}, as the connector\'s request_body '
            '{"event": ${parameters.event}} sends it; the ingest pipeline\'s input_map must map event '
            'to the document ("$") or to the field that holds the OCSF object',
        )
    return {name: value for name, value in event.items() if name not in OPENSEARCH_METADATA}


def flat(anomaly: dict[str, Any], alpha: float) -> dict[str, Any]:
    """The anomaly object as one level of fields: reasons as text, and their fields apart (to count
    by field), the model as name, version and variant, and the alpha it was judged at."""
    model = anomaly["model"]
    reasons = anomaly["reasons"]
    return {
        "score": anomaly["score"],
        "p_value": anomaly["p_value"],
        "is_anomaly": anomaly["is_anomaly"],
        "threshold": anomaly["threshold"],
        "alpha": alpha,
        "calibration_group": anomaly["calibration_group"],
        "reasons": [reason_text(reason) for reason in reasons],
        "reason_fields": [reason["field"] for reason in reasons],
        "model_name": model["name"],
        "model_version": str(model["version"]),
        "model_variant": model["variant"],
    }
