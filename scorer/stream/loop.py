"""The consumer loop every source shares: read a batch, score it in-process through the engine,
write the enriched events (and, apart, the anomalies and the dead letters), then commit.

With alerts configured, each written batch's events are offered to the alerter (scorer/alerts.py),
which sends the rarest in the background: a down receiver never holds the stream up.

Writes come before the commit, so a crash anywhere loses nothing: what was not committed is read
again (at least once; an event may be written twice after a crash, never lost). An entry that is
no OCSF event (not JSON, not an object), one the engine cannot score, or one the outputs cannot
take back (too deep for JSON, too large for the source), goes to the dead letters with the reason
and is committed with the rest: it never blocks what comes after it.

When the source goes away mid-stream (Redis or the brokers restarting, a network cut), each read,
write and commit that fails for that reason is tried again, after 0.5 s, then twice as long each
time up to 30 s, holding the batch in hand: nothing after it is acknowledged before it is. A stop
asked for meanwhile waits up to 10 s for the operation under way, then gives up the batch
unacknowledged (it is read again by whoever comes next).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scorer.alerts import Alerter
from scorer.errors import log_unexpected
from scorer.io import dumps
from scorer.service.models import Loaded, ModelSource

log = logging.getLogger("ocsf_anomaly.stream")
T = TypeVar("T")
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0
LAG_EVERY_SECONDS = 1.0  # while batches come, the lag is read at most this often (a round trip in Redis)


@dataclass
class Entry:
    """One message of the source: its id there, the event (None when it is none) or why not."""

    id: Any
    raw: bytes  # the event's text as it came
    event: dict[str, Any] | None
    error: str | None = None


@dataclass
class Output:
    """What one batch writes: enriched events, the anomalies among them, dead letters (with why)."""

    enriched: list[tuple[Entry, bytes]]
    alerts: list[tuple[Entry, bytes]]
    dead: list[tuple[Entry, str]]
    scored: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    """Every event scored, with its anomaly object (for the alerter)."""


class Source(Protocol):
    where: str
    """What the source is, for messages (credentials masked): "Redis at redis://host:6379/0"."""

    def transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the source is out of reach for now (worth trying again), not that
        what was asked is wrong."""

    async def start(self) -> None:
        """Join the group (making what is missing)."""

    def advice(self, exc: BaseException) -> str:
        """What to check when ``start`` raised ``exc`` ("" when its message says it)."""

    async def close(self) -> None:
        """Leave the group and close the connections."""

    async def read(self, count: int) -> list[Entry]:
        """Up to ``count`` entries; waits about a second at most, then answers what it has."""

    def refuses(self, entry: Entry, body: bytes) -> str | None:
        """Why the outputs cannot take ``body``, ``entry``'s event enriched (None: they can)."""

    async def deliver(self, output: Output) -> None:
        """Write the batch's outputs; returns once they are stored."""

    async def commit(self, entries: Sequence[Entry]) -> None:
        """Acknowledge the entries: they are not read again."""

    async def lag(self) -> int | None:
        """Entries waiting to be read, if the source can tell."""


class Models:
    """The model that scores: the champion the source names (a bundle directory, or the
    registry's alias), asked again every ``poll_seconds`` and swapped in when it changed."""

    def __init__(self, source: ModelSource, poll_seconds: float, alpha: float) -> None:
        self.source = source
        self.poll_seconds = poll_seconds
        self.alpha = alpha  # only to say when a model cannot flag anything at it
        self._loaded: Loaded | None = None
        self._asked = 0.0
        self._asking: asyncio.Future[Loaded] | None = None

    async def current(self) -> Loaded:
        """The model to score with. The first call loads it; later ones never wait for the source:
        when a poll is due they ask it in the background, and what it names is swapped in once
        loaded. A registry that takes its connections and never answers (overloaded, a network cut
        without a reset: MLflow's client waits 120 s a try, and tries again) held every batch, and
        a stop, for as long."""
        if self._loaded is None:
            self._asked = time.monotonic()
            self._loaded = await asyncio.to_thread(self._refresh, None)
        elif (
            self._asking is None
            and self.poll_seconds > 0
            and time.monotonic() - self._asked >= self.poll_seconds
        ):
            self._asked = time.monotonic()
            self._asking = _in_daemon_thread(self._refresh, self._loaded)
            self._asking.add_done_callback(self._asked_again)
        return self._loaded

    def _asked_again(self, asked: asyncio.Future[Loaded]) -> None:
        self._asking = None
        if not asked.cancelled() and asked.exception() is None:  # _refresh says its failures
            self._loaded = asked.result()

    def _refresh(self, loaded: Loaded | None) -> Loaded:
        try:
            ref = self.source.resolve()["champion"]
            if loaded is not None and ref == loaded.ref:
                return loaded
            fresh = self.source.load(ref)
        except Exception as exc:
            if loaded is None:
                raise
            # once per poll while it lasts: one line, not a traceback (a bundle that will not load
            # says so in its message; the type tells the rest)
            log.warning(
                "could not ask for the champion again: scoring on with %s (%s)",
                loaded.ref.source,
                describe(exc),
            )
            return loaded
        if loaded is not None:
            log.info("model swapped: %s → %s", loaded.ref.version, fresh.ref.version)
        if (why := fresh.detector.cannot_flag(self.alpha)) is not None:
            log.warning("the model %s: %s", fresh.ref.version, why)
        return fresh


