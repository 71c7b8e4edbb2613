"""The API's JSON shapes as pydantic models, and the OpenAPI 3.1 document generated from them.

Handlers build plain dicts for speed; tests validate real responses against this document and
schemathesis fuzzes the live service from it (tests/test_openapi.py), so the two cannot drift
apart unnoticed. The document describes the service as configured: its limits, the name of the
field ``/v1/enrich`` adds, and which calls need a bearer token.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema

import scorer
from scorer.service.requests import RAW
from scorer.service.workers import RELOAD_WAIT_SECONDS as WAIT
from scorer.settings import Settings

# What ?strict= accepts, in any letter case (anything else, an empty value included, is 400 bad_strict)
STRICT_VALUES = ("true", "false", "1", "0", "yes", "no")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _absent(description: str) -> Any:
    """A field that is left out, never null, when it does not apply."""
    return Field(None, description=description, json_schema_extra=_no_default)


class Reason(BaseModel):
    """A field on which the event differs from its nearest normal events."""

    field: str = Field(description="Dotted OCSF path, as the feature spec names it")
    value: Any = Field(description="The event's value, in the form of `typical` (an address as its prefix)")
    typical: Any = Field(description="The neighbours' typical value (median, or most common category)")
    deviation: float | None = Field(
        description=(
            "One scale for every field: for a number, its distance from the neighbours' median in robust "
            "standard deviations (missing where they have one: 3); for a category, 3 × the share of "
            "neighbours with another value (5 × for a value never seen in training); null for a number "
            "that cannot be real (not finite, or beyond ±2⁶⁴; in a port field, not a whole number from 0 "
            "to 65535, unless training held it), which comes first"
        )
    )


class ModelRef(BaseModel):
    name: str
    version: str
    variant: Literal["champion", "challenger"]


class Anomaly(BaseModel):
    """The verdict on one event."""

    model_config = ConfigDict(extra="forbid")

    score: float = Field(description="Higher is more anomalous")
    p_value: float = Field(
        ge=0,
        le=1,
        description=(
            "Share of held-out normal events that scored at least as high; 0 for an event holding a "
            "number that cannot be real, a port's included (flagged whatever the rest says)"
        ),
    )
    is_anomaly: bool = Field(description="p_value ≤ alpha")
    threshold: float | None = Field(
        description="Score above which an event of this group is flagged at alpha"
    )
    calibration_group: str
    reasons: list[Reason]
    neighbors: list[str] = Field(description="metadata.uid of the nearest baseline events")
    model: ModelRef


class ItemErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Literal["malformed_json", "not_an_event"]
    message: str
    line: int | SkipJsonSchema[None] = _absent("NDJSON line, 1-based (NDJSON bodies)")
    index: int | SkipJsonSchema[None] = _absent("Array index, 0-based (array bodies)")


class ItemError(BaseModel):
    """In place of a result: why this item of the request is not an event."""

    model_config = ConfigDict(extra="forbid")

    error: ItemErrorDetail


class ScoreResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: list[Anomaly | ItemError] = Field(description="One per event, in request order")


class OpenSearchVerdict(BaseModel):
    """The verdict on one document, one level deep, for an ingest pipeline's output_map."""

    model_config = ConfigDict(extra="forbid")

    score: float = Field(description="Higher is more anomalous")
    p_value: float = Field(ge=0, le=1, description="As in the anomaly object")
    is_anomaly: bool = Field(description="p_value ≤ alpha")
    threshold: float | None = Field(description="As in the anomaly object")
    alpha: float = Field(gt=0, lt=1, description="The false-positive rate the verdict was judged at")
    calibration_group: str
    reasons: list[str] = Field(
        description="The reasons as text, largest first: field=value (typical T, deviation D)"
    )
    reason_fields: list[str] = Field(description="The OCSF field of each reason, in the same order")
    model_name: str
    model_version: str = Field(description="Text, so that OpenSearch does not read it as a number")
    model_variant: Literal["champion", "challenger"]


