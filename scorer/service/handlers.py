"""The request handlers: the scoring routes (body read, inflated off the loop, parsed, scored through
the micro-batcher), health, metrics, the OpenAPI document, and the model routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, TypeVar

import orjson
from aiohttp import web

from scorer import bundle
from scorer.io import SlowPath, dumps, orjson_only
from scorer.registry import RegistryError
from scorer.service.errors import ApiError
from scorer.service.keys import (
    ANNOUNCE_RELOAD,
    BATCHER,
    BODIES,
    CACHE,
    METRICS,
    PARSING,
    SERVING,
    SETTINGS,
    SOURCE,
    SYNC_RELOAD,
)
from scorer.service.lifecycle import refresh_models
from scorer.service.metrics import CONTENT_TYPE
from scorer.service.middlewares import declared_size, refuse_declared_oversize
from scorer.service.requests import ENCODINGS, RAW, Batch, Item, inflate, parse_body, refuse_too_complex
from scorer.service.schema import openapi
from scorer.settings import masked

log = logging.getLogger("ocsf_anomaly.service")
LARGE_BODY = 1024 * 1024  # bytes; a body this large takes milliseconds to parse
T = TypeVar("T")
# 0.01, .01, 1, 1e-2: ASCII digits only. Each digit can belong to one part only: "[0-9]*\.?[0-9]+"
# tried every split of a run of digits, and 8,000 of them that end in a letter (a request line
# allows that many) held the event loop 1.0-1.4 s
DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


async def _read(request: web.Request) -> tuple[Batch, float]:
    """The request's events (an object, an array or NDJSON) and its alpha."""
    strict = FLAGS.get(request.query.get("strict", "false").lower())
    if strict is None:
        raise ApiError(400, "bad_strict", "strict is true or false (or 1 or 0, yes or no), e.g. ?strict=true")
    body, alpha = await read_body(request)
    return await parse(request, body, strict=strict), alpha


async def parse(request: web.Request, body: bytes, *, strict: bool) -> Batch:
    """``body``'s events (:func:`parsed`)."""
    read = partial(
        parse_body,
        body,
        request.headers.get("Content-Type", ""),
        max_events=request.app[SETTINGS].max_events,
        strict=strict,
    )
    return await parsed(request, len(body), read)


async def parsed(request: web.Request, size: int, read: Callable[[], T]) -> T:
    """``read()`` of a body of ``size`` bytes, in turn with other large bodies (:func:`turn_to_parse`)
    and off the event loop where orjson alone cannot read it (:func:`off_the_loop`), timed as the
    parse stage."""
    async with turn_to_parse(request, size):
        started = time.perf_counter()
        value = await off_the_loop(read)
    request.app[METRICS].stage_seconds.labels("parse").observe(time.perf_counter() - started)
    return value


async def off_the_loop(work: Callable[[], T]) -> T:
    """``work()`` (reading or writing JSON) on the event loop where orjson does it all, else again
    in a thread (SlowPath): the standard library, which reads and writes what orjson refuses, takes
    0.3-2 µs a value, and 16 KB of gzip inflating to 16 MiB of such values had held the loop
    2.5-11 s, every other request and health check waiting. In a thread the loop has its turn every
    few milliseconds (Python's switch interval); a body orjson reads costs no thread's hop (a
    threshold of 64 KiB had cost 256-event batches 2-3% of their throughput)."""
    try:
        with orjson_only():
            return work()
    except SlowPath:
        return await asyncio.get_running_loop().run_in_executor(None, work)