def _in_daemon_thread(call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``call(*args)`` in a thread of its own, as a future of this loop. Not the loop's executor
    (asyncio.to_thread), which the loop waits for as it closes: a call that hangs would hold the
    consumer's exit; a daemon thread is left behind."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def run() -> None:
        try:
            result, error = call(*args), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="ocsf-anomaly-model-poll", daemon=True).start()
    return future


class StreamMetrics:
    """What ``/metrics`` shows of the consumer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("ocsf_anomaly_stream_consumed", "Entries read from the input", registry=r)
        self.scored = Counter("ocsf_anomaly_stream_scored", "Events scored and written", registry=r)
        self.anomalies = Counter("ocsf_anomaly_stream_anomalies", "Events written to the alerts", registry=r)
        self.dead_lettered = Counter(
            "ocsf_anomaly_stream_dead_lettered", "Entries written to the dead letters", registry=r
        )
        self.lag = Gauge(
            "ocsf_anomaly_stream_lag", "Entries of the input not yet read by the group", registry=r
        )
        self.retries = Counter(
            "ocsf_anomaly_stream_retries",
            "Reads, writes and commits tried again because the source was out of reach",
            ["operation"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "ocsf_anomaly_stream_batch_seconds",
            "Time to score, write and commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )


class StartFailed(Exception):
    """A source could not start; the message says why, in full."""


def describe(exc: BaseException) -> str:
    """``Type: message``, once (some libraries' messages already start with their type's name)."""
    text = str(exc)
    if isinstance(exc, StartFailed):
        return text
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


class SourceFailed(Exception):
    """The source refused an operation for a reason that waiting will not mend (a key of the wrong
    type, a permission); what was not acknowledged is read again by whoever comes next."""

    def __init__(self, operation: str, where: str, exc: BaseException, holding: bool) -> None:
        unacknowledged = "; the batch in hand was not acknowledged and will be read again" if holding else ""
        super().__init__(f"could not {operation} on {where}: {describe(exc)}{unacknowledged}")


class Interrupted(Exception):
    """A stop came while an operation was waiting for the source."""

    def __init__(self, holding: bool) -> None:
        super().__init__("stopped while waiting for the source")
        self.holding = holding  # a batch was read and not acknowledged


async def consume(
    source: Source,
    models: Models,
    *,
    alpha: float,
    batch_size: int,
    stop: asyncio.Event,
    metrics: StreamMetrics,
    field: str = "anomaly",
    alerter: Alerter | None = None,
) -> bool:
    """Batches until ``stop`` is set; the batch in hand is finished and committed first. Answers
    whether every batch read was acknowledged (False: a stop came while the source was out of
    reach, and the batch in hand will be read again)."""

    patience = _Patience(source, stop, metrics)
    lag_read_at = -math.inf

    async def read_lag() -> None:
        nonlocal lag_read_at
        lag = await patience.until_done("read the lag", source.lag, False)
        lag_read_at = time.monotonic()
        # None: Redis cannot count it now (an entry not yet read was deleted or trimmed): unknown,
        # not the last value read (an alert on the lag compares nothing with NaN)
        metrics.lag.set(lag if lag is not None else math.nan)

    try:
        while not stop.is_set():
            entries = await patience.until_done("read", functools.partial(source.read, batch_size), False)
            if not entries:
                await read_lag()
                continue
            started = time.perf_counter()
            loaded = await models.current()
            output = await asyncio.to_thread(score_batch, loaded, entries, alpha, field, source.refuses)
            await patience.until_done("write", functools.partial(source.deliver, output), True)
            if alerter is not None:
                alerter.offer_many(
                    [event for event, _ in output.scored], [anomaly for _, anomaly in output.scored]
                )
            await patience.until_done("commit", functools.partial(source.commit, entries), True)
            metrics.consumed.inc(len(entries))
            metrics.scored.inc(len(output.enriched))
            metrics.anomalies.inc(len(output.alerts))
            metrics.dead_lettered.inc(len(output.dead))
            metrics.batch_seconds.observe(time.perf_counter() - started)
            if time.monotonic() - lag_read_at >= LAG_EVERY_SECONDS:  # a backlog read down, not only idle
                await read_lag()
    except Interrupted as interrupted:
        return not interrupted.holding
    finally:
        patience.close()
    return True


class _Patience:
    """Runs the source's operations: each tried again, with growing pauses, while the source is out
    of reach; a stop gives the attempt under way STOP_GRACE_SECONDS more, then raises Interrupted."""

    def __init__(self, source: Source, stop: asyncio.Event, metrics: StreamMetrics) -> None:
        self.source, self.stop, self.metrics = source, stop, metrics
        self.stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())  # one for every operation

    def close(self) -> None:
        self.stopped.cancel()

    async def until_done(self, operation: str, call: Callable[[], Awaitable[T]], holding: bool) -> T:
        pause = RETRY_FIRST_SECONDS
        while True:
            attempt = asyncio.ensure_future(call())
            try:
                return await self._unless_stopped(attempt, holding)
            except Interrupted:
                raise
            except Exception as exc:
                if not self.source.transient(exc):
                    raise SourceFailed(operation, self.source.where, exc, holding) from exc
                self.metrics.retries.labels(operation).inc()
                log.warning(
                    "could not %s at %s (%s): trying again in %.1f s%s",
                    operation,
                    self.source.where,
                    describe(exc),
                    pause,
                    "; the batch in hand waits, unacknowledged" if holding else "",
                )
            await asyncio.wait({self.stopped}, timeout=pause)
            if self.stop.is_set():
                raise Interrupted(holding)
            pause = min(2 * pause, RETRY_MAX_SECONDS)

    async def _unless_stopped(self, attempt: asyncio.Future[T], holding: bool) -> T:
        if not self.stopped.done():
            either: set[asyncio.Future[Any]] = {attempt, self.stopped}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not attempt.done():
            await asyncio.wait({attempt}, timeout=STOP_GRACE_SECONDS)
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await attempt
            raise Interrupted(holding)
        return attempt.result()


def score_batch(
    loaded: Loaded,
    entries: Sequence[Entry],
    alpha: float,
    field: str,
    refuses: Callable[[Entry, bytes], str | None],
) -> Output:
    """The batch's outputs. The engine never raises on an event's content; if it raises all the same,
    the events are scored one by one so that only the one at fault becomes a dead letter. An event
    that cannot be written back (too deep for JSON, too large for the source) is a dead letter too."""
    output = Output(
        [], [], [(entry, entry.error or "not an event") for entry in entries if entry.event is None]
    )
    events = [(entry, entry.event) for entry in entries if entry.event is not None]
    model = {"name": loaded.ref.name, "version": loaded.ref.version, "variant": "champion"}
    detector = loaded.detector
    try:
        prepared = detector.prepare([event for _, event in events])
        result = detector.finish(prepared, alpha=alpha)[0]
        groups = [(events, result)]
    except Exception as exc:
        log_unexpected(log, exc, "a batch of %d events failed to score: scoring them one by one", len(events))
        groups = []
        for entry, event in events:
            try:
                groups.append(([(entry, event)], detector.score([event], alpha=alpha)))
            except Exception as alone:
                output.dead.append((entry, f"the engine failed on this event: {alone!r}"))
    else:  # outside the try: a batch scored whole is never scored again for what a log line met
        loaded.foreign.look(prepared, result)
    for group, result in groups:
        for i, (entry, event) in enumerate(group):
            anomaly = result.anomaly(i, model)
            body = dumps({**event, field: anomaly})
            refused = refuses(entry, body)
            if refused is not None:
                output.dead.append((entry, refused))
                continue
            output.enriched.append((entry, body))
            output.scored.append((event, anomaly))
            if anomaly["is_anomaly"]:
                output.alerts.append((entry, body))
    return output
