"""Alerts: the most anomalous scored events, sent to Prometheus Alertmanager or to a JSON webhook.

What. :class:`Alerter` is offered every scored event (the event and its ``anomaly`` object) and
turns those whose p-value is at or below ``AlertConfig.p_value`` into alerts. That level is meant
to be stricter than the α that sets ``is_anomaly``: every anomaly stays in the enriched output for
hunting, only the rarest page someone. An alert goes either to Alertmanager
(``POST <url>/api/v2/alerts``, a JSON array of its postable alerts) or to a generic webhook
(``POST <url>`` of ``{"version": "1", "alerts": [...]}``, the same alert objects). Each alert has

- labels (what Alertmanager groups, routes and identifies an alert by): ``alertname`` OCSFAnomaly,
  ``severity``, ``class_uid`` and ``entity`` (the value at the entity key, e.g. the source IP);
  a label whose value the event lacks is left out, one longer than 200 characters is cut short;
- annotations: ``summary``, ``score``, ``p_value``, ``reasons`` (one per line,
  ``field=value (typical T, deviation D)``), ``event_uid`` (metadata.uid), ``model_name`` and
  ``model_version``;
- ``startsAt``, when the event was offered, and ``endsAt``, ``resolve_seconds`` after the alert is
  delivered: an alert kept back while the receiver was down still arrives firing, and resolves
  by itself when its entity stays quiet.

Severity comes from the p-value alone, since its meaning (how often a normal event is at least
this extreme) is the same for every class and model, whereas a score's scale is not: ``critical``
at a tenth of the alert p-value or less, ``warning`` at a third or less, ``info`` above. A
conformal p-value is never below 1 / (calibration events + 1), so ``critical`` needs a
calibration group of at least 10 / ``p_value`` events (10,000 at 0.001).

Why this shape: scoring must never wait for, nor fail because of, a receiver. Hence the guarantees:

- :meth:`Alerter.offer` is synchronous, O(1) and never raises: it reads a few fields, applies the
  de-duplication and appends to a bounded queue; when the queue is full the alert is dropped and
  counted. It is called on the event loop's thread (it is not thread-safe).
- One background task sends the queue in batches. While the receiver is unreachable, times out or
  answers 5xx or 429, the batch stays at the head of the queue and is retried with exponential
  backoff (capped); new alerts queue behind it up to the bound. A batch unanswered within the
  timeout ``TIMEOUTS`` times in a row is dropped, logged and counted: the receiver may have taken
  it each time (a webhook slower than the timeout), and it would go on holding up every later alert. Any other answer that is not 2xx
  (a 4xx: the receiver will never take them; a redirect, which is not followed) drops the batch,
  logged and counted; but a 413 for more than one alert halves the batches, and sends the alerts
  again in them (after ``REGROW_AFTER`` batches taken in a row, twice as many are tried again).
  An unexpected error while sending a batch (a bug: no receiver nor event was found to cause
  one) is logged at ERROR and retried like an unavailable receiver;
  a batch that fails so ``UNEXPECTED_ERRORS`` times in a row is dropped, logged and counted, so
  that it cannot hold up every later alert, and the sender goes on. It is dropped whole, not
  halved down to the alerts it fails for: no alert's content can fail (every value is text the
  alerter makes), and a bug that failed every request would then drain one alert at a time.
- An entity alerts at most once per ``dedupe_seconds``: a noisy host is one alert, not thousands.
  The entities remembered are bounded (the oldest forgotten first, so at worst an entity alerts
  again early). An alert dropped because the queue was full does not count as the entity's alert.
- Delivery is best effort: a batch is sent again only when the receiver did not take it, or did not
  answer in time (then at most ``TIMEOUTS`` times); what is queued when :meth:`Alerter.close` gives up
  (after ``close_grace_seconds``) or the process dies is lost, and counted when it is a close. Events
  themselves are never lost this way; the enriched output keeps every anomaly.
- No event content is logged above DEBUG (entity values are addresses and user names).

Every outcome is counted in :class:`AlertCounters` (``Alerter.counters``), for the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import itertools
import logging
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from scorer.errors import log_unexpected, origin, without_credentials
from scorer.explain import reason_text
from scorer.features.encoder import compile_getter
from scorer.io import dumps, read_answer
from scorer.settings import MAX_RESOLVE_SECONDS

if TYPE_CHECKING:
    from scorer.settings import Settings

log = logging.getLogger("ocsf_anomaly.alerts")

ALERTNAME = "OCSFAnomaly"
Kind = Literal["alertmanager", "webhook"]
KINDS: tuple[Kind, ...] = ("alertmanager", "webhook")
CRITICAL_FACTOR = 10.0  # p-value at most alert p-value / 10: critical
WARNING_FACTOR = 3.0  # at most alert p-value / 3: warning; else info
EXPIRED_PER_OFFER = 2  # expired entities forgotten per offer: more than it adds, in constant time
MAX_TEXT = 200  # characters of an event's value in a label or annotation (then "…"), as in reasons
P_TOLERANCE = 1e-12  # the anomaly's p-value is rounded: equal to a level within float error is at it
UNEXPECTED_ERRORS = 3  # a batch whose sending raises an unexpected error this often in a row is dropped
# A batch whose request goes unanswered within the timeout this often in a row is dropped: the
# receiver may have taken it (a webhook slower than the timeout got the same alerts again every
# retry, for as long as the process ran, and every later alert queued behind them)
TIMEOUTS = 3


@dataclass(frozen=True)
class AlertConfig:
    """Where alerts go and how they are filtered, de-duplicated, queued and retried."""

    url: str
    """Alertmanager's base URL (``/api/v2/alerts`` is appended), or the webhook's full URL."""
    kind: Kind = "alertmanager"
    p_value: float = 0.001
    """Events at or below this p-value alert (stricter than α)."""
    entity_key: str = "src_endpoint.ip"
    """Dotted path of the entity the alerts are de-duplicated by and labelled with."""
    dedupe_seconds: float = 600.0
    """An entity alerts at most once in this window; 0: every qualifying event alerts."""
    dedupe_entities: int = 100_000
    """Most entities remembered for the de-duplication."""
    resolve_seconds: float = 1800.0
    """``endsAt`` is this long after delivery (at most a year). Keep it at least ``dedupe_seconds``: an
    entity that stays anomalous then refreshes its alert before it resolves, instead of flapping."""
    queue_size: int = 10_000
    """Most alerts waiting to be sent; beyond it new alerts are dropped and counted."""
    batch_size: int = 200
    """Most alerts in one request."""
    timeout_seconds: float = 5.0
    """Longest one request may take before it counts as failed (and is retried)."""
    retry_initial_seconds: float = 0.5
    """First pause after a failed request; it doubles on each failure in a row ..."""
    retry_max_seconds: float = 30.0
    """... up to this."""
    close_grace_seconds: float = 2.0
    """How long ``close`` keeps sending what is queued before it drops the rest."""
    generator_url: str | None = None
    """``generatorURL`` of every alert (e.g. a dashboard of the anomalies); None: left out."""
    bearer_token: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer …`` (a webhook or an Alertmanager behind a proxy)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert receiver kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("the alert receiver URL must be http:// or https://")
        if self.bearer_token is not None and without_credentials(self.url) != self.url:
            raise ValueError(
                "the alert receiver URL carries a user and password and a bearer token is set too: a "
                "request has one Authorization header; keep one of them"
            )
        if not 0 < self.p_value < 1:
            raise ValueError(f"the alert p-value must be in (0, 1), not {self.p_value}")
        if min(self.queue_size, self.batch_size, self.dedupe_entities) < 1:
            raise ValueError("queue_size, batch_size and dedupe_entities must be at least 1")
        if not 0 < self.retry_initial_seconds <= self.retry_max_seconds:
            raise ValueError("retry pauses must satisfy 0 < retry_initial_seconds <= retry_max_seconds")
        if not (
            self.dedupe_seconds >= 0
            and self.close_grace_seconds >= 0
            and self.timeout_seconds > 0
            and 0 < self.resolve_seconds <= MAX_RESOLVE_SECONDS
        ):  # written so that NaN fails each comparison
            raise ValueError(
                "durations must be positive (dedupe and close grace may be 0), and resolve_seconds at "
                f"most a year ({MAX_RESOLVE_SECONDS:,})"
            )


@dataclass
class AlertCounters:
    """What became of the alerts, since start; each one ends in exactly one of the outcomes, so
    ``offered = deduplicated + dropped_* + sent + queued``."""

    offered: int = 0
    """Scored events at or below the alert p-value."""
    deduplicated: int = 0
    """Not sent: their entity had alerted within the window."""
    dropped_queue_full: int = 0
    """Not sent: the queue was full (the receiver down or slower than the alerts)."""
    dropped_rejected: int = 0
    """Not sent: the receiver refused them (a 4xx other than 429)."""
    dropped_at_close: int = 0
    """Not sent: still queued when ``close`` gave up, or offered after it."""
    dropped_malformed: int = 0
    """Not sent: the anomaly object could not be made into an alert (a bug upstream; logged)."""
    dropped_send_error: int = 0
    """Not sent: sending their batch raised an unexpected error ``UNEXPECTED_ERRORS`` times in a row
    (a bug; logged)."""
    dropped_timed_out: int = 0
    """Not known to be sent: their batch's request went unanswered within the timeout ``TIMEOUTS``
    times in a row (the receiver may have taken them, each time)."""
    sent: int = 0
    """Taken by the receiver (2xx)."""
    send_failures: int = 0
    """Requests that failed and were retried (unreachable, timed out, 5xx, 429, an unexpected error):
    not alerts."""


def config_from(settings: Settings) -> AlertConfig | None:
    """The alerts the settings ask for (``OCSF_ANOMALY_ALERTS_*``), or None when they name no receiver."""
    if settings.alerts_url is None:
        return None
    return AlertConfig(
        url=settings.alerts_url,
        kind=settings.alerts_kind,
        p_value=settings.alerts_p_value,
        entity_key=settings.entity_key,
        dedupe_seconds=settings.alerts_dedupe_seconds,
        resolve_seconds=settings.alerts_resolve_seconds,
        queue_size=settings.alerts_queue_size,
        generator_url=settings.alerts_generator_url,
        bearer_token=settings.alerts_token,
    )


class AlertMetrics:
    """The alerts' Prometheus metrics, in the registry of whoever sends them (the service or a stream
    consumer): every outcome of :class:`AlertCounters` as ``ocsf_anomaly_alerts_total{outcome}``, the
    failed requests, and the queue's length."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter(
            "ocsf_anomaly_alerts",
            "Alerts by outcome: offered (at or below the alert p-value), then exactly one of "
            "deduplicated, dropped_queue_full, dropped_rejected, dropped_at_close, dropped_malformed, "
            "dropped_send_error, dropped_timed_out, sent (or still queued)",
            ["outcome"],
            registry=registry,
        )
        self.send_failures = Counter(
            "ocsf_anomaly_alert_send_failures",
            "Requests to the alert receiver that failed and were retried (unreachable, timed out, 5xx, 429, "
            "an unexpected error)",
            registry=registry,
        )
        self.queued = Gauge(
            "ocsf_anomaly_alerts_queued",
            "Alerts waiting to be sent",
            registry=registry,
            multiprocess_mode="livesum",
        )