async def read_body(request: web.Request, *, floor: bool = True) -> tuple[bytes, float]:
    """The body as sent, inflated within the body limit (off the loop), and the request's alpha.
    ``floor``: refuse an alpha below what the serving models can flag at (the Vector hop does not:
    Vector drops a batch answered 400, and a model swapped in may raise the floor)."""
    settings = request.app[SETTINGS]
    for name in ("alpha", "strict"):  # which of two values was meant cannot be told
        if len(request.query.getall(name, ())) > 1:
            raise ApiError(
                400, f"bad_{name}", f"{name} is given more than once; give it once, e.g. ?{name}=…"
            )
    alpha = settings.alpha
    if "alpha" in request.query:
        # a plain decimal number: Python's float() also takes "0.0_1", " 0.5\n", "nan" and other
        # scripts' digits ("٠.٥")
        text = request.query["alpha"]
        alpha = float(text) if DECIMAL.fullmatch(text) else -1.0
        if not 0 < alpha < 1:
            raise ApiError(
                400, "bad_alpha", "alpha is a false-positive rate between 0 and 1, e.g. ?alpha=0.01"
            )
        smallest = request.app[SERVING].smallest_alpha(challenger_answers=_challenger_answers(request))
        if floor and alpha < smallest:  # every verdict would be "normal": say so, not a quiet day
            raise ApiError(
                400,
                "bad_alpha",
                f"alpha {alpha:g} is below the smallest p-value the serving model's calibration can give "
                f"({smallest:.3g}): nothing could be flagged; ask for alpha >= {_rounded_up(smallest)}",
            )
    encoding = request.headers.get("Content-Encoding", "").strip().lower() or "identity"
    if encoding != "identity" and encoding not in ENCODINGS:
        raise ApiError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding!r} is not accepted: send gzip, deflate or an uncompressed body",
            headers={"Accept-Encoding": "gzip, deflate"},
        )
    refuse_declared_oversize(request)
    bodies = request.app[BODIES]
    bodies.hold(request, declared_size(request))
    try:
        # as sent: compressed bodies count against the limit too; a body that stalls holds a
        # connection (and a request slot) only so long
        async with asyncio.timeout(settings.body_timeout_seconds):
            body = await request.read()
    except TimeoutError:
        log.info("%s %s: the body did not arrive in time", request.method, request.path)
        raise ApiError(
            408,
            "body_timeout",
            f"the request body did not arrive within {settings.body_timeout_seconds:g} s of its headers; "
            "send the whole body at once (Content-Length matching what is sent)",
            close=True,
        ) from None
    except ConnectionResetError:
        log.info(
            "%s %s: the client closed the connection before its body ended", request.method, request.path
        )
        raise ApiError(499, "client_closed_request", "the client closed the connection") from None
    bodies.hold(request, len(body))  # a chunked body held the limit until its size was known
    if encoding in ENCODINGS:
        # the room it may inflate into is held before it is inflated (as much as the body limit
        # allows, or what the budget has left): a body refused for the budget is not inflated first
        sent, most = len(body), settings.max_body_bytes
        room = bodies.reserve(request, sent, most)
        try:
            body = await asyncio.get_running_loop().run_in_executor(None, inflate, body, encoding, room)
        except ApiError as error:
            if error.status == 413 and room < most:  # within the limit, past what the budget had left
                bodies.check(sent + most, bodies.others(request))
            raise
        bodies.hold(request, sent + len(body))
    refuse_too_complex(body)
    return body, alpha


@contextlib.asynccontextmanager
async def turn_to_parse(request: web.Request, size: int) -> AsyncIterator[None]:
    """Parsing a large body holds the event loop for a while (orjson's reading; what only the
    standard library reads goes to a thread, :func:`off_the_loop`, and holds the interpreter
    there), so large bodies are parsed one at a time, each after the loop has polled its sockets (a
    health check never waits behind a row of them), and only while there is room for more events
    (else 503 at once, unparsed)."""
    if size <= LARGE_BODY:
        yield
        return
    async with request.app[PARSING]:
        await asyncio.sleep(0)
        request.app[BATCHER].check(1)
        yield


async def anomalies(request: web.Request, batch: Batch, alpha: float) -> list[dict[str, Any]]:
    """The anomaly object (or the error) of every item, in order."""
    events = [item.event for item in batch.items if item.event is not None]
    scored = iter(await request.app[BATCHER].score(events, alpha, gone=lambda: request.transport is None))
    return [next(scored) if item.event is not None else {"error": item.error} for item in batch.items]


