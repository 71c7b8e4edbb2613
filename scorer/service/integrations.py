"""Endpoints shaped for one host each, thin over the service's one scoring path (``anomalies``).

``POST /v1/integrations/vector`` (and ``HEAD``, Vector's health check: 503 while no downstream is
set, as every batch would be): a Vector ``http`` sink's batch (a JSON array, or NDJSON), every event
enriched in place as ``/v1/enrich`` does, the batch
forwarded in order to the Vector ``http_server`` source set by OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL,
and Vector answered 2xx only once that source answered 2xx (503 otherwise, so that Vector keeps
the batch and sends it again; a batch already forwarded is not forwarded twice: vector.py). An
element that is not a JSON object (or an NDJSON line that is not JSON) is not dropped: it goes on
as ``{"message": <it, as it came>, "anomaly": {"error": ...}}``, Vector's own shape for text
(``/v1/enrich`` keeps it the same way, under ``_raw``: ``handlers.Enriching``).

``POST /v1/integrations/opensearch``: what an OpenSearch ingest pipeline's ``ml_inference``
processor sends through our ML Commons connector (integrations/opensearch), one document a call:
``{"event": <the OCSF document>}``. The answer is one flat JSON object that the pipeline's
``output_map`` reads field by field (ML Commons reads a remote model's reply as a map; before
OpenSearch 3.5 every number in it comes back a double, so what must stay text, the model version,
is sent as text; a path missing from the reply fails the document, so every mapped field is always
there).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import orjson
from aiohttp import web

from scorer.explain import reason_text
from scorer.io import UTF8_BOM, dumps, loads
from scorer.service.errors import ApiError
from scorer.service.handlers import (
    Enriching,
    anomalies,
    json_response,
    off_the_loop,
    parse,
    parsed,
    read_body,
)
from scorer.service.keys import SETTINGS, VECTOR
from scorer.service.requests import JSON_TYPES, Batch, Item
from scorer.service.vector import (
    DOWNSTREAM_NESTING,
    DownstreamError,
    DownstreamRejected,
    holds_beyond_double,
    may_hold_beyond_double,
    nests_deeper,
)
from scorer.settings import masked_url

RETRY_AFTER_SECONDS = "5"  # Vector backs off on its own (it ignores Retry-After); other clients may not

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


_BRACES = re.compile(r"\{(?=\{)")  # a brace another follows


# ML Commons before 3.8 retries a connector's call (max_retry_times) only when the answer carries
# this header, as AWS services throttle (MLSdkAsyncHttpResponseHandler.handleThrottlingInHeader);
# 3.8 and later retry any 429 and 5xx too. A call the scorer refuses for now (503: busy) says so.
THROTTLED = {"x-amzn-ErrorType": "ThrottlingException"}


async def opensearch(request: web.Request) -> web.Response:
    """One OCSF document from an OpenSearch ingest pipeline → its verdict as one flat object."""
    try:
        body, alpha = await read_body(request)
        read = partial(_opensearch_event, body, request.headers.get("Content-Type", ""))
        event = await parsed(request, len(body), read)
        (anomaly,) = await anomalies(request, Batch([Item(event)], "object"), alpha)
    except ApiError as error:
        if error.status == 503:
            error.headers = {**(error.headers or {}), **THROTTLED}
        raise
    return json_response({name: _not_a_template(value) for name, value in flat(anomaly, alpha).items()})


def _not_a_template(value: Any) -> Any:
    """``value`` with no "{{" in its text: ML Commons writes each reply field through OpenSearch's
    ValueSource.wrap, which compiles a string holding "{{" as a Mustache template. A reason quoting
    an event's "{{_index}}" was indexed as the index's name, and an unclosed "{{#x}}" failed the
    document. A zero-width space (U+200B) between the braces shows the same and is no template."""
    if isinstance(value, str):
        return _BRACES.sub("{\u200b", value) if "{{" in value else value
    if isinstance(value, list):
        return [_not_a_template(item) for item in value]
    return value


def _opensearch_event(body: bytes, content_type: str) -> dict[str, Any]:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind and kind not in JSON_TYPES:
        raise ApiError(
            415, "unsupported_media_type", f"content type {kind!r} is not accepted: send application/json"
        )
    try:
        value = loads(body.removeprefix(UTF8_BOM))
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


async def vector(request: web.Request) -> web.Response:
    """A Vector http sink's batch → enriched, forwarded downstream in order → 200 once it holds them."""
    settings, hop = request.app[SETTINGS], request.app[VECTOR]
    if hop.url is None:
        raise _no_downstream()
    shown = masked_url(hop.url)  # its query may hold a token: never in an answer
    body, alpha = await read_body(request, floor=False)

    async def enrich_and_forward() -> dict[str, int]:
        batch = await parse(request, body, strict=False)
        if batch.shape == "object":  # one event, as a sink with a single-event batch sends it
            batch = Batch(batch.items, "array", batch.size)
        verdicts = await anomalies(request, batch, alpha)
        enriching = Enriching(settings.anomaly_field, "message", room=settings.max_body_bytes - batch.size)
        passed = await off_the_loop(
            partial(enriching.parts, batch.items, verdicts, partial(_pass_on, enriching))
        )
        parts = [part for part, _ in passed]
        try:
            await hop.forward(b"[" + b",".join(parts) + b"]")
        except DownstreamRejected as exc:  # not retried by Vector: dropped there, and counted
            raise ApiError(
                422,
                "downstream_rejected",
                f"the downstream {shown} refused the enriched batch for what it holds "
                f"({exc}), as it would every time: a sink after it rejected the events; see its log",
            ) from None
        except DownstreamError as exc:
            raise ApiError(
                503,
                "downstream_unavailable",
                f"the enriched batch could not be handed to {shown}: {exc}; send it again",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ) from None
        flagged = sum(
            bool(v.get("is_anomaly")) for v, (_, kept) in zip(verdicts, passed, strict=True) if kept
        )
        return {"events": len(parts), "anomalies": flagged}

    done = await hop.forwarded.once(body, alpha, enrich_and_forward)
    if done is None:
        return json_response({"events": 0, "anomalies": 0, "already_forwarded": True})
    return json_response({**done, "already_forwarded": False})


