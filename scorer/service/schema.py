"""The API's JSON shapes as pydantic models, and the OpenAPI 3.1 document generated from them.

Handlers build plain dicts for speed; tests validate real responses against this document, so
the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

import scorer


class Reason(BaseModel):
    """A field on which the event differs from its nearest normal events."""

    field: str = Field(description="Dotted OCSF path (derived features carry a #kind suffix)")
    value: Any = Field(description="The event's value")
    typical: Any = Field(description="The neighbours' typical value (median, or most common category)")
    deviation: float = Field(
        description="Gap in robust standard deviations, or share of neighbours that differ × 3"
    )


class ModelRef(BaseModel):
    name: str
    version: str
    variant: str = Field(description="champion or challenger")


class Anomaly(BaseModel):
    """The verdict on one event."""

    model_config = ConfigDict(extra="forbid")

    score: float = Field(description="Higher is more anomalous")
    p_value: float = Field(
        gt=0, le=1, description="Share of held-out normal events that scored at least as high"
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
    code: str
    message: str
    line: int | None = Field(None, description="NDJSON line, 1-based")
    index: int | None = Field(None, description="Array index, 0-based")


class ItemError(BaseModel):
    """In place of a result: why this item of the request is not an event."""

    model_config = ConfigDict(extra="forbid")

    error: ItemErrorDetail


class ScoreResponse(BaseModel):
    results: list[Anomaly | ItemError] = Field(description="One per event, in request order")


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    line: int | None = None
    index: int | None = None


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    model: dict[str, str] | None
    redis: str = Field(description="ok, degraded or disabled")


class ServedModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = Field(description="Registry version, or the bundle version of a directory")
    bundle_version: str = Field(description="Digest of the bundle's files")
    source: str = Field(description="models:/NAME/VERSION, or the bundle directory")


class Models(BaseModel):
    model_config = ConfigDict(extra="forbid")

    champion: ServedModel
    challenger: ServedModel | None
    split: float = Field(description="Share of entities routed to the challenger")
    shadow: bool = Field(description="Whether the challenger also scores every event, unreturned")
    source: str = Field(description="registry or directory")
    registry: str | None = Field(description="The registry's URI, password hidden")
    poll_seconds: float = Field(description="How often the aliases are checked (0: only on reload)")


class Versions(BaseModel):
    champion: str
    challenger: str | None


class Reload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reloaded: bool
    from_: Versions = Field(alias="from")
    to: Versions


MODELS: tuple[type[BaseModel], ...] = (
    ScoreResponse,
    ErrorResponse,
    Health,
    Ready,
    Anomaly,
    ItemError,
    Models,
    Reload,
)
JSON_BODY = {
    "description": "One OCSF event (object), an array of them, or NDJSON",
    "required": True,
    "content": {
        "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {}}]}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}
QUERY = [
    {
        "name": "alpha",
        "in": "query",
        "schema": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "description": "Target false-positive rate for this request",
    },
    {
        "name": "strict",
        "in": "query",
        "schema": {"type": "boolean"},
        "description": "Fail the whole request on one bad event",
    },
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "error", "content": {"application/json": {"schema": _ref("ErrorResponse")}}}
        for s in statuses
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service."""
    _, definitions = models_json_schema(
        [(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}"
    )
    scoring_errors = _errors(400, 401, 403, 413, 415, 422, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ocsf-anomaly",
            "version": scorer.__version__,
            "description": "Scores OCSF security events for anomalies and enriches them.",
        },
        "paths": {
            "/v1/score": {
                "post": {
                    "summary": "Score events: one result per event, in order",
                    "parameters": QUERY,
                    "requestBody": JSON_BODY,
                    "responses": {
                        "200": {
                            "description": "results",
                            "content": {"application/json": {"schema": _ref("ScoreResponse")}},
                        },
                        **scoring_errors,
                    },
                }
            },
            "/v1/enrich": {
                "post": {
                    "summary": "The same events, in the same shape, each with the anomaly object added",
                    "parameters": QUERY,
                    "requestBody": JSON_BODY,
                    "responses": {
                        "200": {
                            "description": "enriched events",
                            "content": {
                                "application/json": {
                                    "schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}
                                },
                                "application/x-ndjson": {"schema": {"type": "string"}},
                            },
                        },
                        **scoring_errors,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Alive",
                    "responses": {
                        "200": {
                            "description": "alive",
                            "content": {"application/json": {"schema": _ref("Health")}},
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Ready: a model is loaded",
                    "responses": {
                        "200": {
                            "description": "ready",
                            "content": {"application/json": {"schema": _ref("Ready")}},
                        },
                        "503": {
                            "description": "not ready",
                            "content": {"application/json": {"schema": _ref("Ready")}},
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "summary": "What serves: champion, challenger, split, shadow, and where they come from",
                    "responses": {
                        "200": {
                            "description": "the serving models",
                            "content": {"application/json": {"schema": _ref("Models")}},
                        },
                        **_errors(401, 403),
                    },
                }
            },
            "/v1/models/reload": {
                "post": {
                    "summary": "Ask the registry (or the directories) again and swap in what changed (admin)",
                    "responses": {
                        "200": {
                            "description": "versions before and after",
                            "content": {"application/json": {"schema": _ref("Reload")}},
                        },
                        **_errors(401, 403, 409),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": definitions["$defs"]},
    }