class VectorAnswer(BaseModel):
    """What Vector's http sink is answered once the downstream holds the enriched batch."""

    model_config = ConfigDict(extra="forbid")

    events: int = Field(ge=0, description="Events forwarded (0 for a batch already forwarded)")
    anomalies: int = Field(ge=0, description="Of them, flagged")
    already_forwarded: bool = Field(
        description="This batch (the same bytes) was forwarded within OCSF_ANOMALY_VECTOR_DEDUPE_SECONDS: not again"
    )


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int = Field(description="The HTTP status, repeated")
    code: str = Field(description="What went wrong, for programs: each response lists its codes")
    message: str = Field(description="What went wrong, for people")
    line: int | SkipJsonSchema[None] = _absent("NDJSON line, 1-based, of the item at fault")
    index: int | SkipJsonSchema[None] = _absent("Array index, 0-based, of the item at fault")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["alive"]
    pid: int = Field(description="the serving process that answered (serve --workers runs several)")


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = Field(description="Registry version, or the bundle version of a directory")
    bundle_version: str = Field(description="Digest of the bundle's files")


class Ready(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ready"]
    model: ModelInfo = Field(description="The champion")
    redis: Literal["ok", "degraded", "disabled"] = Field(
        description="The shared embedding cache: ok, degraded (answering from the in-process tier) or disabled"
    )


class NotReady(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["not ready"]
    model: None


class ServedModel(ModelInfo):
    source: str = Field(description="models:/NAME/VERSION, or the bundle directory")


class Models(BaseModel):
    model_config = ConfigDict(extra="forbid")

    champion: ServedModel
    challenger: ServedModel | None
    split: float = Field(ge=0, le=1, description="Share of entities routed to the challenger")
    shadow: bool = Field(description="Whether the challenger also scores every event, unreturned")
    source: Literal["registry", "directory"]
    registry: str | None = Field(description="The registry's URI, password hidden")
    poll_seconds: float = Field(ge=0, description="How often the aliases are checked (0: only on reload)")


class Versions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    champion: str
    challenger: str | None


class Processes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(
        ge=1,
        description="The serving processes when the answer was sent (`serve --workers`; fewer while one is replaced)",
    )
    serving: int = Field(
        ge=1,
        description=f"How many of them serve `to`: all, unless one could not load it or had not within {WAIT:g} s",
    )


class Reload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reloaded: bool
    from_: Versions = Field(alias="from")
    to: Versions
    processes: Processes = Field(
        description=f"The answer waits until every serving process has asked again (at most {WAIT:g} s)"
    )


MODELS: tuple[type[BaseModel], ...] = (
    ScoreResponse,
    ErrorResponse,
    Health,
    Ready,
    NotReady,
    Anomaly,
    ItemError,
    Models,
    Reload,
    OpenSearchVerdict,
    VectorAnswer,
)

# One event as the demo writes it (HTTP Activity), for readers and as schemathesis' first example.
EXAMPLE_EVENT: dict[str, Any] = {
    "class_uid": 4002,
    "activity_id": 3,
    "severity_id": 1,
    "time": 1700005501102,
    "metadata": {"version": "1.5.0", "uid": "demo-1-0", "product": {"name": "Secure Web Gateway"}},
    "http_request": {
        "http_method": "GET",
        "url": {"scheme": "https", "hostname": "git.acme.internal", "path": "/api/v4/projects"},
    },
    "http_response": {"code": 200, "length": 5304},
    "src_endpoint": {"ip": "10.1.1.18"},
    "dst_endpoint": {"hostname": "git.acme.internal", "ip": "10.0.0.14", "port": 443},
    "actor": {"user": {"name": "ben.sato"}},
}
_ENDPOINT = {
    "type": "object",
    "properties": {"ip": {"type": "string"}, "port": {"type": "integer"}, "hostname": {"type": "string"}},
}
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "One OCSF event: a JSON object of any OCSF class. No field is required: a field the event "
        "lacks is scored as missing, one the model does not know is ignored (and kept by /v1/enrich), "
        "and a value of an unexpected type is scored (as unusual), never refused. "
        "The properties listed are a few common OCSF attributes, for orientation."
    ),
    "properties": {
        "class_uid": {"type": "integer", "description": "OCSF class, e.g. 4001 Network Activity"},
        "activity_id": {"type": "integer"},
        "severity_id": {"type": "integer"},
        "time": {"type": "integer", "description": "Milliseconds since the epoch"},
        "metadata": {
            "type": "object",
            "properties": {"uid": {"type": "string", "description": "Returned in neighbors"}},
        },
        "src_endpoint": _ENDPOINT,
        "dst_endpoint": _ENDPOINT,
        "actor": {"type": "object", "properties": {"user": {"type": "object"}}},
        "traffic": {
            "type": "object",
            "properties": {"bytes_in": {"type": "number"}, "bytes_out": {"type": "number"}},
        },
    },
    "additionalProperties": True,
    "examples": [EXAMPLE_EVENT],
}

