"""A real HTTP receiver standing in for Vector's ``http_server`` source, the downstream of the Vector
hop (no Vector binary can run here). Like that source with ``decoding.codec: json`` and
acknowledgements on, it takes a JSON array of events and answers 200 once it holds them (here:
once it has parsed and recorded them), 400 for a body its decoder cannot read (Vector's json codec
is serde_json with its recursion limit: at most 127 arrays and objects nested; and no number beyond
a double's range, as 1e400), or, as told, fails (``status``), keeps each batch
unanswered until the test lets it go (``hold`` … ``release``: a sink that is slow, or that never
answers), redirects it to a sign-in page that answers a GET 200 (``redirect``: an auth proxy in
front of it), takes it and answers 200 with a body that never ends (``endless``), that cannot be
decoded (``garbled``) or is not there
at all (``stop``)."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
from typing import Any

from aiohttp import web

SERDE_JSON_NESTING = 127  # serde_json's remaining_depth starts at 128 and fails on reaching 0


class OutOfRangeError(ValueError):
    """serde_json's "number out of range": a number whose double is infinite (1e400, or an integer
    past about 1.8e308, which it reads as a double once beyond 64 bits)."""


DIGITS = bytes(1 if ord("0") <= byte <= ord("9") else 0 for byte in range(256))
LONGEST_DOUBLE = b"\x01" * 309  # digits in a row: an integer this long may lie past 1.8e308


def _double(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise OutOfRangeError(text)
    return number


def _integer(text: str) -> int:
    try:
        number = int(text)
    except ValueError:  # past Python's limit on converting digits (4,300): far past a double
        raise OutOfRangeError(text) from None
    if abs(number) > sys.float_info.max:
        raise OutOfRangeError(text)
    return number


def nesting(document: Any) -> int:
    """How deep arrays and objects nest in a parsed JSON document (a scalar: 0). Walked after the
    parse rather than scanned in the text: a 256-event batch costs a millisecond, not six, of the
    cores the benchmarks share with the service."""
    deepest = 0
    stack = [(document, 1)] if isinstance(document, dict | list) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


class Downstream:
    """An aiohttp server on a loopback port, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []  # what it took (answered 2xx), in order
        self.refused = 0  # batches answered with a failure
        self.status = 200
        self.held = 0  # batches that arrived while holding (taken or not when released)
        self.redirect: str | None = None  # set: every batch answered 302 to it (an auth proxy's sign-in)
        self.pages = 0  # GETs of the sign-in page, answered 200 (HTML)
        self.endless = False  # set: a batch taken is answered 200 with a body that never ends
        self.garbled = False  # set: a batch taken is answered 200 with a "gzip" body that is not gzip
        self._holding = False
        self._held: list[asyncio.Future[bool]] = []  # each held batch's fate: taken, or refused unread
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/enriched"

    @property
    def events(self) -> list[Any]:
        return [event for batch in self.batches for event in batch]

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.redirect is not None:
            raise web.HTTPFound(self.redirect)
        if self._holding:
            self.held += 1
            fate = self._loop.create_future()
            self._held.append(fate)
            if not await fate:  # never taken: as a sink that did not answer in time holds nothing
                self.refused += 1
                return web.Response(status=503, text="the sink downstream never took it")
        if not 200 <= self.status < 300:
            self.refused += 1
            return web.Response(status=self.status, text="the sink downstream failed")
        assert request.content_type == "application/json"
        try:
            batch = json.loads(body, parse_float=_double)
            if LONGEST_DOUBLE in body.translate(DIGITS):  # read again to look at its integers (rare:
                json.loads(body, parse_int=_integer)  # a hook on every integer doubled the parse)
            too_deep = nesting(batch) > SERDE_JSON_NESTING
        except RecursionError:  # deeper than Python's own decoder goes: deeper than serde_json's too
            too_deep = True
        except OutOfRangeError:
            self.refused += 1
            return web.Response(status=400, text="Failed decoding body: number out of range")
        if too_deep:
            self.refused += 1
            return web.Response(status=400, text="Failed decoding body: recursion limit exceeded")
        assert isinstance(batch, list)
        self.batches.append(batch)
        if self.endless:
            answer = web.StreamResponse(status=200)
            await answer.prepare(request)
            while True:  # until the client goes away (the write then fails) or the server stops
                await answer.write(b"x" * 65536)
                await asyncio.sleep(0.01)
        if self.garbled:  # as a proxy in front might answer
            return web.Response(status=200, body=b"not gzip at all", headers={"Content-Encoding": "gzip"})
        return web.Response(status=200)

    async def _sign_in(self, request: web.Request) -> web.Response:
        self.pages += 1
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")

    async def _start(self, port: int) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/enriched", self._take)
        app.router.add_get("/sign-in", self._sign_in)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def hold(self) -> None:
        """From now on each batch waits, unanswered and not taken, until ``release``."""
        self._holding = True

    def release(self, take: bool) -> None:
        """Stop holding; the batches held are taken (answered as usual) or, ``take`` False, refused
        without being recorded (their client gave up on them)."""

        async def release() -> None:
            self._holding = False
            for fate in self._held:
                if not fate.done():
                    fate.set_result(take)
            self._held.clear()

        asyncio.run_coroutine_threadsafe(release(), self._loop).result(30)

    def start(self) -> Downstream:
        """Listen (again, on the same port after ``stop``)."""
        if not self._thread.is_alive():
            self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(self.port), self._loop).result(30)
        return self

    def stop(self) -> None:
        """Stop listening (a batch still held is refused): connections are refused until ``start``."""
        if self._runner is not None:
            self.release(take=False)
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._runner = None

    def __enter__(self) -> Downstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
