"""The Vector hop's state: where enriched batches go, and which batches were already forwarded.

Vector (vector.dev) has no HTTP transform, so its pipelines reach the scorer through an ``http``
sink, and the enriched events come back through an ``http_server`` source (the *downstream*).
Vector retries a batch until it gets a 2xx (it ignores Retry-After, and retries 5xx forever), so
the hop answers 2xx only once the downstream holds the whole batch, and a batch whose 2xx was lost
on its way back to Vector is not scored and forwarded a second time: its digest is remembered for
a while, but only after the downstream took it (a failed forward is forwarded again on retry). A
batch the downstream refuses for what it holds is answered with a 4xx Vector does not retry.
With Redis configured (the embedding cache's), the digests are shared there too, so that a retry
the kernel hands to another serving process is recognised; without it, or while it fails, each
process remembers its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from scorer.errors import origin
from scorer.io import OutOfRange, read_answer
from scorer.service.keys import CACHE, SETTINGS, VECTOR
from scorer.settings import masked_url

log = logging.getLogger("ocsf_anomaly.service")

T = TypeVar("T")
MAX_DIGESTS = 100_000  # remembered batches (32 bytes and a time each): a few MB at most
# Vector's json codec parses with serde_json's recursion limit (remaining_depth 128: at most 127
# arrays and objects nested, the batch's own array among them); a batch nested deeper is answered
# 400, which the hop would answer 503, and the sender would retry it for ever.
DOWNSTREAM_NESTING = 127


def nests_deeper(document: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether ``document`` nests objects and arrays more than ``limit`` deep (itself counting one)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# What a number beyond a double's range looks like in JSON text: an exponent of three digits or more
# (1e400), or 309 digits in a row (an integer past 1.8e308). A cheap look at a part's bytes before
# its values are walked (it may find what is not one: a string, 1e-400, 1e300): each byte mapped to
# a class (a digit 1, e or E 2, a sign 3, anything else 0), then three searches of the bytes (a
# regular expression took 10 µs for a 1.3 KB event, about what scoring it costs in a batch).
NUMBER_MASK = bytes(
    1 if chr(byte).isdigit() and byte < 128 else 2 if byte in b"eE" else 3 if byte in b"+-" else 0
    for byte in range(256)
)
LONG_EXPONENTS = (b"\x02\x01\x01\x01", b"\x02\x03\x01\x01\x01")
DIGITS_OF_A_DOUBLE = b"\x01" * 309


def may_hold_beyond_double(text: bytes) -> bool:
    masked = text.translate(NUMBER_MASK)
    return any(pattern in masked for pattern in LONG_EXPONENTS) or DIGITS_OF_A_DOUBLE in masked


def holds_beyond_double(document: Any) -> bool:
    """Whether ``document`` holds a number beyond a double's range: an OutOfRange (1e400), or an
    integer past about 1.8e308, which serde_json (Vector's JSON decoder) refuses, whole body and all,
    "number out of range"; an integer beyond 64 bits but within a double it reads, as a double."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, OutOfRange) or (type(node) is int and abs(node) > sys.float_info.max):
            return True
    return False


class DownstreamError(Exception):
    """The downstream did not take the batch: refused, failed, timed out or unreachable. ``brief``:
    why, without what the downstream answered (which may quote an event), for the log."""

    def __init__(self, message: str, brief: str | None = None) -> None:
        super().__init__(message)
        self.brief = brief or message


class DownstreamRejected(DownstreamError):
    """The downstream refused the batch for what it holds, as it would again: Vector's
    ``http_server`` source answers 400 when a sink after it rejected the events (or its decoder
    could not read them), and 413 or 422 say the same of a body. Sent again, it would be refused
    again, for ever, with the pipeline stalled behind it."""


REJECTED = (400, 413, 422)  # the downstream's answers that mean "never", not "not now"


class Forwarded:
    """Digests of the batches forwarded in the last ``window`` seconds (at most MAX_DIGESTS), and
    the batches being forwarded now: the same batch sent twice at once is forwarded once, the
    second waiting for the first's outcome."""

    def __init__(
        self, window: float, shared: Any = None, timeout: float = 0.05, downstream: str = ""
    ) -> None:
        self.window = window
        # a digest names the downstream too: pipelines (or sites) sharing one Redis send the same
        # batch each to their own, and one's forward is no reason to keep it from the other
        self._namespace = hashlib.sha256(downstream.encode()).digest()
        self._done: OrderedDict[bytes, float] = OrderedDict()
        self._running: dict[bytes, asyncio.Future[None]] = {}
        self._shared = shared  # a redis.asyncio client, or None
        self._timeout = timeout

    async def once(self, body: bytes, alpha: float, forward: Callable[[], Awaitable[T]]) -> T | None:
        """``forward()``'s result, or None when this batch was already forwarded at this ``alpha``
        (the same events sent at another alpha, by a second sink on another route, are another
        batch: their verdicts differ)."""
        if self.window <= 0:
            return await forward()
        digest = hashlib.sha256(self._namespace + struct.pack("<d", alpha) + body).digest()
        while digest in self._running:  # the same batch, in flight: wait for its outcome
            await asyncio.shield(self._running[digest])
        self._expire(time.monotonic())
        if digest in self._done:
            return None
        running = asyncio.get_running_loop().create_future()
        self._running[digest] = running
        try:
            if await self._shared_has(digest):
                self._remember(digest)
                return None
            result = await forward()
            self._remember(digest)
            await self._share(digest)
            return result
        finally:
            del self._running[digest]
            running.set_result(None)

    def _remember(self, digest: bytes) -> None:
        self._done[digest] = time.monotonic()
        if len(self._done) > MAX_DIGESTS:
            self._done.popitem(last=False)

    @staticmethod
    def _key(digest: bytes) -> str:
        return "ocsf-anomaly:vector-batch:" + digest.hex()

    async def _shared_has(self, digest: bytes) -> bool:
        if self._shared is None:
            return False
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._shared.exists(self._key(digest)))
        except Exception as exc:  # Redis down or slow: this process's memory alone
            log.debug("vector hop: Redis not asked about a batch (%r)", exc)
            return False

    async def _share(self, digest: bytes) -> None:
        if self._shared is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._shared.set(self._key(digest), b"1", ex=max(1, round(self.window)))
        except Exception as exc:
            log.debug("vector hop: a forwarded batch not shared through Redis (%r)", exc)

    def _expire(self, now: float) -> None:
        while self._done:
            digest, at = next(iter(self._done.items()))
            if now - at < self.window:
                return
            del self._done[digest]


