"""The Vector hop's state: where enriched batches go, and which batches were already forwarded.

Vector (vector.dev) has no HTTP transform, so its pipelines reach the scorer through an ``http``
sink, and the enriched events come back through an ``http_server`` source (the *downstream*).
Vector retries a batch until it gets a 2xx (it ignores Retry-After, and retries 5xx forever), so
the hop answers 2xx only once the downstream holds the whole batch, and a batch whose 2xx was lost
on its way back to Vector is not scored and forwarded a second time: its digest is remembered for
a while, but only after the downstream took it (a failed forward is forwarded again on retry).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aiohttp
from aiohttp import web

from scorer.service.keys import SETTINGS, VECTOR

T = TypeVar("T")
MAX_DIGESTS = 100_000  # remembered batches (32 bytes and a time each): a few MB at most


class DownstreamError(Exception):
    """The downstream did not take the batch: refused, failed, timed out or unreachable."""


class Forwarded:
    """Digests of the batches forwarded in the last ``window`` seconds (at most MAX_DIGESTS), and
    the batches being forwarded now: the same batch sent twice at once is forwarded once, the
    second waiting for the first's outcome."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._done: OrderedDict[bytes, float] = OrderedDict()
        self._running: dict[bytes, asyncio.Future[None]] = {}

    async def once(self, body: bytes, forward: Callable[[], Awaitable[T]]) -> T | None:
        """``forward()``'s result, or None when this batch was already forwarded."""
        if self.window <= 0:
            return await forward()
        digest = hashlib.sha256(body).digest()
        while digest in self._running:  # the same batch, in flight: wait for its outcome
            await asyncio.shield(self._running[digest])
        self._expire(time.monotonic())
        if digest in self._done:
            return None
        running = asyncio.get_running_loop().create_future()
        self._running[digest] = running
        try:
            result = await forward()
            self._done[digest] = time.monotonic()
            if len(self._done) > MAX_DIGESTS:
                self._done.popitem(last=False)
            return result
        finally:
            del self._running[digest]
            running.set_result(None)

    def _expire(self, now: float) -> None:
        while self._done:
            digest, at = next(iter(self._done.items()))
            if now - at < self.window:
                return
            del self._done[digest]


class VectorHop:
    """The downstream's URL and client session (one for the app, keep-alive), and the forwarded
    batches."""

    def __init__(self, url: str | None, timeout: float, dedupe_seconds: float) -> None:
        self.url = url
        self.forwarded = Forwarded(dedupe_seconds)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout), raise_for_status=False
        )

    async def forward(self, body: bytes) -> None:
        """POST the enriched batch (a JSON array); DownstreamError unless the answer is 2xx."""
        assert self.url is not None
        try:
            async with self._session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                answer = await response.read()
                if not 200 <= response.status < 300:
                    text = answer[:200].decode("utf-8", "replace").strip()
                    raise DownstreamError(
                        f"it answered HTTP {response.status}" + (f": {text}" if text else "")
                    )
        except TimeoutError:
            raise DownstreamError("it did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise DownstreamError(f"it could not be reached ({exc})") from None

    async def close(self) -> None:
        await self._session.close()


async def vector_ctx(app: web.Application) -> AsyncIterator[None]:
    """The hop's client session lives as long as the app."""
    settings = app[SETTINGS]
    hop = VectorHop(
        settings.vector_downstream_url,
        settings.vector_downstream_timeout_seconds,
        settings.vector_dedupe_seconds,
    )
    app[VECTOR] = hop
    yield
    await hop.close()