# status → (description, the error codes it carries)
SCORING_ERRORS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: (
        "The body is not valid JSON (or, with strict=true, an NDJSON line is not), a compressed body "
        "does not inflate, or ?alpha= or ?strict= has a value they do not take or is given twice",
        ("malformed_json", "bad_alpha", "bad_strict", "bad_encoding"),
    ),
    401: ("A token is required: send Authorization: Bearer <token>", ("unauthorized",)),
    403: (
        "The bearer token is not valid for this call; or the request came from a web page: its Origin "
        "is another origin, or its Host is not a name of a service that listens on loopback only",
        ("forbidden", "cross_origin", "unknown_host"),
    ),
    408: (
        "The body did not arrive within body_timeout_seconds of the headers (the connection is closed)",
        ("body_timeout",),
    ),
    413: (
        "The body is larger than the limit (as sent, or once decompressed), or holds more events than a request may",
        ("body_too_large", "too_many_events"),
    ),
    415: (
        "The Content-Type or the Content-Encoding is not accepted (the latter answered with Accept-Encoding)",
        ("unsupported_media_type", "unsupported_encoding"),
    ),
    422: (
        "The body is JSON but neither an object nor an array (or, with strict=true, an element or an NDJSON "
        "line is not an object: index or line says which)",
        ("not_an_event",),
    ),
    503: (
        "The service holds as many events as it admits at once: try again after Retry-After seconds",
        ("overloaded",),
    ),
}
WEB_PAGE_403 = (
    "The request came from a web page: its Origin is another origin, or its Host is not a name of a "
    "service that listens on loopback only",
    ("cross_origin", "unknown_host"),
)
EXPECTATION_417 = (
    "An Expect header other than 100-continue (the only expectation the service meets; the connection "
    "is closed)",
    ("expectation_failed",),
)
VECTOR_422 = (
    "The body is JSON but neither an object nor an array; or the downstream refused the enriched batch "
    "for what it holds (HTTP 400, 413 or 422: a sink after it rejected the events), as it would again",
    ("not_an_event", "downstream_rejected"),
)
VECTOR_503 = (
    "The downstream did not take the enriched batch (refused, failed, timed out, unreachable, or none is "
    "set), or the service holds as many events as it admits: send the batch again (Vector does)",
    ("downstream_unavailable", "no_downstream", "overloaded"),
)
OPENSEARCH_422 = ("The body is JSON but its event is not an object", ("not_an_event",))
ADMIN_ERRORS: dict[int, tuple[str, tuple[str, ...]]] = {
    401: SCORING_ERRORS[401],
    403: (
        "The bearer token is not valid for this call, or the service listens beyond loopback "
        "without an admin token (admin calls are then refused); or the request came from a web page: "
        "its Origin is another origin, or its Host is not a name of a service that listens on loopback only",
        ("forbidden", "cross_origin", "unknown_host"),
    ),
    409: (
        "The reload failed (a bundle or the registry): the serving models are kept; or only the "
        "challenger failed, and the champion serves alone",
        ("reload_failed",),
    ),
}
# answered on any path, so in no operation: documented once, in components.responses
ANY_PATH_ERRORS: dict[int, tuple[str, tuple[str, ...]]] = {
    404: ("The service has no such path", ("not_found",)),
    405: ("The path does not take this method; Allow lists the methods it takes", ("method_not_allowed",)),
}
RESPONSE_HEADERS: dict[int, dict[str, Any]] = {
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    },
    415: {
        "Accept-Encoding": {
            "description": "With unsupported_encoding: the encodings accepted",
            "schema": {"type": "string"},
        }
    },
    405: {
        "Allow": {
            "description": "The methods the path takes",
            "required": True,
            "schema": {"type": "string"},
        }
    },
}
RESPONSE_NAMES = {404: "NotFound", 405: "MethodNotAllowed"}  # components.responses


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error_response(status: int, description: str, codes: tuple[str, ...]) -> dict[str, Any]:
    """An error response: the common shape, with this status and these codes."""
    narrowed = {
        "properties": {"error": {"properties": {"status": {"const": status}, "code": {"enum": list(codes)}}}}
    }
    response: dict[str, Any] = {
        "description": f"{description} (code: {', '.join(codes)})",
        "content": _json_content({"allOf": [_ref("ErrorResponse"), narrowed]}),
    }
    if status in RESPONSE_HEADERS:
        response["headers"] = RESPONSE_HEADERS[status]
    return response