def severity(p_value: float, alert_p_value: float) -> str:
    """``critical``, ``warning`` or ``info``: how far below the alert p-value the event's p-value is."""
    if p_value <= alert_p_value / CRITICAL_FACTOR + P_TOLERANCE:
        return "critical"
    if p_value <= alert_p_value / WARNING_FACTOR + P_TOLERANCE:
        return "warning"
    return "info"


REGROW_AFTER = 32  # batches taken in a row at a halved size before twice as many are tried again


class Outcome(enum.Enum):
    """What became of a batch; for those that leave the queue, the counter of its alerts."""

    SENT = "sent"
    REJECTED = "dropped_rejected"
    FAILED = "dropped_send_error"  # an unexpected error UNEXPECTED_ERRORS times in a row
    TIMED_OUT = "dropped_timed_out"  # no answer within the timeout TIMEOUTS times in a row
    RETRY = "retry"
    TOO_LARGE = "too_large"  # 413 for more than one alert: sent again in smaller batches


class Alerter:
    """Scored events in (``offer``), alerts out (a background task between ``start`` and ``close``)."""

    def __init__(self, config: AlertConfig, metrics: AlertMetrics | None = None) -> None:
        self.config = config
        self.counters = AlertCounters()
        self._metrics = metrics
        self._entity = compile_getter(config.entity_key)
        self._event_uid = compile_getter("metadata.uid")
        self._class_uid = compile_getter("class_uid")
        self._endpoint = alertmanager_endpoint(config.url) if config.kind == "alertmanager" else config.url
        self._queue: deque[dict[str, Any]] = deque()  # postable alerts without endsAt, oldest first
        self._recent: OrderedDict[str, float] = OrderedDict()  # entity → window end, oldest first
        self._wake = asyncio.Event()  # set when there is something to send, or on close
        self._stopping = asyncio.Event()  # set on close: ends a backoff pause at once
        self._closing = False
        self._failing = False  # the last request failed (logged once per outage)
        self._refused: int | None = None  # the status the receiver refuses alerts with (logged once)
        self._full = 0  # alerts dropped since the queue became full (logged once, then counted)
        self._errors = 0  # unexpected errors in a row sending the queue's head
        self._timeouts = 0  # requests in a row unanswered within the timeout
        self._batch_size = config.batch_size  # halved each time the receiver answers a batch 413 …
        self._taken = 0  # … and doubled again after REGROW_AFTER batches in a row were taken
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Alerts waiting to be sent (for a gauge)."""
        return len(self._queue)

    def offer_many(self, events: Sequence[Any], anomalies: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`offer` each event with its anomaly; an event above the alert p-value costs one
        comparison (a batch of thousands goes by in microseconds)."""
        level = self.config.p_value + P_TOLERANCE
        for event, anomaly in zip(events, anomalies, strict=True):
            p_value = anomaly.get("p_value")
            if p_value is None or (isinstance(p_value, float) and p_value > level):
                continue
            self.offer(event, anomaly)

    def offer(self, event: dict[str, Any], anomaly: Mapping[str, Any]) -> None:
        """Queue an alert for ``event`` if its p-value is at or below the alert level and its entity
        has not alerted within the window. Returns at once; never raises."""
        try:
            self._offer(event, anomaly)
        except Exception as exc:  # an alert must never fail scoring; a malformed anomaly is a bug upstream
            log.error("an alert could not be built and was dropped (%s)", type(exc).__name__)
            log.debug("the alert that could not be built", exc_info=True)

    def _offer(self, event: dict[str, Any], anomaly: Mapping[str, Any]) -> None:
        p_value = anomaly.get("p_value")
        if isinstance(p_value, bool) or not isinstance(p_value, int | float):
            return
        if not p_value <= self.config.p_value + P_TOLERANCE:  # NaN (an unscorable event) is not
            return
        self._count("offered")
        entity = label_value(self._entity(event))
        now = time.monotonic()
        dedupe_key = _dedupe_key(event, entity) if self.config.dedupe_seconds > 0 else None
        if dedupe_key is not None and self._recent.get(dedupe_key, now) > now:
            self._count("deduplicated")
            return
        if self._closing:
            self._count("dropped_at_close")
            return
        if len(self._queue) >= self.config.queue_size:
            if not self._full:
                log.warning(
                    "the alert queue is full (%d alerts waiting for %s): new alerts are dropped, counted as "
                    "dropped_queue_full, until it has room (alerts_queue_size)",
                    len(self._queue),
                    origin(self._endpoint),
                )
            self._full += 1
            self._count("dropped_queue_full")
            return
        try:
            alert = self._alert(event, anomaly, float(p_value), entity)
        except Exception:
            self._count("dropped_malformed")  # and its entity is not taken to have alerted
            raise
        if dedupe_key is not None:
            self._remember(dedupe_key, now)
        self._queue.append(alert)
        self._queue_changed()
        self._wake.set()

    def _count(self, outcome: str, n: int = 1) -> None:
        setattr(self.counters, outcome, getattr(self.counters, outcome) + n)
        if self._metrics is not None:
            self._metrics.outcomes.labels(outcome).inc(n)

    def _queue_changed(self) -> None:
        if self._metrics is not None:
            self._metrics.queued.set(len(self._queue))

    def _remember(self, entity: str, now: float) -> None:
        """Record that ``entity`` alerts now, keeping ``_recent`` in window-end order and bounded."""
        recent = self._recent
        recent.pop(entity, None)  # an expired entry: moved to the end with its new window
        recent[entity] = now + self.config.dedupe_seconds
        for _ in range(EXPIRED_PER_OFFER):
            oldest = next(iter(recent))
            if recent[oldest] > now:
                break
            del recent[oldest]
        if len(recent) > self.config.dedupe_entities:
            recent.popitem(last=False)

    def _alert(
        self, event: dict[str, Any], anomaly: Mapping[str, Any], p_value: float, entity: str | None
    ) -> dict[str, Any]:
        """The postable alert (Alertmanager's API v2 schema), but for ``endsAt``, set when it is sent."""
        labels = {"alertname": ALERTNAME, "severity": severity(p_value, self.config.p_value)}
        class_uid = label_value(self._class_uid(event))
        if class_uid is not None:
            labels["class_uid"] = class_uid
        if entity is not None:
            labels["entity"] = entity
        score = anomaly.get("score")
        score_text = f"{score:.6g}" if isinstance(score, int | float) else "unknown"
        model = anomaly.get("model")
        model = model if isinstance(model, Mapping) else {}
        annotations = {
            "summary": (
                f"Anomalous OCSF event (class_uid {class_uid or 'unknown'}, {self.config.entity_key} "
                f"{entity or 'unknown'}): p-value {p_value:.6g}, score {score_text}"
            ),
            "score": score_text,
            "p_value": f"{p_value:.6g}",
            "reasons": "\n".join(reason_text(r) for r in anomaly.get("reasons") or () if isinstance(r, dict)),
            "model_name": str(model.get("name", "")),
            "model_version": str(model.get("version", "")),
        }
        event_uid = label_value(self._event_uid(event))
        if event_uid is not None:
            annotations["event_uid"] = event_uid
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {name: text for name, text in annotations.items() if text},
            "startsAt": _timestamp(datetime.now(UTC)),
        }
        if self.config.generator_url is not None:
            alert["generatorURL"] = self.config.generator_url
        return alert

    async def start(self) -> None:
        """Open the HTTP session and start the sender (with the app, on its event loop)."""
        headers = {"Content-Type": "application/json"}
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token}"
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        )
        self._task = asyncio.create_task(self._run(), name="alert-sender")
        self._task.add_done_callback(_log_failure)

    async def close(self) -> None:
        """Send what is queued for up to ``close_grace_seconds`` (stopping at the first failure),
        drop and count the rest, and close the session. Offers after it are dropped and counted."""
        self._closing = True
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=self.config.close_grace_seconds)
            if not done:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._queue:
            log.warning(
                "%d alerts not taken by %s within %g s of stopping: dropped",
                len(self._queue),
                origin(self._endpoint),
                self.config.close_grace_seconds,
            )
        if self._full:  # an episode the queue never came out of
            log.warning("%d alerts were dropped while the alert queue was full", self._full)
            self._full = 0
        self._count("dropped_at_close", len(self._queue))
        self._queue.clear()
        self._queue_changed()
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        """Send the queue's head in batches until closed; a batch leaves the queue once the receiver
        took or refused it (or sending it failed unexpectedly ``UNEXPECTED_ERRORS`` times in a row),
        so a failing one is retried first."""
        pause = self.config.retry_initial_seconds
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(itertools.islice(self._queue, self._batch_size))
            try:
                outcome = await self._post(batch)
                self._errors = 0
            except Exception as exc:  # a bug, or an error nothing was known to raise: the sender goes on
                outcome = self._unexpected(exc, len(batch))
            if outcome is Outcome.TOO_LARGE:
                self._batch_size, self._taken = len(batch) // 2, 0
                log.warning(
                    "the alert receiver refused %d alerts as too large (HTTP 413): sending at most %d a request",
                    len(batch),
                    self._batch_size,
                )
                continue
            if outcome is Outcome.RETRY:
                if self._closing:
                    return
                with contextlib.suppress(TimeoutError):  # the pause, cut short by close
                    async with asyncio.timeout(pause):
                        await self._stopping.wait()
                pause = min(pause * 2, self.config.retry_max_seconds)
                continue
            pause = self.config.retry_initial_seconds
            if outcome is Outcome.SENT and self._batch_size < self.config.batch_size:
                self._regrow()
            for _ in batch:
                self._queue.popleft()
            self._queue_changed()
            self._count(outcome.value, len(batch))
            if self._full and len(self._queue) <= self.config.queue_size // 2:
                # at half, not at the first room: under a steady overload each batch sent made room
                # for a moment, and the two warnings came for every batch (the diff review)
                log.warning(
                    "the alert queue is down to %d alerts: %d were dropped while it was full",
                    len(self._queue),
                    self._full,
                )
                self._full = 0

    def _regrow(self) -> None:
        """After REGROW_AFTER batches taken in a row at a halved size, try twice as many again: a
        batch refused for one large alert (or a limit raised since) left every later alert sent
        alone for good. A limit that holds costs one refused request in REGROW_AFTER + 1."""
        self._taken += 1
        if self._taken >= REGROW_AFTER:
            self._batch_size, self._taken = min(2 * self._batch_size, self.config.batch_size), 0

    async def _post(self, batch: list[dict[str, Any]]) -> Outcome:
        assert self._session is not None  # _run is only started by start()
        ends_at = _timestamp(datetime.now(UTC) + timedelta(seconds=self.config.resolve_seconds))
        alerts = [{**alert, "endsAt": ends_at} for alert in batch]
        body = orjson.dumps(
            alerts if self.config.kind == "alertmanager" else {"version": "1", "alerts": alerts}
        )
        try:
            # a redirect is not followed: after a 301, 302 or 303 the POST would become a GET, which
            # Alertmanager (or a login page) answers 200 without taking anything
            async with self._session.post(self._endpoint, data=body, allow_redirects=False) as response:
                status = response.status
                location = response.headers.get("Location", "")
                answer = await read_answer(response)
        except TimeoutError:
            return self._timed_out(len(batch))
        except aiohttp.ClientError as exc:
            self._timeouts = 0
            return self._failed(type(exc).__name__)
        self._timeouts = 0
        if 200 <= status < 300:
            if self._failing or self._refused is not None:
                log.warning("the alert receiver takes alerts again")
                self._failing, self._refused = False, None
            return Outcome.SENT
        if status == 429 or status >= 500:
            return self._failed(f"HTTP {status}")
        if status == 413 and len(batch) > 1:
            return Outcome.TOO_LARGE
        log.debug("its answer: %r", answer[:1000])
        if self._refused == status:  # said once: a wrong URL refuses every batch, many a second
            return Outcome.REJECTED
        self._refused = status
        if 300 <= status < 400:
            log.warning(
                "the alert receiver redirects (HTTP %d) to %s: alerts are dropped, counted as dropped_rejected; "
                "set the alert URL (alerts_url) to where it points",
                status,
                origin(location) if location else "nowhere",
            )
        else:
            log.warning(
                "the alert receiver at %s refuses alerts (HTTP %d): they are dropped, counted as "
                "dropped_rejected (said again when it takes them)%s",
                origin(self._endpoint),
                status,
                "; check the alert URL (alerts_url) and its token (alerts_token)"
                if status in (401, 403, 404, 405)
                else ", its answer at DEBUG",
            )
        return Outcome.REJECTED

    def _unexpected(self, exc: Exception, alerts: int) -> Outcome:
        """Retry the batch like a failed request, or drop it after ``UNEXPECTED_ERRORS`` in a row.
        Logged at ERROR once a batch, with where it was raised but not its message, which may quote
        an alert (the whole error at DEBUG)."""
        self._errors += 1
        if self._errors == 1:
            log.error(
                "sending %d alerts to %s failed with an unexpected %s (a bug): they are kept queued and "
                "retried\n%s",
                alerts,
                origin(self._endpoint),
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
        log.debug("the unexpected error", exc_info=exc)
        if self._errors < UNEXPECTED_ERRORS:
            self._count_failure()
            return Outcome.RETRY
        self._errors = 0
        log.warning(
            "sending %d alerts to %s failed unexpectedly %d times in a row: dropped",
            alerts,
            origin(self._endpoint),
            UNEXPECTED_ERRORS,
        )
        return Outcome.FAILED

    def _timed_out(self, alerts: int) -> Outcome:
        """Retry the batch like an unavailable receiver, or drop it after ``TIMEOUTS`` in a row."""
        self._timeouts += 1
        if self._timeouts < TIMEOUTS:
            return self._failed("TimeoutError")
        self._timeouts = 0
        log.warning(
            "the alert receiver at %s did not answer %d requests in a row within %g s: %d alerts dropped "
            "(it may have taken them, each time)",
            origin(self._endpoint),
            TIMEOUTS,
            self.config.timeout_seconds,
            alerts,
        )
        return Outcome.TIMED_OUT

    def _count_failure(self) -> None:
        self.counters.send_failures += 1
        if self._metrics is not None:
            self._metrics.send_failures.inc()

    def _failed(self, why: str) -> Outcome:
        self._count_failure()
        if not self._failing:
            log.warning(
                "the alert receiver at %s is unavailable (%s): alerts are kept queued and retried",
                origin(self._endpoint),
                why,
            )
            self._failing = True
        return Outcome.RETRY


def _log_failure(task: asyncio.Task[None]) -> None:
    """Say so at once when the sender dies of a bug, rather than let alerts silently stop."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log_unexpected(log, exc, "the alert sender failed: no more alerts are sent")


def alertmanager_endpoint(url: str) -> str:
    """Where Alertmanager at ``url`` takes alerts: ``/api/v2/alerts`` under its path (a route
    prefix, as behind a proxy), before its query, which a proxy in front may need (it was appended
    after the query, so that the alerts went to the bare URL with a mangled query)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/api/v2/alerts"))


def _dedupe_key(event: dict[str, Any], entity: str | None) -> str:
    """What an alert is deduplicated by: its entity; without one, the event itself (its
    ``metadata.uid``, else a digest of it), so that the same event scored again (a batch Vector or
    ML Commons sends again after a 503, a search run twice) is not one more page."""
    if entity is not None:
        return entity
    metadata = event.get("metadata") if isinstance(event, dict) else None
    uid = label_value(metadata.get("uid")) if isinstance(metadata, dict) else None
    return "\x00event " + (uid if uid is not None else hashlib.sha256(dumps(event)).hexdigest())


def label_value(value: Any) -> str | None:
    """A scalar of the event as label or annotation text; None when absent, empty or not a scalar.
    Cut short past MAX_TEXT characters, as an explanation shows a value: an alert held the event's
    text whole, so its bounds in alerts and entities were no bound in memory."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        text = str(value)
        return (text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…") or None
    return None


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager writes it."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
