"""Conformal p-values and thresholds, and the detection report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from scorer.calibration import (
    GLOBAL,
    MAX_THRESHOLDS,
    Calibration,
    conformal_p_values,
    conformal_threshold,
    group_key,
)
from scorer.metrics import (
    detection_report,
    proportion_interval,
    recall_at_fpr,
    roc_auc_difference,
    roc_auc_interval,
    threshold_at_fpr,
)

# --- conformal p-values -------------------------------------------------------------------------


def test_p_values_of_one_exchangeable_draw_are_exactly_uniform() -> None:
    # With n calibration scores and one fresh score, all exchangeable and continuous, p takes each of
    # 1/(n+1), ..., 1 with probability 1/(n+1): check the 20 values over 20,000 independent repeats.
    rng = np.random.default_rng(1)
    n, repeats = 19, 20_000
    draws = rng.standard_normal((repeats, n + 1))
    p = np.array([conformal_p_values(row[:n], row[n:])[0] for row in draws])
    counts = np.bincount(np.rint(p * (n + 1)).astype(int), minlength=n + 2)[1:]
    assert counts.sum() == repeats
    assert stats.chisquare(counts).pvalue > 1e-3
    assert np.all(np.abs(counts - repeats / (n + 1)) < 5 * math.sqrt(repeats / (n + 1)))


def test_p_values_against_a_large_calibration_set_are_close_to_uniform() -> None:
    rng = np.random.default_rng(2)
    calibration = rng.exponential(size=20_000)
    fresh = rng.exponential(size=20_000)
    p = conformal_p_values(calibration, fresh)
    assert p.min() >= 1 / 20_001
    assert p.max() <= 1.0
    # The p-values are one minus the calibration ECDF, so their KS distance to U(0,1) behaves like a
    # two-sample KS statistic on 20k + 20k draws: its 0.1 % critical value is about 0.0195.
    assert stats.kstest(p, "uniform").statistic < 0.0195
    assert np.all(np.abs(np.bincount((p * 10).astype(int).clip(0, 9)) - 2000) < 200)


def test_p_values_nan_scores_give_nan_and_the_rest_match_the_formula() -> None:
    calibration = np.array([3.0, 1.0, 2.0, 2.0])
    p = conformal_p_values(calibration, np.array([0.0, 2.0, 2.5, 3.0, 9.0, np.nan]))
    expected = np.array([5, 4, 2, 2, 1]) / 5
    np.testing.assert_allclose(p[:5], expected)
    assert np.isnan(p[5])


def test_p_values_with_no_calibration_scores_are_one() -> None:
    np.testing.assert_array_equal(conformal_p_values(np.array([]), np.array([0.0, 5.0])), [1.0, 1.0])


# --- conformal thresholds -----------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.01, 0.05])
@pytest.mark.parametrize("n_calibration", [999, 1500])
def test_threshold_realised_fpr_on_fresh_normal_data_is_alpha(alpha: float, n_calibration: int) -> None:
    # Averaged over calibration sets, the false-positive rate is floor(alpha (n+1)) / (n+1): exactly
    # alpha when alpha (n+1) is whole, a hair below it otherwise. 300 repeats put the standard error
    # near 0.0002 (alpha 0.01) and 0.0005 (alpha 0.05).
    rng = np.random.default_rng(3)
    rates = []
    for _ in range(300):
        threshold = conformal_threshold(rng.lognormal(size=n_calibration), alpha)
        rates.append(np.mean(rng.lognormal(size=2000) > threshold))
    expected = math.floor(alpha * (n_calibration + 1)) / (n_calibration + 1)
    assert expected <= alpha
    assert abs(np.mean(rates) - expected) < 0.15 * alpha


def test_threshold_stays_conservative_when_scores_tie() -> None:
    rng = np.random.default_rng(4)
    alpha = 0.05
    rates = [
        np.mean(rng.poisson(3.0, size=2000) > conformal_threshold(rng.poisson(3.0, size=499), alpha))
        for _ in range(300)
    ]
    assert np.mean(rates) <= alpha + 0.003


def _assert_consistent(calibration: np.ndarray, alpha: float, probes: np.ndarray) -> None:
    threshold = conformal_threshold(calibration, alpha)
    p = conformal_p_values(calibration, probes)
    np.testing.assert_array_equal(probes > threshold, p <= alpha)


def test_threshold_and_p_values_agree_for_every_score_including_ties() -> None:
    rng = np.random.default_rng(5)
    # Awkward alphas too: 0.29 * 100 is 28.999999999999996 in floating point.
    alphas = [0.001, 0.01, 0.05, 0.07, 0.1, 0.29, 1 / 3, 0.5, 0.99, 1.0]
    for n in [0, 1, 2, 5, 19, 99, 100, 399]:
        # many ties; and none, where each rank is its own score (with heavy ties ranks 27 and 28,
        # which 0.29 tells apart, held one value: a threshold one rank off passed)
        for calibration in (rng.integers(0, 6, size=n).astype(float), np.arange(n, dtype=float)):
            values = np.unique(np.concatenate([calibration, [-1.0, max(6.0, n)]]))
            probes = np.concatenate([values, (values[:-1] + values[1:]) / 2, [-1e300, np.inf]])
            for alpha in [*alphas, *(j / (n + 1) for j in range(1, n + 2))]:
                _assert_consistent(calibration, alpha, probes)


@settings(max_examples=200, deadline=None)
@given(
    calibration=st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=60),
    alpha=st.floats(1e-4, 1.0),
    probes=st.lists(st.floats(-2e6, 2e6, allow_nan=False), min_size=1, max_size=20),
)
def test_threshold_and_p_values_agree_property(
    calibration: list[float], alpha: float, probes: list[float]
) -> None:
    _assert_consistent(np.array(calibration), alpha, np.array(probes + calibration))


def test_threshold_is_inf_when_alpha_is_too_small_for_n() -> None:
    calibration = np.linspace(0.0, 1.0, 50)
    # The smallest reachable p-value is 1/51 > 0.01, so nothing can be flagged.
    assert conformal_threshold(calibration, 0.01) == math.inf
    assert not np.any(np.array([1e9, np.inf]) > conformal_threshold(calibration, 0.01))
    # From alpha = 1/(n+1) on, a score above every calibration score is flagged.
    assert conformal_threshold(calibration, 1 / 51) == 1.0
    assert conformal_threshold(np.array([]), 0.5) == math.inf


def test_threshold_is_minus_inf_when_every_score_qualifies() -> None:
    assert conformal_threshold(np.array([1.0, 2.0, 3.0]), 1.0) == -math.inf


def test_a_class_is_calibrated_on_its_own_from_min_group_size_events_and_flags_from_one_over_n_plus_one() -> (
    None
):
    """The edges the mutation review found untested: a class of 499 calibration events is judged
    with the others, one of 500 on its own; and a class of n can flag at α = 1 / (n + 1), not below."""
    scores = np.random.default_rng(1).normal(size=3_000)
    classes = [4001] * 499 + [4002] * 500 + [4003] * 999 + [4004] * 1_002
    calibration = Calibration.fit(scores, classes)
    assert set(calibration.sizes()) == {"global", "class_uid=4002", "class_uid=4003", "class_uid=4004"}
    assert calibration.resolve([4001, 4002, 4003, 4004], 0.001) == [
        "global",
        "global",  # 500 events: 1/501 > 0.001
        "class_uid=4003",  # 999 events: 1/1,000 is 0.001
        "class_uid=4004",
    ]
    assert calibration.resolve([4002], 1 / 501) == ["class_uid=4002"]


def test_the_calibration_group_of_a_class_uid_as_producers_send_it() -> None:
    """A class_uid sent as text or as a whole float is that class (producers differ); what is no
    class number is calibrated with every event."""
    for value in (4001, 4001.0, "4001", " 4001 ", np.int64(4001), np.int32(4001), np.float32(4001)):
        assert group_key(value) == "class_uid=4001", value
    assert group_key(np.bool_(True)) == GLOBAL
    for value in (True, None, "-1", "4001x", "", 4001.5, -1, math.inf, "4" * 19, [4001]):
        assert group_key(value) == GLOBAL, value


def test_a_class_calibrated_on_too_few_events_for_alpha_is_judged_by_the_global_group() -> None:
    """A class of 600 calibration events gives no p-value below 1/601: at α = 0.001 its events are
    judged by the global group (3,000 events), not left where nothing can be flagged."""
    rng = np.random.default_rng(0)
    scores = rng.normal(size=3000)
    classes = [4001] * 600 + [4002] * 2400
    calibration = Calibration.fit(scores, classes)
    assert calibration.sizes() == {"global": 3000, "class_uid=4001": 600, "class_uid=4002": 2400}
    far = np.array([100.0, 100.0])
    groups = calibration.resolve([4001, 4002], alpha=0.001)
    assert groups == ["global", "class_uid=4002"]
    p_values = calibration.p_values(far, groups, 0.001)
    assert list(p_values) == [1 / 3001, 1 / 2401]
    assert (far > calibration.thresholds(groups, 0.001)).all()  # flagged, both
    assert calibration.resolve([4001, 4002], alpha=0.01) == ["class_uid=4001", "class_uid=4002"]


def test_a_small_class_is_judged_with_the_classes_that_fall_back_like_it_and_alpha_holds() -> None:
    """Mondrian's guarantee for the classes without a group of their own: judged against every
    calibration score, those of the classes calibrated on their own included, a small class that
    sits farther from its neighbours was flagged at 11% of its exchangeable normal events at α = 1%,
    and the whole at 1.9% (a statistical audit; the demo company: 4.3% of class 1007). Judged
    against the pooled classes that fall back like it, each stays within α."""
    rng = np.random.default_rng(0)
    classes = [1] * 3_000 + [2] * 300 + [3] * 200
    flagged: dict[str, list[float]] = {"1": [], "2": [], "3": [], "all": []}
    for _ in range(200):

        def draw() -> np.ndarray:
            return np.r_[
                rng.standard_normal(3_000), rng.standard_normal(300) + 3.0, rng.standard_normal(200) + 3.0
            ]

        calibration = Calibration.fit(draw(), classes)
        groups = calibration.resolve(classes, 0.01)
        assert set(groups) == {"class_uid=1", "global"}
        fresh = draw()
        at = calibration.p_values(fresh, groups, 0.01) <= 0.01
        assert (at == (fresh > calibration.thresholds(groups, 0.01))).all()
        for name, rows in (("1", slice(0, 3_000)), ("2", slice(3_000, 3_300)), ("3", slice(3_300, None))):
            flagged[name].append(float(at[rows].mean()))
        flagged["all"].append(float(at.mean()))
    means = {name: float(np.mean(rates)) for name, rates in flagged.items()}
    assert means["all"] <= 0.0105  # α, on average, within the draws' noise
    assert (300 * means["2"] + 200 * means["3"]) / 500 <= 0.0115  # the small classes, pooled, within α
    assert means["2"] < 0.02  # with every score as the reference: 11%
    assert means["3"] < 0.02
    # the pooled classes' own scores, exactly; every score where they are too few for α
    calibration = Calibration.fit(np.arange(3_500.0), classes)
    np.testing.assert_array_equal(calibration.scores_of("global", 0.01), np.arange(3_000.0, 3_500.0))
    assert calibration.scores_of("global", 0.001).size == 3_500  # 500 give no p-value below 1/501
    assert calibration.scores_of("class_uid=1", 0.001).size == 3_000


def test_threshold_picks_the_right_order_statistic() -> None:
    calibration = np.arange(1.0, 100.0)  # 1..99, n = 99
    # alpha (n+1) = 5: p(s) <= 0.05 iff at most 4 calibration scores are >= s, i.e. s > 95.
    assert conformal_threshold(calibration, 0.05) == 95.0
    assert conformal_threshold(calibration[::-1], 0.05) == 95.0


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, math.nan])
def test_threshold_rejects_alpha_outside_unit_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        conformal_threshold(np.array([1.0, 2.0]), alpha)


def test_nan_calibration_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        conformal_threshold(np.array([1.0, np.nan]), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        conformal_p_values(np.array([1.0, np.nan]), np.array([0.5]))


# --- detection report ---------------------------------------------------------------------------


def test_detection_report_on_a_hand_made_example() -> None:
    # Attacks score 0.35 and 0.8, normals 0.1 and 0.4: three of the four attack/normal pairs are
    # ordered right (ROC-AUC 0.75); ranking by score gives precision 1 at recall 1/2 and 2/3 at
    # recall 1 (average precision 5/6). The last row has no score and is left out everywhere.
    report = detection_report(
        labels=np.array([0, 0, 1, 1, 1]),
        scores=np.array([0.1, 0.4, 0.35, 0.8, np.nan]),
        flagged=np.array([False, True, False, True, True]),
    )
    assert report == pytest.approx(
        {
            "roc_auc": 0.75,
            "pr_auc": 5 / 6,
            "recall": 0.5,
            "fpr": 0.5,
            "n": 4,
            "n_attack": 2,
            "n_missing": 1,
        }
    )


def test_detection_report_perfect_and_single_class() -> None:
    perfect = detection_report(np.array([0, 0, 1]), np.array([0.0, 0.1, 5.0]), np.array([0, 0, 1]))
    assert perfect["roc_auc"] == 1.0
    assert perfect["pr_auc"] == 1.0
    assert perfect["recall"] == 1.0
    assert perfect["fpr"] == 0.0
    normal_only = detection_report(np.array([0, 0]), np.array([0.2, 0.9]), np.array([False, True]))
    assert math.isnan(normal_only["roc_auc"])
    assert math.isnan(normal_only["pr_auc"])
    assert math.isnan(normal_only["recall"])
    assert normal_only["fpr"] == 0.5
    assert normal_only["n_attack"] == 0


def test_detection_report_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        detection_report(np.array([0, 1]), np.array([0.1]), np.array([True, False]))
    with pytest.raises(ValueError, match="labels"):
        detection_report(np.array([0, 2]), np.array([0.1, 0.2]), np.array([True, False]))


def test_recall_at_fpr_is_the_roc_curve_at_that_rate() -> None:
    labels = np.array([0] * 10 + [1] * 4)
    scores = np.array([*range(10), 9.5, 8.5, 3.0, np.nan], dtype=np.float64)
    # 10% of ten normals: one (9) may score above the threshold, which is the second highest (8);
    # attacks 9.5 and 8.5 are above it, 3.0 is not, and the attack without a score is left out
    assert recall_at_fpr(labels, scores, 0.1) == pytest.approx(2 / 3)
    assert recall_at_fpr(labels, scores, 0.0) == pytest.approx(1 / 3)  # above every normal: 9.5 only
    assert recall_at_fpr(labels, scores, 1.0) == pytest.approx(1.0)
    # an attack scoring the threshold itself (8) is not above it: as a normal event there is not
    tied = np.array([*range(10), 9.5, 8.0, 3.0], dtype=np.float64)
    assert recall_at_fpr(np.array([0] * 10 + [1] * 3), tied, 0.1) == pytest.approx(1 / 3)


def test_the_threshold_at_a_rate_rounds_the_count_of_normal_events_above_it() -> None:
    """round(fpr × n) normal events above it: 1.4 of ten is one (the threshold the ninth score, 8),
    1.6 is two (7); neither floor nor ceiling."""
    normal = np.arange(10.0)
    assert threshold_at_fpr(normal, 0.14) == 8.0
    assert threshold_at_fpr(normal, 0.16) == 7.0
    assert threshold_at_fpr(normal, 1.0) == -math.inf


def test_recall_at_fpr_reproduces_a_thresholds_recall_at_the_rate_it_realised() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 1_000 + [1] * 300)
    scores = np.concatenate([rng.normal(0, 1, 1_000), rng.normal(2, 1, 300)])
    flagged = scores > np.quantile(scores[:1_000], 0.987)
    report = detection_report(labels, scores, flagged)
    assert recall_at_fpr(labels, scores, report["fpr"]) == pytest.approx(report["recall"])


def test_recall_at_fpr_is_undefined_without_both_classes_or_a_rate() -> None:
    assert math.isnan(recall_at_fpr(np.array([0, 0]), np.array([0.1, 0.2]), 0.1))
    assert math.isnan(recall_at_fpr(np.array([1, 1]), np.array([0.1, 0.2]), 0.1))
    assert math.isnan(recall_at_fpr(np.array([0, 1]), np.array([0.1, 0.2]), math.nan))


# --- how sure a figure is ---------------------------------------------------------------------


def test_wilson_intervals_are_the_published_ones_and_stay_inside_zero_and_one() -> None:
    # Newcombe (1998), table I: 15 of 148 gives 0.0624-0.1605; the 0 and n ends are not empty
    assert proportion_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert proportion_interval(0, 20) == (0.0, pytest.approx(0.1611, abs=1e-4))
    assert proportion_interval(20, 20) == (pytest.approx(0.8389, abs=1e-4), 1.0)
    assert all(math.isnan(x) for x in proportion_interval(0, 0))


def test_a_roc_auc_interval_covers_the_true_value_as_often_as_it_says() -> None:
    """Binormal scores (normal N(0, 1), attacks N(1, 1): ROC-AUC Φ(1/√2) = 0.7602), drawn 400 times; the
    95% interval should hold it about 380 times (here 386). Either class's term of the variance alone
    holds it about 335 times."""
    rng = np.random.default_rng(3)
    truth = stats.norm.cdf(1 / math.sqrt(2))
    labels = np.array([0] * 200 + [1] * 200)
    held = 0
    for _ in range(400):
        scores = np.concatenate([rng.normal(0, 1, 200), rng.normal(1, 1, 200)])
        low, high = roc_auc_interval(labels, scores)
        held += low <= truth <= high
    assert 364 <= held <= 392, held


def test_a_paired_difference_is_narrower_than_each_roc_auc_and_covers_a_zero_difference() -> None:
    """Two scores that share most of their signal (one is the other plus a little noise of equal size
    on both) have one true ROC-AUC: the paired interval of their difference covers 0 about 95% of the
    time, and is far narrower than either ROC-AUC's interval. Unpaired, it would cover 0 nearly always."""
    rng = np.random.default_rng(4)
    labels = np.array([0] * 300 + [1] * 100)
    held = 0
    for _ in range(400):
        signal = np.concatenate([rng.normal(0, 1, 300), rng.normal(1, 1, 100)])
        a, b = signal + rng.normal(0, 0.3, 400), signal + rng.normal(0, 0.3, 400)
        difference, low, high = roc_auc_difference(labels, a, b)
        held += low <= 0 <= high
        assert low <= difference <= high
    assert 364 <= held <= 392, held
    one_low, one_high = roc_auc_interval(labels, a)
    assert high - low < (one_high - one_low) / 2


