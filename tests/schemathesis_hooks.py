"""Schemathesis hooks for tests/test_openapi.py (loaded by the CLI through ``SCHEMATHESIS_HOOKS``).

The document describes an NDJSON body as the array of its events (what OpenAPI 3.2 calls
``itemSchema``); schemathesis knows no NDJSON, so these write such an array one JSON value a line
and read an NDJSON answer back into an array to check it against its schema.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

NDJSON = "application/x-ndjson"


@schemathesis.serializer(NDJSON)
def to_ndjson(ctx: Any, value: Any) -> bytes:
    values = value if isinstance(value, list) else [value]  # a negative case may not be an array
    return b"".join(json.dumps(v).encode() + b"\n" for v in values)


@schemathesis.deserializer(NDJSON)
def from_ndjson(ctx: Any, response: Any) -> list[Any]:
    return [json.loads(line) for line in response.content.splitlines() if line.strip()]