def _errors(table: dict[int, tuple[str, tuple[str, ...]]]) -> dict[str, Any]:
    """The responses of ``table``, by status."""
    return {str(status): _error_response(status, *spec) for status, spec in table.items()}


@cache
def _definitions() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = definitions["$defs"]
    return schemas


def _strict_pattern() -> str:
    """STRICT_VALUES in any letter case, as an ECMA-262 pattern (which has no case-insensitive flag)."""
    spelled = ("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in value) for value in STRICT_VALUES)
    return f"^(?:{'|'.join(spelled)})$"


def _parameters(settings: Settings, smallest_alpha: float | None) -> list[dict[str, Any]]:
    floor = {} if smallest_alpha is None else {"minimum": smallest_alpha}
    return [
        {
            "name": "alpha",
            "in": "query",
            "schema": {
                "type": "number",
                "exclusiveMinimum": 0,
                **floor,
                "exclusiveMaximum": 1,
                "default": settings.alpha,
            },
            "description": (
                "Target false-positive rate for this request (else the service's setting), a decimal "
                "number such as 0.01 or 1e-3; 400 bad_alpha outside (0, 1)"
                + (
                    ", below the smallest p-value the serving model's calibration can give (1 / (n + 1) "
                    "for n calibration events: the minimum here; nothing could be flagged below it)"
                    if smallest_alpha is not None
                    else ""
                )
                + ", or written otherwise"
            ),
        },
        {
            "name": "strict",
            "in": "query",
            "schema": {
                "anyOf": [
                    {"type": "boolean"},
                    {"type": "string", "pattern": _strict_pattern(), "examples": list(STRICT_VALUES)},
                ],
                "default": False,
            },
            "description": (
                "Fail the whole request (422, or 400 for malformed NDJSON) on the first item that is not an "
                "event, instead of answering an error in its place. A boolean: true, false, 1, 0, yes or no, "
                "in any letter case; any other value (an empty one, null) is 400 bad_strict"
            ),
        },
    ]


def _request_body(settings: Settings) -> dict[str, Any]:
    return {
        "description": (
            f"One OCSF event (a JSON object), a JSON array of up to {settings.max_events:,} of them, or "
            "NDJSON (application/x-ndjson; application/ndjson and application/jsonl are read the same "
            "way): one event a line. application/json (or text/json) is assumed without "
            f"a Content-Type. At most {settings.max_body_bytes:,} bytes, "
            "as sent and once decompressed: Content-Encoding gzip or deflate is inflated; any other is 415. "
            "An element or a line that is not an event gets an error in its place (unless strict=true)"
        ),
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_ref("Event"), _ref("EventArray")]},
                "example": EXAMPLE_EVENT,
            },
            "application/x-ndjson": {
                "schema": {
                    "type": "array",
                    "items": _ref("Event"),
                    "maxItems": settings.max_events,
                    "description": (
                        "The events, one JSON object a line (OpenAPI 3.2 would say itemSchema). Blank lines "
                        "are skipped; the others keep their numbers in errors. A line that is not valid JSON "
                        "or not an object gets an error in its place (or, with strict=true, fails the "
                        "request: 400 or 422)"
                    ),
                },
            },
        },
    }


def _not_an_event(field: str) -> dict[str, Any]:
    """What /v1/enrich answers for an item that is not an event: the item kept as it came, under
    _raw, beside its error (settings refuse an anomaly field named _raw)."""
    properties: dict[str, Any] = {
        RAW: {
            "not": {"type": "object"},
            "description": (
                "The item as it came: an array element as its JSON value, an NDJSON line as its text "
                "(without its line ending; a byte that is not UTF-8 as U+FFFD). A line whose text, "
                "JSON-escaped, would make the answer larger than the body limit is kept cut to what "
                "fits, and its error's message says so"
            ),
        },
        field: _ref("ItemError"),
    }
    return {
        "type": "object",
        "description": f"An item that is not an event: itself, under {RAW!r}, and why, under {field!r}",
        "required": sorted((RAW, field)),
        "properties": properties,
        "additionalProperties": False,
    }


