"""Micro-batching: concurrent requests merged into one model and index call (run by ``Scorer``).

A single-event request costs a model call and two index searches; the same call on a few hundred
events costs barely more (PERFORMANCE.md). Requests queue; whenever one of ``concurrency`` workers
is free it takes everything queued (up to ``max_size`` events) as one batch. Under light load a
request starts at once, alone; under heavy load the requests that arrived while the workers were
busy make up the next batch, so batches grow with the load. Under load a free worker also lingers
up to ``max_wait_us`` for the requests about to come (:meth:`MicroBatcher._linger` says when):
each batch then costs one model call for more events. ``max_size = 1`` turns merging off: every
request runs alone.

The work admitted is bounded: a request whose events would take the events queued or being
scored past ``max_pending`` is refused at once (:class:`Overloaded`), so that an overload is
answered promptly instead of growing a queue that nobody waits for. A request whose client has
gone by the time its batch starts is not scored (its answer could not be delivered): a client that
gives up on a short timeout and sends again would otherwise have the service score every attempt,
and the abandoned ones hold the bound. A merged batch that fails is scored again request by
request, so that a request whose events break scoring fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from scorer.service.errors import ApiError

log = logging.getLogger("ocsf_anomaly.service")
Event = dict[str, Any]
GAP_WEIGHT = 1 / 8  # of each new gap between requests in their moving average
GAP_CAP = 4  # a gap counts as at most this many waits
HOLD_OFF = 8  # batches that start without waiting after a wait that found no company …
MAX_DOUBLINGS = 5  # … twice as many after each such linger in a row, up to 256
ScoreFn = Callable[[list[Event], float], Awaitable[list[dict[str, Any]]]]


@dataclass
class _Pending:
    events: list[Event]
    alpha: float
    future: asyncio.Future[list[dict[str, Any]]] = field(repr=False)
    queued: float = 0.0  # the loop's time when it was queued
    gone: Callable[[], bool] | None = field(default=None, repr=False)  # whether its client left


class ClientGone(ApiError):
    """The request's client closed its connection before its events were scored: not scored."""

    def __init__(self) -> None:
        super().__init__(499, "client_closed_request", "the client closed the connection before scoring")


