"""Request bodies → events: one OCSF object, a JSON array of them, or NDJSON.

Whatever the body, the result is one item per event in order: the event, or the reason it is
not one (with its array index or NDJSON line), so that one bad event does not fail the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from scorer.service.errors import ApiError

JSON_TYPES = frozenset({"application/json", "text/json"})
NDJSON_TYPES = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq"}
)


@dataclass(frozen=True)
class Item:
    """One event of a request, or why it is not one."""

    event: dict[str, Any] | None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Batch:
    """The events of one request and the shape they came in (to answer in the same shape)."""

    items: list[Item]
    shape: str  # "object", "array" or "ndjson"


def parse_body(body: bytes, content_type: str, *, max_events: int, strict: bool) -> Batch:
    """Parse a request body; raises ApiError for what makes the whole request unusable."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in NDJSON_TYPES:
        return _ndjson(body, max_events=max_events, strict=strict)
    if kind and kind not in JSON_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {kind!r} is not accepted: send application/json (an event or an array) or application/x-ndjson",
        )
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if isinstance(value, dict):
        return Batch([Item(value)], "object")
    if not isinstance(value, list):
        raise ApiError(
            422,
            "not_an_event",
            f"expected an OCSF event (a JSON object) or an array of them, got {_kind(value)}",
        )
    if len(value) > max_events:
        raise ApiError(
            413, "too_many_events", f"{len(value):,} events in one request; at most {max_events:,}"
        )
    items = []
    for index, element in enumerate(value):
        if isinstance(element, dict):
            items.append(Item(element))
            continue
        message = f"element {index} is {_kind(element)}, not an object"
        if strict:
            raise ApiError(422, "not_an_event", message, index=index)
        items.append(Item(None, {"code": "not_an_event", "message": message, "index": index}))
    return Batch(items, "array")


def _ndjson(body: bytes, *, max_events: int, strict: bool) -> Batch:
    lines = body.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last record
    if len(lines) > max_events:
        raise ApiError(413, "too_many_events", f"{len(lines):,} lines in one request; at most {max_events:,}")
    items = []
    for number, raw in enumerate(lines, start=1):
        error: dict[str, Any] | None = None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            error = {
                "code": "malformed_json",
                "message": f"line {number} is not valid JSON: {exc}",
                "line": number,
            }
        else:
            if isinstance(value, dict):
                items.append(Item(value))
                continue
            error = {
                "code": "not_an_event",
                "message": f"line {number} is {_kind(value)}, not an object",
                "line": number,
            }
        if strict:
            status = 400 if error["code"] == "malformed_json" else 422
            raise ApiError(status, error["code"], error["message"], line=number)
        items.append(Item(None, error))
    return Batch(items, "ndjson")


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