def _delong_by_pairs(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's AUCs and covariance from the definition: every (attack, normal) pair, a tie half."""
    attack, normal = scores[:, labels == 1], scores[:, labels == 0]
    kernel = (attack[:, :, None] > normal[:, None, :]) + 0.5 * (attack[:, :, None] == normal[:, None, :])
    v10, v01 = kernel.mean(axis=2), kernel.mean(axis=1)
    return kernel.mean(axis=(1, 2)), np.cov(v10) / attack.shape[1] + np.cov(v01) / normal.shape[1]


def test_delong_from_midranks_is_delong_from_every_pair_with_ties() -> None:
    """Ties are common here (every event flagged for an impossible number shares one score): the
    midrank computation must count a tie as half a pair, as the definition does."""
    from scorer.metrics import _delong

    rng = np.random.default_rng(6)
    for _ in range(5):
        labels = rng.integers(0, 2, 120)
        scores = rng.integers(0, 6, (3, 120)).astype(np.float64)  # few values: many ties
        scores[1] += 2 * labels  # one that ranks attacks higher, so the rows differ
        aucs, covariance = _delong(labels, scores)
        expected_aucs, expected_covariance = _delong_by_pairs(labels, scores)
        np.testing.assert_allclose(aucs, expected_aucs, atol=1e-12)
        np.testing.assert_allclose(covariance, expected_covariance, atol=1e-12)


def test_a_perfect_ranking_has_no_interval_rather_than_a_certain_one() -> None:
    """DeLong's variance is 0 where every attack ranks above every normal event: an interval of
    1.0000-1.0000 would read as certainty, with two attacks as with two thousand."""
    labels = np.array([0, 0, 1, 1])
    assert all(math.isnan(x) for x in roc_auc_interval(labels, np.array([0.0, 1.0, 2.0, 3.0])))
    assert all(math.isnan(x) for x in roc_auc_interval(labels, np.zeros(4)))  # every pair tied
    difference, low, high = roc_auc_difference(labels, np.zeros(4), np.array([0.0, 1.0, 2.0, 3.0]))
    assert difference == -0.5
    assert math.isnan(low)
    assert math.isnan(high)


def test_roc_auc_intervals_leave_out_what_was_not_scored_and_need_two_of_each_class() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 0])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9, np.nan])
    low, high = roc_auc_interval(labels, scores)
    assert low <= detection_report(labels, scores, scores > 0.5)["roc_auc"] <= high
    assert all(math.isnan(x) for x in roc_auc_interval(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3])))
    # the event raw k-NN could not score is left out of both sides of the difference
    difference, _, _ = roc_auc_difference(labels, scores, np.where(np.arange(7) == 0, np.nan, scores))
    assert difference == 0.0


def test_thresholds_kept_for_the_alphas_clients_ask_are_bounded_and_stay_exact() -> None:
    """The service's ?alpha= reaches Calibration.thresholds: a threshold was kept for every (group,
    alpha) ever asked, for good, so a client sending distinct alphas grew every serving process
    without bound (20,000 alphas: 2.8 MB, and on)."""
    rng = np.random.default_rng(5)
    calibration = Calibration.fit(rng.normal(size=2_000), [4001] * 1_000 + [3002] * 1_000, min_group_size=500)
    groups = ["class_uid=4001", "class_uid=3002", "global"]
    for alpha in np.linspace(0.001, 0.2, 5_000):
        calibration.thresholds(groups, float(alpha))
    assert len(calibration._thresholds) <= MAX_THRESHOLDS
    for alpha in (0.01, 0.05, 0.123):  # after the clearing as before it
        expected = [conformal_threshold(calibration.groups[g], alpha) for g in groups]
        assert calibration.thresholds(groups, alpha).tolist() == expected