class VectorHop:
    """The downstream's URL and client session (one for the app, keep-alive), and the forwarded
    batches."""

    def __init__(self, url: str | None, timeout: float, forwarded: Forwarded) -> None:
        self.url = url
        self.forwarded = forwarded
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), raise_for_status=False
        )
        self._failing: str | None = None  # why the downstream does not take batches (said once)

    async def forward(self, body: bytes) -> None:
        """POST the enriched batch (a JSON array); DownstreamError unless the answer is 2xx. An
        outage is logged once, and its end (the answers alone said it: 503s to Vector, and nothing
        in the log: the resilience review)."""
        assert self.url is not None
        try:
            await self._post(body)
        except DownstreamError as exc:
            if self._failing is None:
                log.warning(
                    "the Vector downstream at %s does not take the enriched batches (%s): each is answered "
                    "%s (said again once it takes them)",
                    origin(self.url),
                    exc.brief,
                    "422, and Vector drops it"
                    if isinstance(exc, DownstreamRejected)
                    else "503, and Vector retries it",
                )
            self._failing = exc.brief
            raise
        if self._failing is not None:
            log.warning("the Vector downstream at %s takes the enriched batches again", origin(self.url))
            self._failing = None

    async def _post(self, body: bytes) -> None:
        """POST the batch once. A redirect is not followed: after a 301, 302 or 303 the POST would
        become a GET, which a sign-in page answers 200 while nothing holds the batch."""
        assert self.url is not None
        try:
            async with self._session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}, allow_redirects=False
            ) as response:
                answer = await read_answer(response)
                if 300 <= response.status < 400:
                    raise DownstreamError(
                        f"it answered HTTP {response.status}, a redirect to "
                        f"{masked_url(response.headers.get('Location') or 'nowhere')}, which is not followed: set "
                        "OCSF_ANOMALY_VECTOR_DOWNSTREAM_URL to where it points"
                    )
                if not 200 <= response.status < 300:
                    text = answer[:200].decode("utf-8", "replace").strip()
                    said = f"it answered HTTP {response.status}" + (f": {text}" if text else "")
                    kind = DownstreamRejected if response.status in REJECTED else DownstreamError
                    raise kind(said, f"it answered HTTP {response.status}")
        except TimeoutError:
            raise DownstreamError("it did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise DownstreamError(
                f"it could not be reached ({exc})", f"it could not be reached ({type(exc).__name__})"
            ) from None

    async def close(self) -> None:
        await self._session.close()


async def vector_ctx(app: web.Application) -> AsyncIterator[None]:
    """The hop's client session lives as long as the app."""
    settings = app[SETTINGS]
    shared = app[CACHE].redis
    forwarded = Forwarded(
        settings.vector_dedupe_seconds,
        shared,
        settings.redis_timeout_ms / 1000,
        downstream=settings.vector_downstream_url or "",
    )
    hop = VectorHop(settings.vector_downstream_url, settings.vector_downstream_timeout_seconds, forwarded)
    app[VECTOR] = hop
    yield
    await hop.close()
