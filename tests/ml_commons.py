"""What OpenSearch's ML Commons does between an ingest document and a remote model, for tests where
no OpenSearch node can run (no Debian package, no image registry to pull one from).

Read from ML Commons' source (2.19 and 3.x: MLInferenceIngestProcessor, ModelExecutor,
ConnectorUtils.escapeRemoteInferenceInputData, HttpConnector.createPayload, StringUtils) and
written again here, step by step:

1. ``input_map`` (model parameter ← document path): a dotted path present in the document, else a
   JSONPath over the document's source *and metadata* (``"$"`` is all of it, ``_index``, ``_id``
   and ``_version`` included). The value becomes text: a string as it is, anything else as JSON
   (Jackson, compact).
2. Each parameter that is not a JSON object or array (org.json's test) is escaped as a JSON string
   body (Apache commons-text ``escapeJson``, which also escapes ``/``), without quotes.
3. The connector's ``request_body`` (a string) gets ``${parameters.<name>}`` replaced by the text
   (commons-text ``StringSubstitutor``: an unknown name is left as it is); the result must be JSON.
4. The remote reply, a JSON object, is read as a map (gson: every number a double, before 3.5).
5. ``output_map`` (document field ← reply path): the reply's key, else a JSONPath into it; written
   at the dotted document path (parents created), unless the field already exists (2.16+ without
   ``override``; before 2.16 such a field fails the document); when the document has every one of
   them, the model is not called at all (2.16+, ``MLInferenceIngestProcessor.processPredictions``);
   a missing path fails the document.
6. Each value is written through OpenSearch's ``ValueSource.wrap`` (MLInferenceIngestProcessor's
   appendFieldValue): a string holding ``{{`` (in a list too) is compiled as a Mustache template and
   rendered against the document. Not rendered here: such a value fails the document, as an
   unclosed section does there, and stands for any other that would be indexed changed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dotted import put

METADATA = ("_index", "_id", "_version", "_routing")


class MLCommonsError(Exception):
    """Where ML Commons would fail the document (the pipeline's on_failure then runs)."""


def parameters(source: dict[str, Any], metadata: dict[str, Any], input_map: dict[str, str]) -> dict[str, str]:
    """Steps 1 and 2: the model parameters of one document."""
    out: dict[str, str] = {}
    for name, path in input_map.items():
        found, value = _dotted(source, path)
        if not found:
            if path != "$":  # the only JSONPath the tests' pipelines use
                raise MLCommonsError(f"Cannot find field name defined from input map: {path}")
            value = {**source, **metadata}
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        out[name] = text if _is_json_object_or_array(text) else escape_json(text)
    return out


def render(request_body: str, params: dict[str, str]) -> str:
    """Step 3: the connector's request body for ``params``; MLCommonsError when it is not JSON."""
    payload = re.sub(r"\$\{parameters\.([^}]+)\}", lambda m: params.get(m.group(1), m.group(0)), request_body)
    try:
        json.loads(payload)
    except ValueError:
        raise MLCommonsError(f"Invalid payload: {payload}") from None
    return payload


def read_reply(body: bytes) -> dict[str, Any]:
    """Step 4: the reply as ML Commons holds it (numbers as doubles)."""
    value = json.loads(body, parse_int=float)
    if not isinstance(value, dict):
        raise MLCommonsError("the remote reply is not a JSON object")
    return value


def apply_output_map(
    document: dict[str, Any], reply: dict[str, Any], output_map: dict[str, str], *, override: bool = False
) -> None:
    """Step 5: write the mapped reply fields into ``document``; one that exists is kept unless the
    processor says ``override`` (2.16 and later; false by default, and before 2.16 always)."""
    for field, path in output_map.items():
        if path not in reply:
            raise MLCommonsError(f"model inference output cannot find field name: {path}")
        if _dotted(document, field)[0] and not override:
            continue  # exists: not overwritten
        value = reply[path]
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and "{{" in text:
                raise MLCommonsError(f"{field}: {text!r} would be compiled as a Mustache template")
        put(document, field, value)


def has_every_output(document: dict[str, Any], output_map: dict[str, str]) -> bool:
    """Step 5's shortcut: the document holds every mapped field, and (without ``override``) the
    model is not called."""
    return all(_dotted(document, field)[0] for field in output_map)


def escape_json(text: str) -> str:
    """Apache commons-text StringEscapeUtils.escapeJson."""
    named = {
        '"': '\\"',
        "\\": "\\\\",
        "/": "\\/",
        "\b": "\\b",
        "\f": "\\f",
        "\n": "\\n",
        "\r": "\\r",
        "\t": "\\t",
    }
    return "".join(
        named.get(c, f"\\u{ord(c):04X}" if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c) for c in text
    )


def _is_json_object_or_array(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict | list)


def _dotted(document: dict[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value