def _security(settings: Settings, *, admin: bool) -> dict[str, Any]:
    """The operation's ``security``: which token, if any, the service as configured requires."""
    if admin and settings.admin_token:
        return {"security": [{"adminToken": []}]}
    if admin and not settings.loopback_only:
        return {}  # refused (403) whatever the token: the service has no admin token
    return {"security": [{"apiToken": []}]} if settings.api_token else {}


def openapi(settings: Settings | None = None, smallest_alpha: float | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service as ``settings`` configure it (default: the defaults),
    with the smallest ``?alpha=`` the serving models can flag at, when known."""
    if settings is None:
        settings = Settings.model_construct()
    field = settings.anomaly_field
    schemas = {
        **_definitions(),
        "Event": EVENT_SCHEMA,
        "EventArray": {
            "type": "array",
            "items": _ref("Event"),
            "maxItems": settings.max_events,
            "description": "Events; an element that is not an object gets an error in its place (or, with strict=true, fails the request)",
        },
        "EnrichedEvent": {
            "type": "object",
            "description": f"The event as sent, every field as it came, with {field!r} added",
            "required": [field],
            "properties": {field: _ref("Anomaly")},
            "additionalProperties": True,
        },
        "NotAnEvent": _not_an_event(field),
        "EnrichedItem": {
            "oneOf": [_ref("EnrichedEvent"), _ref("NotAnEvent")],
            "description": "An event enriched, or what came in its place kept with its error",
        },
    }
    scoring = {
        "parameters": _parameters(settings, smallest_alpha),
        "requestBody": _request_body(settings),
        **_security(settings, admin=False),
    }
    guarded = _security(settings, admin=False)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "ocsf-anomaly",
            "version": scorer.__version__,
            "description": (
                "Scores OCSF security events for anomalies and enriches them. Every 4xx and 5xx answers "
                "the same JSON shape (ErrorResponse); a path the service does not have is 404 and a method "
                "a path does not take is 405, with Allow (components.responses)."
            ),
        },
        "paths": {
            "/v1/score": {
                "post": {
                    "summary": "Score events: one result per event, in order",
                    "operationId": "score",
                    **scoring,
                    "responses": {
                        "200": {
                            "description": "One result per item, in order: the anomaly object, or why the item is not an event",
                            "content": _json_content(_ref("ScoreResponse")),
                        },
                        **_errors(SCORING_ERRORS),
                    },
                }
            },
            "/v1/enrich": {
                "post": {
                    "summary": f"The same events, in the same shape, each with the {field!r} object added",
                    "operationId": "enrich",
                    **scoring,
                    "responses": {
                        "200": {
                            "description": "An object for an object, an array for an array, NDJSON for NDJSON",
                            "content": {
                                **_json_content(
                                    {
                                        "oneOf": [
                                            _ref("EnrichedEvent"),
                                            {"type": "array", "items": _ref("EnrichedItem")},
                                        ]
                                    }
                                ),
                                "application/x-ndjson": {
                                    "schema": {
                                        "type": "array",
                                        "items": _ref("EnrichedItem"),
                                        "description": "One EnrichedItem a line, for each line sent",
                                    }
                                },
                            },
                        },
                        **_errors(SCORING_ERRORS),
                    },
                }
            },
            "/v1/integrations/opensearch": {
                "post": {
                    "summary": "One document from an OpenSearch ingest pipeline (ml_inference) → its verdict, flat",
                    "operationId": "opensearch",
                    "parameters": _parameters(settings, smallest_alpha)[:1],
                    "requestBody": {
                        "description": (
                            "What the connector's request_body sends: the OCSF document under event. "
                            "OpenSearch's metadata fields beside its source (_index, _id, _version, …) are "
                            f"ignored. At most {settings.max_body_bytes:,} bytes, as sent and once "
                            "decompressed (gzip or deflate)"
                        ),
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["event"],
                                    "properties": {"event": _ref("Event")},
                                },
                                "example": {"event": EXAMPLE_EVENT},
                            }
                        },
                    },
                    **_security(settings, admin=False),
                    "responses": {
                        "200": {
                            "description": "The verdict, every field always present",
                            "content": _json_content(_ref("OpenSearchVerdict")),
                        },
                        **_errors({s: SCORING_ERRORS[s] for s in (400, 401, 403, 408, 413, 415, 503)}),
                        **_errors({422: OPENSEARCH_422}),
                    },
                }
            },
            "/v1/integrations/vector": {
                "post": {
                    "summary": (
                        "A Vector http sink's batch, enriched as /v1/enrich does and forwarded in order to the "
                        "http_server source OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL; 200 once it holds them"
                    ),
                    "operationId": "vector",
                    # scored at any alpha, the floor too: Vector drops a batch answered 400
                    "parameters": _parameters(settings, None)[:1],
                    "requestBody": {
                        **_request_body(settings),
                        "description": (
                            "As Vector's http sink sends it: a JSON array of events (codec json) or NDJSON "
                            "(framing newline_delimited). An element that is not an object, or a line that is "
                            'not JSON, is forwarded as {"message": <it>, "' + field + '": {"error": ...}}'
                        ),
                    },
                    **_security(settings, admin=False),
                    "responses": {
                        "200": {
                            "description": "The downstream holds the enriched batch (or held it already)",
                            "content": _json_content(_ref("VectorAnswer")),
                        },
                        **_errors({s: SCORING_ERRORS[s] for s in (400, 401, 403, 408, 413, 415)}),
                        **_errors({422: VECTOR_422, 503: VECTOR_503}),
                    },
                },
                "head": {
                    "summary": "Vector's health check (no token needed): up, with a downstream to forward to",
                    "operationId": "vectorHealth",
                    "responses": {
                        "200": {"description": "up, and OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL is set"},
                        "503": {
                            "description": (
                                "No downstream is set (code: no_downstream, as every batch would be "
                                "answered): set OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL"
                            ),
                            "headers": RESPONSE_HEADERS[503],
                        },
                    },
                },
            },
            "/healthz": {
                "get": {
                    "summary": "Alive",
                    "operationId": "healthz",
                    "responses": {"200": {"description": "alive", "content": _json_content(_ref("Health"))}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Ready: a model is loaded",
                    "operationId": "readyz",
                    "responses": {
                        "200": {"description": "ready", "content": _json_content(_ref("Ready"))},
                        "503": {"description": "not ready", "content": _json_content(_ref("NotReady"))},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "summary": "What serves: champion, challenger, split, shadow, and where they come from",
                    "operationId": "models",
                    **guarded,
                    "responses": {
                        "200": {
                            "description": "the serving models",
                            "content": _json_content(_ref("Models")),
                        },
                        **_errors({s: SCORING_ERRORS[s] for s in (401, 403)}),
                    },
                }
            },
            "/v1/models/reload": {
                "post": {
                    "summary": "Ask the registry (or the directories) again and swap in what changed (admin)",
                    "operationId": "reload",
                    **_security(settings, admin=True),
                    "responses": {
                        "200": {
                            "description": "versions before and after",
                            "content": _json_content(_ref("Reload")),
                        },
                        **_errors(ADMIN_ERRORS),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": _json_content(
                                {"type": "object", "required": ["openapi", "info", "paths", "components"]}
                            ),
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "responses": {
                RESPONSE_NAMES[s]: _error_response(s, *spec) for s, spec in ANY_PATH_ERRORS.items()
            },
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "OCSF_ANOMALY_API_TOKEN: scoring calls and /v1/models when it is set",
                },
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "OCSF_ANOMALY_ADMIN_TOKEN: admin calls when it is set; without it, admin calls are "
                        "accepted only on loopback, with the API token when one is set"
                    ),
                },
            },
        },
    }
    paths: dict[str, dict[str, Any]] = document["paths"]
    for operations in paths.values():  # any request may carry an Expect header, or come from a page
        for operation in operations.values():
            operation["responses"].update(_errors({417: EXPECTATION_417}))
            operation["responses"].setdefault("403", _errors({403: WEB_PAGE_403})["403"])
    for operations in paths.values():  # aiohttp answers HEAD wherever it answers GET
        get = operations.get("get")
        if get is not None and "head" not in operations:
            operations["head"] = {
                **{k: v for k, v in get.items() if k not in ("summary", "operationId", "responses")},
                "summary": f"{get['summary']}: GET's status and headers, no body",
                "operationId": f"{get['operationId']}Head",
                "responses": {
                    status: {"description": r["description"]} for status, r in get["responses"].items()
                },
            }
    return copy.deepcopy(document)  # the caller's to change: nothing shared with the module or the next call