def _rounded_up(number: float) -> str:
    """``number`` (> 0) to three significant digits, rounded up: a floor quoted that a client can
    send back (0.0024937 as 0.00249 was below it, and refused)."""
    step = 10.0 ** (math.floor(math.log10(number)) - 2)
    return f"{math.ceil(number / step) * step:.3g}"


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def score(request: web.Request) -> web.Response:
    """One event, a JSON array or NDJSON → ``{"results": [...]}``, one per event, in order."""
    batch, alpha = await _read(request)
    return json_response({"results": await anomalies(request, batch, alpha)})


async def enrich(request: web.Request) -> web.Response:
    """The same events, in the same shape, each with the anomaly object added; what is not an event
    kept as it came, under ``_raw``, beside its error."""
    batch, alpha = await _read(request)
    settings = request.app[SETTINGS]
    verdicts = await anomalies(request, batch, alpha)
    enriching = Enriching(settings.anomaly_field, RAW, room=settings.max_body_bytes - batch.size)
    parts = await off_the_loop(partial(enriching.parts, batch.items, verdicts))
    if batch.shape == "ndjson":
        return web.Response(body=b"".join(p + b"\n" for p in parts), content_type="application/x-ndjson")
    body = parts[0] if batch.shape == "object" else b"[" + b",".join(parts) + b"]"
    return web.Response(body=body, content_type="application/json")


TEXT_STEP = 64 * 1024  # characters of a kept line's text written at a time when it may not fit


class Enriching:
    """Each item of a request as JSON (:meth:`part`), for /v1/enrich and the Vector hop alike: an
    event with the anomaly object added as ``field``, every original field as it came, however deep
    it nests; what is not an event kept under ``kept`` (``_raw``; ``message`` for the Vector hop, as
    Vector holds text) beside its error: an array element as the JSON value it was, an NDJSON line
    as its text.

    Kept lines take no more of the answer than the body limit has room for (``room``: the limit less
    the body): JSON writes a quote or a backslash of a line in two bytes, a control character in
    six, and a byte that is not UTF-8 becomes U+FFFD's three, so a body of such lines within the
    limit would be answered several times its size. A line that does not fit whole is kept cut, to
    what fits, and its error says so: kept lines never take the answer past the limit (beside the
    anomaly objects)."""

    def __init__(self, field: str, kept: str, *, room: int) -> None:
        self.field = field
        self.kept = kept
        self.room = room  # bytes kept lines may still take beyond what they took in the body
        self._keys = (orjson.dumps(kept), orjson.dumps(field))

    def parts(
        self,
        items: list[Item],
        anomalies: list[dict[str, Any]],
        part: Callable[[Item, dict[str, Any]], Any] | None = None,
    ) -> list[Any]:
        """``part`` (:meth:`part`) of each item with its anomaly object; stopped by SlowPath, as if
        never called (the room kept lines took is given back), to be called again in a thread."""
        room = self.room
        try:
            return [
                (part or self.part)(item, anomaly) for item, anomaly in zip(items, anomalies, strict=True)
            ]
        except SlowPath:
            self.room = room
            raise

    def part(self, item: Item, anomaly: dict[str, Any]) -> bytes:
        if item.event is not None:
            return dumps({**item.event, self.field: anomaly})
        if item.size is None:  # an array element: written back as an event's field is
            return dumps({self.kept: item.raw, self.field: anomaly})
        return self.text_part(item.raw, item.size, anomaly)

    def text_part(self, text: str, size: int, anomaly: dict[str, Any]) -> bytes:
        """``{kept: text, field: anomaly}`` for ``text`` that took ``size`` bytes of the body, cut to
        the room left (its error then says so)."""
        written, cut = self._text(text, size)
        if cut is not None:
            error = anomaly["error"]
            said = (
                f"; {self.kept} holds its first {cut[0]:,} of {cut[1]:,} characters: whole, "
                "JSON-escaped, it would have taken the enriched events past the body limit"
            )
            anomaly = {**anomaly, "error": {**error, "message": error["message"] + said}}
        kept_key, field_key = self._keys
        return b"{" + kept_key + b":" + written + b"," + field_key + b":" + orjson.dumps(anomaly) + b"}"

    def _text(self, text: str, size: int) -> tuple[bytes, tuple[int, int] | None]:
        """``text`` as a JSON string, or as much of it as fits in the room beside the ``size`` bytes
        it took in the body, with (characters kept, characters) then."""
        limit = size + self.room + 2  # its quotes are framing, as the anomaly object's key is
        if len(text) * 6 + 2 <= limit:  # fits, however it is escaped: most lines
            written = orjson.dumps(text)
            self.room -= len(written) - 2 - size
            return written, None
        parts, used, start = [b'"'], 2, 0
        while start < len(text):
            chunk = orjson.dumps(text[start : start + TEXT_STEP])[1:-1]
            if used + len(chunk) > limit:
                break
            parts.append(chunk)
            used += len(chunk)
            start += TEXT_STEP
        else:
            self.room -= used - 2 - size
            return b"".join(parts) + b'"', None
        piece = chunk[: limit - used]  # cut where it fits, then back to a whole escape and character
        while piece:
            try:
                kept = len(orjson.loads(b'"' + piece + b'"'))
                break
            except orjson.JSONDecodeError:
                piece = piece[:-1]
        else:
            kept = 0
        self.room -= used + len(piece) - 2 - size
        return b"".join(parts) + piece + b'"', (start + kept, len(text))


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "alive", "pid": os.getpid()})  # which serving process answered


