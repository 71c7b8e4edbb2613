"""A real HTTP receiver standing in for Vector's ``http_server`` source, the downstream of the Vector
hop (no Vector binary can run here). Like that source with ``decoding.codec: json`` and
acknowledgements on, it takes a JSON array of events and answers 200 once it holds them (here:
once it has parsed and recorded them), or, as told, fails (``status``), answers late (``delay``)
or is not there at all (``stop``)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import web


class Downstream:
    """An aiohttp server on a loopback port, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []  # what it took (answered 2xx), in order
        self.refused = 0  # batches answered with a failure
        self.status = 200
        self.delay = 0.0
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
        if self.delay:
            await asyncio.sleep(self.delay)
        if not 200 <= self.status < 300:
            self.refused += 1
            return web.Response(status=self.status, text="the sink downstream failed")
        assert request.content_type == "application/json"
        batch = json.loads(body)
        assert isinstance(batch, list)
        self.batches.append(batch)
        return web.Response(status=200)

    async def _start(self, port: int) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/enriched", self._take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> Downstream:
        """Listen (again, on the same port after ``stop``)."""
        if not self._thread.is_alive():
            self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(self.port), self._loop).result(30)
        return self

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start``."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._runner = None

    def __enter__(self) -> Downstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
