"""Dotted paths (``a.b.c``) into nested JSON objects, as OpenSearch settings, ML Commons' output_map
and Vector's ``log_fields`` all write them."""

from __future__ import annotations

from typing import Any


def put(target: dict[str, Any], path: str, value: Any) -> None:
    """Set ``target``'s field at ``path``, making the objects on the way."""
    *parents, leaf = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        put(out, path, value)
    return out