class Overloaded(ApiError):
    """More events than the work admitted may hold: 503, try again shortly."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "overloaded", message, headers={"Retry-After": "1"})


class MicroBatcher:
    """Merge concurrent ``score`` calls into batches for ``run`` (``Scorer``: a scoring thread, or the loop for one event)."""

    def __init__(
        self,
        run: ScoreFn,
        *,
        max_size: int,
        max_wait_us: int,
        concurrency: int,
        max_pending: int,
        observe_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._run = run
        # told, for each request, how long it waited from its arrival until its batch started (behind
        # the batches that had the workers, and a linger for company): the queue_wait metric
        self._observe_wait = observe_wait
        self.max_size = max_size
        self.max_wait = max_wait_us / 1e6
        self.max_pending = max_pending
        self.pending = 0  # events admitted: queued or being scored
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._slots = asyncio.Semaphore(concurrency)
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._gap = math.inf  # the recent mean time between requests (a moving average), seconds
        self._last_arrival: float | None = None
        self._hold_off = 0  # batches to start without waiting: a wait lately found no company
        self._misses = 0  # waits in a row that found no company

    def swap(self, run: ScoreFn) -> None:
        """Score every batch from now on with ``run``; batches already running finish with the old one,
        whose background work (its ``close()``) is then awaited and the old function let go."""
        old, self._run = self._run, run
        close = getattr(old, "close", None)
        if close is not None:
            task = asyncio.get_running_loop().create_task(close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def run_closing(self) -> None:
        """Wait for the background work of the current and replaced scoring functions."""
        close = getattr(self._run, "close", None)
        if close is not None:
            await close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._collect(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish the batches in flight; fail what is still queued."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the service is shutting down"))

    async def score(
        self, events: list[Event], alpha: float, gone: Callable[[], bool] | None = None
    ) -> list[dict[str, Any]]:
        """The anomaly objects of ``events``, in order, scored in a batch with other requests' events;
        raises Overloaded if they would take the events admitted past ``max_pending``, ClientGone if
        ``gone()`` says the client left before their batch started."""
        if not events:
            return []
        self.check(len(events))
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._arrived(now)
        future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        self._queue.put_nowait(_Pending(events, alpha, future, now, gone))
        self.pending += len(events)
        try:
            return await future
        finally:
            self.pending -= len(events)

    def check(self, n: int) -> None:
        """Raise Overloaded unless ``n`` more events fit in the work admitted."""
        if self.pending + n > self.max_pending:
            raise Overloaded(
                f"the service is busy: {self.pending:,} events are queued or being scored, and {n:,} more "
                f"would pass the bound of {self.max_pending:,}; try again shortly"
            )

    def _arrived(self, now: float) -> None:
        """Keep the moving average of the time between requests (each gap counted up to a few
        waits, so that one quiet hour does not hide the next burst)."""
        if self._last_arrival is not None:
            gap = min(now - self._last_arrival, GAP_CAP * self.max_wait)
            self._gap = gap if math.isinf(self._gap) else self._gap + GAP_WEIGHT * (gap - self._gap)
        self._last_arrival = now

    def _linger(self) -> float:
        """How long a free worker waits for more requests before it starts: ``max_wait`` while
        requests come at least twice in it, else 0. A wait that finds no company (one client that
        sends its next request only after the answer cannot send it while the worker waits) holds
        waiting off for the next batches, twice as many each time in a row."""
        if self._hold_off:
            self._hold_off -= 1
            return 0.0
        return self.max_wait if 2 * self._gap <= self.max_wait else 0.0

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()  # a free worker …
            batch = [await self._queue.get()]  # … takes the first request waiting …
            size = len(batch[0].events)
            while size < self.max_size and not self._queue.empty():  # … and whatever queued behind it
                pending = self._queue.get_nowait()
                batch.append(pending)
                size += len(pending.events)
            if size < self.max_size and (linger := self._linger()):
                try:  # … and, under load, what comes next
                    await self._gather(batch, size, loop.time() + linger)
                except asyncio.CancelledError:  # stopped while waiting: what it holds counts as queued
                    for pending in batch:
                        _fail(pending, RuntimeError("the service is shutting down"))
                    raise
            if self._observe_wait is not None:
                now = loop.time()
                for pending in batch:
                    self._observe_wait(now - pending.queued)
            task = asyncio.create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _gather(self, batch: list[_Pending], size: int, deadline: float) -> None:
        """Add to ``batch`` the requests that come before ``deadline``, up to ``max_size`` events,
        while they keep coming (a pause of twice the usual gap ends the wait)."""
        loop = asyncio.get_running_loop()
        joined = 0
        while size < self.max_size and (remaining := deadline - loop.time()) > 0:
            try:  # (asyncio.timeout: Python 3.11's wait_for can swallow the cancel that stops the batcher)
                async with asyncio.timeout(min(remaining, 2 * self._gap)):
                    pending = await self._queue.get()
            except TimeoutError:
                break
            batch.append(pending)
            size += len(pending.events)
            joined += 1
        if joined:
            self._misses = 0
        else:
            self._misses += 1
            self._hold_off = HOLD_OFF << min(self._misses - 1, MAX_DOUBLINGS)

    async def _execute(self, batch: list[_Pending]) -> None:
        run = self._run  # one scoring function (one model) for the whole batch, even across a swap
        try:
            by_alpha: dict[float, list[_Pending]] = {}
            for pending in batch:
                if pending.gone is not None and pending.gone():
                    _fail(pending, ClientGone())
                    continue
                by_alpha.setdefault(pending.alpha, []).append(pending)
            for alpha, group in by_alpha.items():
                events = [e for pending in group for e in pending.events]
                try:
                    results = await run(events, alpha)
                except Exception as exc:
                    if len(group) == 1:
                        _fail(group[0], exc)
                        continue
                    # one request's events may be what failed: never let it fail the requests it
                    # was merged with; each is scored again alone, and only what fails alone fails
                    log.warning(  # the error's type only: its message may quote an event
                        "a merged batch of %d requests failed (%s); scoring each alone",
                        len(group),
                        type(exc).__name__,
                    )
                    for pending in group:
                        try:
                            _succeed(pending, await run(pending.events, alpha))
                        except Exception as alone:
                            _fail(pending, alone)
                    continue
                start = 0
                for pending in group:
                    end = start + len(pending.events)
                    _succeed(pending, results[start:end])
                    start = end
        finally:
            self._slots.release()


def _succeed(pending: _Pending, results: list[dict[str, Any]]) -> None:
    if not pending.future.done():
        pending.future.set_result(results)


def _fail(pending: _Pending, error: Exception) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)
