"""Prometheus metrics of the service, defined once, in a registry per app.

Labels are bounded: ``class_uid`` is a class the model saw in calibration, else ``other``,
never a raw value from a request.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from scorer.alerts import AlertMetrics
from scorer.calibration import Calibration
from scorer.detector import ScoreResult

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10_000)
STAGES = ("parse", "encode", "cache", "embed", "search", "calibrate", "explain")
WINDOW_EVENTS = 10_000  # the drift gauges read over the last this many scored events (per process)
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # set by the supervisor of several serving processes
ROLLING = (  # gauge, help, the window sum it divides by the window's events
    (
        "ocsf_anomaly_knn_distance_rolling_mean",
        "Mean score (k-NN distance) of the last {} scored events of each serving process",
        "distance",
    ),
    (
        "ocsf_anomaly_unknown_category_rate",
        "Share of categorical inputs never seen in training, over the last {} events of each process",
        "unknown",
    ),
    (
        "ocsf_anomaly_anomaly_rate",
        "Share of the last {} scored events of each process flagged at ocsf_anomaly_alpha (whatever a "
        "request asked): compare the two",
        "flagged",
    ),
)
WINDOW_SUMS = ("events", "distance", "unknown", "flagged")


class Metrics:
    """All of the service's metrics; thread-safe (scoring threads update them).

    Under a supervisor of several serving processes (``PROMETHEUS_MULTIPROC_DIR`` set before
    prometheus_client is imported), every process writes its values to files in that directory
    and ``render`` pools them, so ``/metrics`` reads the same whichever process answers: counters
    and histograms summed (including processes since replaced), gauges over the live processes.
    """

    def __init__(self, alpha: float | None = None) -> None:
        """``alpha``: the service's (OCSF_ANOMALY_ALPHA), shown as ocsf_anomaly_alpha and the one at
        which events count as flagged here; None: at each request's."""
        self._alpha = alpha
        self.multiprocess = MULTIPROCESS_DIR in os.environ
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "ocsf_anomaly_request_seconds",
            "HTTP request latency",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "ocsf_anomaly_stage_seconds",
            "Time per batch spent in each scoring stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "ocsf_anomaly_queue_wait_seconds",
            "Time a request's events waited from their arrival until their batch started (behind "
            "the batches that held every scoring thread, and a linger for company)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events = Counter("ocsf_anomaly_events", "Events scored", ["class_uid", "variant"], registry=r)
        self.anomalies = Counter(
            "ocsf_anomaly_anomalies",
            "Events flagged anomalous at ocsf_anomaly_alpha (whatever a request asked)",
            ["class_uid", "variant"],
            registry=r,
        )
        self.batch_size = Histogram(
            "ocsf_anomaly_batch_size", "Events per model and index call", buckets=BATCH_BUCKETS, registry=r
        )
        self.model_info = Gauge(
            "ocsf_anomaly_model_info",
            "The model serving (value 1)",
            ["name", "version", "bundle_version", "alias"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_reloads = Counter(
            "ocsf_anomaly_model_reloads",
            "Checks for a new model (poll or admin call) by result: swapped, unchanged, failed",
            ["result"],
            registry=r,
        )
        # the rolling gauges (ROLLING) are derived from these sums when rendered, pooled over processes
        self.window = Gauge(
            "ocsf_anomaly_window",
            "Sums over the last scored events of each process",
            ["variant", "sum"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.alpha = Gauge(
            "ocsf_anomaly_alpha",
            "Target false-positive rate (default)",
            registry=r,
            multiprocess_mode="livemax",
        )
        if alpha is not None:
            self.alpha.set(alpha)
        self.cache_lookups = Counter(
            "ocsf_anomaly_cache_lookups",
            "Embedding cache lookups by tier and result",
            ["tier", "result"],
            registry=r,
        )
        self.shadow_verdicts = Counter(
            "ocsf_anomaly_shadow_verdicts",
            "Challenger verdicts on shadowed events against the champion's",
            ["agreement"],
            registry=r,
        )
        self.redis_degraded = Gauge(
            "ocsf_anomaly_redis_degraded", "1 while Redis is failing", registry=r, multiprocess_mode="livemax"
        )
        self.redis_errors = Counter("ocsf_anomaly_redis_errors", "Failed Redis calls", registry=r)
        self.body_bytes_held = Gauge(
            "ocsf_anomaly_body_bytes_held",
            "Bytes of request bodies held now (read, inflated or parsed, not yet answered)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.alerts = AlertMetrics(r)
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._model_labels: set[tuple[str, ...]] = set()
        self._by_alias: dict[str, tuple[str, ...]] = {}  # the model serving as each alias
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def labelled(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: every scored batch updates about ten labelled series, and
        looking each up again costs more than the update. For bounded label sets only (no label
        is ever removed from these metrics); two threads racing here get the same series."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_batch(
        self,
        result: ScoreResult,
        variant: str,
        calibration: Calibration | None = None,
        *,
        answered: bool = True,
        model: dict[str, str] | None = None,
    ) -> None:
        """Count a scored batch: stage times and batch size (of batches that answer, not a shadow's),
        events and anomalies by class, drift gauges; the anomalies by the p-values at the service's
        alpha, from ``calibration`` where the request asked for another alpha (a class too small
        for one is judged in the global group, whose scores move with the alpha too). The drift
        window takes the batch only when ``model`` (its name, version and bundle_version) serves as
        ``variant`` now: a batch in flight at a swap finishes on the old model, after the window was
        started again for the new one."""
        n = len(result)
        if not n:
            return
        if answered:  # the service's latency and batching, unmixed with shadow work
            self.batch_size.observe(n)
            for stage in STAGES:
                if stage in result.seconds:
                    self.labelled(self.stage_seconds, stage).observe(result.seconds[stage])
        # at the service's alpha, not the request's: a client asking ?alpha=0.05 (Splunk's alpha=,
        # OpenSearch's --alpha) made the rate read as drift against ocsf_anomaly_alpha, and fire
        # the alert that compares them, with the traffic unchanged
        if self._alpha is None:
            at = result.is_anomaly
        else:
            p_values = result.p_value
            if calibration is not None and result.alpha != self._alpha:
                # judged again at the service's alpha: which group judges a class, and what the
                # global group holds (the classes that fall back at that alpha), both move with it
                groups = calibration.resolve(result.classes, self._alpha)
                p_values = calibration.p_values(result.score, groups, self._alpha)
                p_values[result.forced] = 0.0
            at = p_values <= self._alpha + 1e-12
        flagged = at.tolist()
        counts: dict[str, list[int]] = {}
        for label, is_anomaly in zip(result.classes, flagged, strict=True):
            tally = counts.setdefault(label, [0, 0])
            tally[0] += 1
            tally[1] += int(is_anomaly)
        for label, (events, anomalies) in counts.items():
            self.labelled(self.events, label, variant).inc(events)
            if anomalies:
                self.labelled(self.anomalies, label, variant).inc(anomalies)
        batch = (float(n), result.mean_knn_distance * n, result.unknown_rate * n, float(sum(flagged)))
        with self._lock:  # scoring threads observe concurrently
            if (
                model is not None
                and self._by_alias
                and self._by_alias.get(variant) != _labels(model, variant)
            ):
                return  # a model that serves as this variant no more
            sums = self._windows.setdefault(variant, _Window()).add(batch)
            for name, value in zip(WINDOW_SUMS, sums, strict=True):
                self.labelled(self.window, variant, name).set(value)

    def set_models(self, models: dict[str, dict[str, Any]]) -> None:
        """The serving models by alias (champion, challenger). A variant whose model changed, or
        that serves no more, starts its drift window again (empty: its rolling gauges are not
        shown until it scores): the last model's window read as the new one's, and a challenger
        gone kept its last values for good."""
        serving = {_labels(info, alias) for alias, info in models.items()}
        by_alias: dict[str, tuple[str, ...]] = {labels[-1]: labels for labels in serving}
        with self._lock:
            for alias, labels in self._by_alias.items():
                if by_alias.get(alias) != labels and self._windows.pop(alias, None) is not None:
                    for name in WINDOW_SUMS:
                        self.labelled(self.window, alias, name).set(0.0)
        self._by_alias = by_alias
        for labels in self._model_labels - serving:
            if self.multiprocess:  # a label set cannot be removed from the shared files: it reads 0
                self.model_info.labels(*labels).set(0)
            else:
                self.model_info.remove(*labels)
        for labels in serving:
            self.model_info.labels(*labels).set(1)
        self._model_labels |= serving

    def render(self) -> bytes:
        if self.multiprocess:
            pooled = CollectorRegistry()
            MultiProcessCollector(pooled)  # type: ignore[no-untyped-call]
            families = list(pooled.collect())
        else:
            families = list(self.registry.collect())
        return generate_latest(_Families(_rolling(families)))


def _labels(info: dict[str, Any], alias: str) -> tuple[str, ...]:
    """A serving model's labels: name, version, bundle_version, alias."""
    return (str(info.get("name")), str(info.get("version")), str(info.get("bundle_version")), alias)


class _Families:
    """Metric families already collected, in the shape generate_latest reads."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _rolling(families: Iterable[Metric]) -> list[Metric]:
    """The families with the window sums replaced by the rolling gauges they make."""
    out: list[Metric] = []
    sums: dict[str, dict[str, float]] = {}
    for family in families:
        if family.name != "ocsf_anomaly_window":
            out.append(family)
            continue
        for sample in family.samples:
            sums.setdefault(sample.labels["variant"], {})[sample.labels["sum"]] = sample.value
    for name, text, key in ROLLING:
        gauge = GaugeMetricFamily(name, text.format(f"{WINDOW_EVENTS:,}"), labels=["variant"])
        for variant, values in sorted(sums.items()):
            if values.get("events"):
                gauge.add_metric([variant], values.get(key, 0.0) / values["events"])
        out.append(gauge)
    return out


class _Window:
    """Sums over the last WINDOW_EVENTS events, batch by batch (a batch leaves whole, once the
    batches after it hold WINDOW_EVENTS events); the means over them."""

    def __init__(self) -> None:
        self.batches: deque[tuple[float, float, float, float]] = deque()
        self.sums = [0.0, 0.0, 0.0, 0.0]  # events, and the sums of distance, unknown share, flags

    def add(self, batch: tuple[float, float, float, float]) -> list[float]:
        """The window's sums (WINDOW_SUMS) with ``batch`` in it."""
        self.batches.append(batch)
        self.sums = [a + b for a, b in zip(self.sums, batch, strict=True)]
        while self.sums[0] - self.batches[0][0] >= WINDOW_EVENTS:
            oldest = self.batches.popleft()
            self.sums = [a - b for a, b in zip(self.sums, oldest, strict=True)]
        return self.sums
