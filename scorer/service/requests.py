"""Request bodies → events: one OCSF object, a JSON array of them, or NDJSON.

Whatever the body, the result is one item per event in order: the event, or the reason it is
not one (with its array index or NDJSON line), so that one bad event does not fail the others.
A compressed body (``Content-Encoding: gzip`` or ``deflate``) is inflated by :func:`inflate`,
never beyond the body limit.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import Gauge

from scorer.io import UTF8_BOM, json_kind, loads
from scorer.service.errors import ApiError

JSON_TYPES = frozenset({"application/json", "text/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})  # Content-Encodings inflated; identity is read as is
RAW = "_raw"  # where /v1/enrich keeps what came in place of an event, as `score` keeps a bad line
# JSON objects and arrays in one body, at most: parsing holds the event loop about 0.2 µs for each
# (a million, 0.2 s), and 16 MiB of "[]," is 5.6 million (2.6 s, every other request waiting). Real
# OCSF events hold at least 27 bytes per object or array (the densest of ../shared/data/ocsf_events),
# so a body within the 16 MiB limit holds at most about 620,000 of them.
MAX_CONTAINERS = 1_000_000
HELD = web.RequestKey("body_bytes", int)  # what a request holds of the BodyBudget


class BodyBudget:
    """Bytes of request bodies held at once across requests (read, inflated and parsed, until the
    request is answered), at most ``limit``: past it a request is answered 503 at once, unread, so
    that a flood of large bodies cannot take the memory (each is bounded alone). A request that is
    alone is always admitted: every request within the body limit can be served."""

    def __init__(self, limit: int, gauge: Gauge | None = None) -> None:
        self.limit = limit
        self.held = 0
        self.gauge = gauge  # shows ``held``

    def hold(self, request: web.Request, size: int) -> None:
        """``request`` holds ``size`` bytes now, instead of what it held; ApiError 503 when that is
        more and would pass the limit beside what other requests hold."""
        own = request.get(HELD, 0)
        if size > own:
            self.check(size, self.others(request))
        self._set(self.held + size - own)
        request[HELD] = size

    def others(self, request: web.Request) -> int:
        """Bytes held by the requests but ``request``."""
        held: int = self.held - request.get(HELD, 0)
        return held

    def check(self, size: int, others: int | None = None) -> None:
        """ApiError 503 unless ``size`` bytes fit beside ``others`` (default: all that is held)."""
        others = self.held if others is None else others
        if others and others + size > self.limit:
            raise ApiError(
                503,
                "overloaded",
                f"the service is busy: {others:,} bytes of other requests' bodies are held, and {size:,} "
                f"more would pass the bound of {self.limit:,}; try again shortly",
                headers={"Retry-After": "1"},
                close=True,  # the body was not read: its connection cannot carry another request
            )

    def reserve(self, request: web.Request, sent: int, most: int) -> int:
        """``request`` holds ``sent`` bytes and room for up to ``most`` more (what its compressed
        body may inflate into), or for what the budget has left beside the others' bodies when that
        is less (ApiError 503 when nothing is left); returns the room held."""
        others = self.others(request)
        room = most if not others else min(most, self.limit - others - sent)
        if room < 1:
            self.check(sent + most, others)  # raises: the budget is spent
        self.hold(request, sent + room)
        return room

    def release(self, request: web.Request) -> None:
        self._set(self.held - request.pop(HELD, 0))

    def _set(self, held: int) -> None:
        self.held = held
        if self.gauge is not None:
            self.gauge.set(held)


def refuse_too_complex(body: bytes) -> None:
    """413 for a body of more than MAX_CONTAINERS objects and arrays (counted by their opening
    brackets, strings' too: an overcount only), before it is parsed. Counted only where it could be
    so: an object or array takes at least two bytes."""
    if len(body) > 2 * MAX_CONTAINERS and body.count(b"{") + body.count(b"[") > MAX_CONTAINERS:
        raise ApiError(
            413,
            "too_complex",
            f"the body holds more than {MAX_CONTAINERS:,} JSON objects and arrays: parsing it would "
            "hold up every other request; send fewer events at once",
        )


@dataclass(frozen=True)
class Item:
    """One event of a request, or why it is not one."""

    event: dict[str, Any] | None
    error: dict[str, Any] | None = None
    line: int | None = None  # NDJSON: the event's line, 1-based
    # what came in place of an event: the array element (a JSON value), or the NDJSON line's text
    # (without its line ending; bytes that are not UTF-8 replaced, as `score` keeps a bad line)
    raw: Any = None
    size: int | None = None  # with the line's text: the bytes it took in the body


@dataclass(frozen=True)
class Batch:
    """The events of one request and the shape they came in (to answer in the same shape)."""

    items: list[Item]
    shape: str  # "object", "array" or "ndjson"
    size: int = 0  # bytes of the body parsed (once inflated)


NDJSON_HINT = " (for JSON Lines, one event per line, send Content-Type: application/x-ndjson)"


def parse_body(body: bytes, content_type: str, *, max_events: int, strict: bool) -> Batch:
    """Parse a request body; raises ApiError for what makes the whole request unusable. A UTF-8 byte
    order mark opening it is read past, as files are read (RFC 8259 lets a reader ignore one)."""
    body = body.removeprefix(UTF8_BOM)
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
        value = loads(body)
    except orjson.JSONDecodeError as exc:
        # a second document after the first, on a line of its own: JSON Lines sent as JSON
        hint = NDJSON_HINT if "content after document" in str(exc) and exc.lineno > 1 else ""
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}{hint}") from None
    if isinstance(value, dict):
        return Batch([Item(value)], "object", len(body))
    if not isinstance(value, list):
        raise ApiError(
            422,
            "not_an_event",
            f"expected an OCSF event (a JSON object) or an array of them, got {json_kind(value)}",
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
        message = f"element {index} is {json_kind(element)}, not an object"
        if strict:
            raise ApiError(422, "not_an_event", message, index=index)
        items.append(Item(None, {"code": "not_an_event", "message": message, "index": index}, raw=element))
    return Batch(items, "array", len(body))


# Where a line that holds more than whitespace starts: tried at line starts only, with its leading
# whitespace taken possessively, so that finding lines costs time linear in the body however it is
# laid out; the rest of each such line is skipped with find(), not scanned by the expression.
TEXT_LINE_START = re.compile(rb"^[ \t\r\f\v]*+[^ \t\r\f\v\n]", re.MULTILINE)


def _text_lines(body: bytes, most: int) -> list[tuple[int, bytes]]:
    """The lines of ``body`` that are not blank, with their 1-based numbers; at most ``most`` + 1
    (one more says there are too many). A Python loop over every line held the event loop 1.2-1.5 s
    for 16 MiB of blank lines or of ``{}``."""
    lines: list[tuple[int, bytes]] = []
    number, counted, position = 1, 0, 0
    while len(lines) <= most:
        match = TEXT_LINE_START.search(body, position)
        if match is None:
            break
        start = match.start()
        end = body.find(b"\n", match.end())
        end = len(body) if end < 0 else end
        number += body.count(b"\n", counted, start)
        counted = start
        lines.append((number, body[start:end]))
        position = end + 1
    return lines


def _ndjson(body: bytes, *, max_events: int, strict: bool) -> Batch:
    lines = _text_lines(body, max_events)
    if len(lines) > max_events:
        raise ApiError(413, "too_many_events", f"more than {max_events:,} lines in one request")
    items = []
    for number, raw in lines:  # blank lines are skipped; the others keep their line numbers
        error: dict[str, Any] | None = None
        try:
            value = loads(raw)
        except orjson.JSONDecodeError as exc:
            error = {
                "code": "malformed_json",
                "message": f"line {number} is not valid JSON: {exc}",
                "line": number,
            }
        else:
            if isinstance(value, dict):
                items.append(Item(value, line=number))
                continue
            error = {
                "code": "not_an_event",
                "message": f"line {number} is {json_kind(value)}, not an object",
                "line": number,
            }
        if strict:
            status = 400 if error["code"] == "malformed_json" else 422
            raise ApiError(status, error["code"], error["message"], line=number)
        text = raw.rstrip(b"\r")  # a CRLF line's text, as `score` reads a line
        items.append(Item(None, error, line=number, raw=text.decode("utf-8", "replace"), size=len(text)))
    return Batch(items, "ndjson", len(body))


# Bytes of the body handed to the decoder at a time: what follows a member's end is copied to start
# the next one, so a body of many tiny members costs about its size × this / 40 in copies.
INFLATE_STEP = 4096


def inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """``body`` decoded from its ``encoding`` (one of ENCODINGS), refused (413) as soon as it would
    pass ``max_bytes``: a small body that inflates to gigabytes is never inflated further.

    The body is handed to the decoder a step at a time, so that what follows the end of a gzip
    member (a body may hold several, one after the other) is never more than a step: copying the
    whole rest after each member made a body of many tiny members cost time quadratic in its size
    (8 MiB of empty members: 44 s; now 16 MiB of them take about a second of a thread).
    """
    # gzip (31); deflate is a zlib stream (15), though some clients send it raw (-15): its first byte tells
    wbits = 31 if encoding != "deflate" else 15 if body[:1] and body[0] & 0x0F == 8 else -15
    view = memoryview(body)
    parts: list[bytes] = []
    size, offset = 0, 0
    decoder = zlib.decompressobj(wbits)
    pending: bytes | memoryview = b""
    while True:
        if not pending:
            if offset >= len(body):
                break
            pending, offset = view[offset : offset + INFLATE_STEP], offset + INFLATE_STEP
        try:
            part = decoder.decompress(pending, max_bytes + 1 - size)
        except zlib.error as exc:
            raise ApiError(400, "bad_encoding", f"the body is not valid {encoding}: {exc}") from None
        parts.append(part)
        size += len(part)
        if size > max_bytes:
            raise ApiError(
                413,
                "body_too_large",
                f"request body too large: at most {max_bytes:,} bytes once decompressed",
            )
        pending = b""  # below the limit, the decoder took the whole step
        if decoder.eof:  # a member ended: what follows it starts the next one
            pending = decoder.unused_data
            if not pending and offset >= len(body):
                return b"".join(parts)
            decoder = zlib.decompressobj(wbits)
    raise ApiError(400, "bad_encoding", f"the body is not valid {encoding}: it ends early")