async def vector_health(request: web.Request) -> web.Response:
    """Vector's health check (HEAD on the sink's URI, 2xx healthy): the service is up and has a
    downstream to forward to; without one, every batch would be answered 503, so the check fails
    the same way (Vector then says so at start, or refuses to start with --require-healthy)."""
    if request.app[VECTOR].url is None:
        raise _no_downstream()
    return web.Response(status=200)


def _no_downstream() -> ApiError:
    return ApiError(
        503,
        "no_downstream",
        "no Vector downstream is set: set OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL to the http_server "
        "source that takes the enriched events back (Vector keeps the batch and retries)",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _pass_on(enriching: Enriching, item: Item, anomaly: dict[str, Any]) -> tuple[bytes, bool]:
    """An event enriched; what is not one passed on as it came, under "message" as Vector holds text.
    What Vector's decoder cannot read (nested deeper than it reads, a number beyond a double's
    range) goes on as its JSON text, with an error instead of its verdict: forwarded as it is, the
    whole batch would be refused, and dropped by Vector or retried for ever. With whether the
    verdict went with it."""
    field = enriching.field
    part = enriching.part(item, anomaly)
    deep = part.count(b"[") + part.count(b"{") >= DOWNSTREAM_NESTING  # else it cannot nest that deep
    if not deep and not may_hold_beyond_double(part):  # most parts
        return part, True
    document = (
        {**item.event, field: anomaly} if item.event is not None else {"message": item.raw, field: anomaly}
    )
    if deep and nests_deeper(document, DOWNSTREAM_NESTING - 1):  # the batch's array is one level more
        error = {
            "code": "too_deep",
            "message": f"it nests more than {DOWNSTREAM_NESTING - 1} levels, deeper than Vector's JSON "
            'decoder reads in a batch: passed on as its JSON text under "message", without a verdict',
        }
    elif holds_beyond_double(document):
        error = {
            "code": "out_of_range",
            "message": "it holds a number beyond a double's range, which Vector's JSON decoder refuses "
            'with the whole batch: passed on as its JSON text under "message", without a verdict',
        }
    else:
        return part, True
    # its text under "message" (Enriching's kept name here), cut to the room left as a kept line is
    text = dumps(item.event if item.event is not None else item.raw)
    return enriching.text_part(text.decode(), len(text), {"error": error}), False
