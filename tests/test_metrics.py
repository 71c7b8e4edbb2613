"""The service's drift gauges read over a stated window of events, whichever threads observe."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from scorer.detector import ScoreResult
from scorer.service.metrics import WINDOW_EVENTS, Metrics


def _batch(n: int, flagged: int, distance: float = 1.0) -> ScoreResult:
    is_anomaly = np.zeros(n, dtype=bool)
    is_anomaly[:flagged] = True
    return ScoreResult(
        score=np.full(n, distance),
        p_value=np.full(n, 0.5),
        is_anomaly=is_anomaly,
        forced=np.zeros(n, dtype=bool),
        threshold=np.full(n, 3.0),
        group=["global"] * n,
        classes=["4001"] * n,
        components={},
        reasons=[[] for _ in range(n)],
        neighbors=[[] for _ in range(n)],
        unknown_rate=0.0,
        mean_knn_distance=distance,
        alpha=0.01,
    )


def _gauge(metrics: Metrics, name: str) -> float:
    """The champion's gauge as /metrics shows it (the rolling gauges are derived when rendered)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == {"variant": "champion"}:
                return float(sample.value)
    raise AssertionError(f"{name} not rendered")


def test_the_anomaly_rate_is_the_share_of_the_events_seen_so_far_within_the_window() -> None:
    metrics = Metrics()
    metrics.observe_batch(_batch(10, 1), "champion")
    metrics.observe_batch(_batch(5, 0), "champion")
    assert (
        _gauge(metrics, "ocsf_anomaly_anomaly_rate") == 1 / 15
    )  # not a rolling mean seeded by the first batch
    for _ in range(WINDOW_EVENTS // 100):
        metrics.observe_batch(_batch(100, 2, distance=2.0), "champion")
    assert _gauge(metrics, "ocsf_anomaly_anomaly_rate") == pytest.approx(
        0.02
    )  # the first batches have left the window
    assert _gauge(metrics, "ocsf_anomaly_knn_distance_rolling_mean") == pytest.approx(2.0)


@pytest.fixture
def switching_often() -> Iterator[None]:
    """Threads made to switch every microsecond: at Python's 5 ms, four threads of tiny calls never
    met mid-update, and the test below passed with the window's lock taken out."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("switching_often")
def test_threads_observing_at_once_lose_no_batch() -> None:
    metrics = Metrics()

    def observe() -> None:
        for _ in range(200):
            metrics.observe_batch(_batch(5, 1), "champion")

    threads = [threading.Thread(target=observe) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (
        metrics.registry.get_sample_value(
            "ocsf_anomaly_events_total", {"class_uid": "4001", "variant": "champion"}
        )
        == 4000
    )
    assert _gauge(metrics, "ocsf_anomaly_anomaly_rate") == pytest.approx(0.2)
    window = metrics._windows["champion"]
    assert window.sums[0] == sum(b[0] for b in window.batches) <= WINDOW_EVENTS + 5


def test_anomalies_are_counted_by_the_groups_of_the_service_s_alpha_whatever_a_request_asks() -> None:
    """A request at ?alpha=0.001 judges a class of 600 calibration events by the global group (the
    class's own gives no p-value below 1/601); the counts at the service's 0.01 are by the class's
    own group all the same: 1,564 against 1,606 flagged in the review, for the same events. A class
    of 300, in the global group at both alphas, is judged there against the 300 that fall back at
    0.01, and against every score at 0.001 (300 are too few for it): counted at 0.01 too."""
    from scorer.calibration import Calibration

    rng = np.random.default_rng(1)
    calibration = Calibration.fit(
        np.concatenate(
            [rng.normal(size=600), rng.normal(2.0, 1.0, size=2400), rng.normal(4.0, 1.0, size=300)]
        ),
        [4001] * 600 + [4002] * 2400 + [4003] * 300,
    )
    scores = np.concatenate(
        [rng.normal(size=500), rng.normal(2.0, 1.0, size=500), rng.normal(4.0, 1.0, size=500)]
    )
    classes = ["4001"] * 500 + ["4002"] * 500 + ["4003"] * 500
    assert calibration.resolve(["4003"], 0.01) == calibration.resolve(["4003"], 0.001) == ["global"]

    def counted(rows: slice, request_alpha: float) -> float:
        groups = calibration.resolve(classes[rows], request_alpha)
        p_values = calibration.p_values(scores[rows], groups, request_alpha)
        result = _batch(len(p_values), 0)
        result.score, result.p_value, result.group = scores[rows], p_values, groups
        result.classes, result.is_anomaly, result.alpha = (
            classes[rows],
            p_values <= request_alpha,
            request_alpha,
        )
        metrics = Metrics(alpha=0.01)
        metrics.observe_batch(result, "champion", calibration)
        return _gauge(metrics, "ocsf_anomaly_anomaly_rate")

    for rows in (slice(None), slice(500, None)):  # the second: every event in the same group at both
        assert counted(rows, 0.01) == counted(rows, 0.001) > 0, rows


def test_a_variant_whose_model_changed_or_went_away_starts_its_drift_window_again() -> None:
    """After a promotion the champion's drift gauges read the last model's window, and a challenger
    removed kept its last values for good."""
    metrics = Metrics(alpha=0.01)
    info = {"name": "m", "version": "1", "bundle_version": "a"}
    metrics.set_models({"champion": info, "challenger": {**info, "version": "2", "bundle_version": "b"}})
    metrics.observe_batch(_batch(10, 5, distance=4.0), "champion")
    metrics.observe_batch(_batch(10, 5, distance=4.0), "challenger")
    metrics.set_models({"champion": info, "challenger": {**info, "version": "2", "bundle_version": "b"}})
    assert _gauge(metrics, "ocsf_anomaly_knn_distance_rolling_mean") == 4.0  # unchanged: kept
    metrics.set_models(
        {"champion": {**info, "version": "3", "bundle_version": "c"}}
    )  # promoted, no challenger
    rendered = metrics.render().decode()
    assert "ocsf_anomaly_knn_distance_rolling_mean{" not in rendered  # neither variant until it scores
    metrics.observe_batch(_batch(10, 0, distance=1.0), "champion")
    assert _gauge(metrics, "ocsf_anomaly_knn_distance_rolling_mean") == 1.0  # the new model's alone
    assert 'ocsf_anomaly_knn_distance_rolling_mean{variant="challenger"}' not in metrics.render().decode()


def test_a_shadow_s_batches_are_not_the_service_s_batch_sizes_or_stage_times() -> None:
    metrics = Metrics(alpha=0.01)
    for variant, answered in [("champion", True), ("challenger", False)]:
        batch = _batch(3, 0)
        batch.seconds.update(encode=0.1, search=0.2)
        metrics.observe_batch(batch, variant, answered=answered)
    shown = metrics.render().decode()
    assert "ocsf_anomaly_batch_size_count 1.0" in shown
    assert 'ocsf_anomaly_stage_seconds_count{stage="encode"} 1.0' in shown
    assert 'ocsf_anomaly_stage_seconds_count{stage="search"} 1.0' in shown


def test_a_batch_of_a_model_that_serves_no_more_leaves_the_drift_window_alone() -> None:
    """A batch in flight at a swap finishes on the old model, after its variant's window was started
    again: it wrote the old model's events into the new one's window, and a removed challenger's
    in-flight batch brought its gauges back for good."""
    metrics = Metrics(alpha=0.01)
    old = {"name": "m", "version": "1", "bundle_version": "a"}
    new = {"name": "m", "version": "3", "bundle_version": "c"}
    challenger = {"name": "m", "version": "2", "bundle_version": "b"}
    metrics.set_models({"champion": old, "challenger": challenger})
    metrics.set_models({"champion": new})  # promoted, the challenger gone
    metrics.observe_batch(_batch(10, 0, distance=9.0), "champion", model=old)  # in flight at the swap
    metrics.observe_batch(_batch(10, 0, distance=9.0), "challenger", model=challenger)
    assert "ocsf_anomaly_knn_distance_rolling_mean{" not in metrics.render().decode()
    metrics.observe_batch(_batch(10, 0, distance=1.0), "champion", model=new)
    assert _gauge(metrics, "ocsf_anomaly_knn_distance_rolling_mean") == 1.0