async def readyz(request: web.Request) -> web.Response:
    serving = request.app.get(SERVING)
    if serving is None:
        return json_response({"status": "not ready", "model": None}, status=503)
    return json_response(
        {"status": "ready", "model": serving.champion.ref.info(), "redis": request.app[CACHE].status}
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi_document(request: web.Request) -> web.Response:
    floor = request.app[SERVING].smallest_alpha(challenger_answers=_challenger_answers(request))
    return json_response(openapi(request.app[SETTINGS], floor))


def _challenger_answers(request: web.Request) -> bool:
    """Whether the challenger's verdicts answer some requests: a split, and not shadow."""
    settings = request.app[SETTINGS]
    return settings.challenger_split > 0 and not settings.shadow


async def models(request: web.Request) -> web.Response:
    """What serves: champion, challenger, split and shadow, and where they come from."""
    settings, serving, source = request.app[SETTINGS], request.app[SERVING], request.app[SOURCE]
    refs = {alias: {**ref.info(), "source": ref.source} for alias, ref in serving.refs().items()}
    challenger = refs.get("challenger")
    return json_response(
        {
            "champion": refs["champion"],
            "challenger": challenger,
            "split": settings.challenger_split if challenger and not settings.shadow else 0.0,
            "shadow": bool(challenger and settings.shadow),
            "source": source.kind,
            "registry": masked(settings)["registry_uri"] if source.kind == "registry" else None,
            "poll_seconds": settings.model_poll_seconds,
        }
    )


async def reload_model(request: web.Request) -> web.Response:
    """Ask the registry (or the directories) again and swap in what changed: no failed or mixed request."""
    app = request.app
    before = app[SERVING].versions()
    try:
        before, after = await refresh_models(app)
    except (bundle.BundleError, RegistryError) as exc:
        serving = app[SERVING].versions()
        if serving != before and ANNOUNCE_RELOAD in app:  # a champion swapped in alone: tell the others
            app[ANNOUNCE_RELOAD]()
        still = f"champion {serving['champion']}" + (
            f" and challenger {serving['challenger']}" if serving["challenger"] is not None else ""
        )
        raise ApiError(409, "reload_failed", f"{exc}; still serving {still}") from None
    count, current = 1, 1  # serving processes, and those of them that serve ``after``
    if SYNC_RELOAD in app:  # the other serving processes ask again too: answered once they have
        count, current = await app[SYNC_RELOAD]()
    return json_response(
        {
            "reloaded": after != before,
            "from": before,
            "to": after,
            "processes": {"count": count, "serving": current},
        }
    )
