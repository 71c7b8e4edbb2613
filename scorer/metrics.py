"""Detection metrics and split-conformal thresholds.

A detector is judged on two things: how well its scores rank attacks above normal events (ROC-AUC,
PR-AUC) and what its alarm rule does at a chosen false-alarm budget ``alpha`` (recall on attacks,
realised false-positive rate on normal events). The alarm rule comes from split conformal
prediction: a score's p-value is its rank among scores of held-out normal events, and an event is
flagged when its p-value is at most ``alpha``. For exchangeable normal events that bounds the
expected false-positive rate by ``alpha`` whatever the score distribution.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

LEVEL = 0.95  # of every interval below


def detection_report(labels: ArrayLike, scores: ArrayLike, flagged: ArrayLike) -> dict[str, float]:
    """Summarise how well ``scores`` and the alarm decisions ``flagged`` separate attacks from normal events.

    Args:
        labels: 1 for an attack, 0 for a normal event.
        scores: anomaly scores, higher = more anomalous. NaN means the event could not be scored.
        flagged: the alarm decision for each event (truthy = flagged).

    Returns:
        ``roc_auc``, ``pr_auc`` (average precision, attacks as the positive class), ``recall``
        (share of attacks flagged), ``fpr`` (share of normal events flagged), ``n`` (events scored),
        ``n_attack`` (attacks among them) and ``n_missing`` (events left out for a NaN score).
        Rows with a NaN score are left out of every figure. A figure that is undefined for the data
        (an AUC with a single class present, recall without attacks, FPR without normal events) is NaN.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    f = np.asarray(flagged).astype(bool)
    if not (y.ndim == s.ndim == f.ndim == 1) or not (len(y) == len(s) == len(f)):
        raise ValueError(
            f"labels, scores and flagged must be 1-D and of one length, got {y.shape}, {s.shape}, {f.shape}"
        )
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (attack)")
    y = y.astype(np.int64)

    present = ~np.isnan(s)
    n_missing = int(len(s) - present.sum())
    y, s, f = y[present], s[present], f[present]
    attack = y == 1
    n_attack = int(attack.sum())
    n_normal = len(y) - n_attack

    two_classes = n_attack > 0 and n_normal > 0
    # sklearn warns and returns NaN (or raises) on one class; NaN says "undefined" without the noise.
    roc_auc = float(roc_auc_score(y, s)) if two_classes else math.nan
    pr_auc = float(average_precision_score(y, s)) if two_classes else math.nan
    recall = float(f[attack].mean()) if n_attack else math.nan
    fpr = float(f[~attack].mean()) if n_normal else math.nan
    return {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "recall": recall,
        "fpr": fpr,
        "n": len(y),
        "n_attack": n_attack,
        "n_missing": n_missing,
    }


def recall_at_fpr(labels: ArrayLike, scores: ArrayLike, fpr: float) -> float:
    """Recall of ``scores`` at the false-positive rate ``fpr``: the point of their ROC curve there.

    Compares scores at one false-alarm budget, whatever their own thresholds realised. With ``m`` =
    ``round(fpr × normal events)``, the threshold is the ``m + 1``-th highest normal score, so that
    ``m`` normal events score above it (fewer where scores tie), and an attack counts when it scores
    above it too. NaN scores are left out; NaN when either class is missing or ``fpr`` is NaN.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D and of one length, got {y.shape} and {s.shape}")
    present = ~np.isnan(s)
    y, s = y[present], s[present]
    normal, attack = np.sort(s[y == 0]), s[y == 1]
    if not normal.size or not attack.size or math.isnan(fpr):
        return math.nan
    return float(np.mean(attack > threshold_at_fpr(normal, fpr)))


def threshold_at_fpr(normal: np.ndarray, fpr: float) -> float:
    """The threshold at false-positive rate ``fpr`` among ``normal`` scores (sorted ascending, not
    empty, no NaN): with ``m = round(fpr × len(normal))``, the ``m + 1``-th highest, so that ``m``
    of them score above it (fewer where scores tie); -inf where ``m`` is every one of them."""
    m = round(min(max(fpr, 0.0), 1.0) * normal.size)
    return float(normal[normal.size - 1 - m]) if m < normal.size else -math.inf


def proportion_interval(hits: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson's score interval for a share ``hits / n`` (a recall, a realised false-positive rate).

    Unlike the normal approximation it stays within [0, 1] and is not empty at 0 or ``n`` hits,
    which is where a false-positive rate near a small α lies. (NaN, NaN) when ``n`` is 0.
    """
    if n <= 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    share = hits / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    low = 0.0 if hits <= 0 else max(0.0, centre - half)  # exactly, not a rounding error's 1e-17
    return low, 1.0 if hits >= n else min(1.0, centre + half)


def _delong(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUCs of the rows of ``scores`` (k × n) and their covariance matrix, by DeLong's method
    (DeLong, DeLong and Clarke-Pearson, 1988), computed from midranks as Sun and Xu (2014) do."""
    attack = labels == 1
    positives, negatives = scores[:, attack], scores[:, ~attack]
    m, n = positives.shape[1], negatives.shape[1]
    within_positives = rankdata(positives, axis=1)
    within_negatives = rankdata(negatives, axis=1)
    overall = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    aucs = (overall[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (overall[:, :m] - within_positives) / n  # each attack's share of normal events below it
    v01 = 1.0 - (overall[:, m:] - within_negatives) / m  # each normal event's share of attacks above it
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def _usable(labels: ArrayLike, *scores: ArrayLike) -> tuple[np.ndarray, np.ndarray] | None:
    """Labels and the score rows on the events every score scored, or None without two of each class."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or y.ndim != 1 or s.shape[1] != len(y):
        raise ValueError(f"labels and scores must be 1-D and of one length, got {y.shape} and {s.shape[1:]}")
    present = ~np.isnan(s).any(axis=0)
    y, s = y[present], s[:, present]
    attacks = int((y == 1).sum())
    return (y, s) if attacks >= 2 and len(y) - attacks >= 2 else None


def roc_auc_interval(labels: ArrayLike, scores: ArrayLike, level: float = LEVEL) -> tuple[float, float]:
    """DeLong's interval for the ROC-AUC of ``scores`` (NaN scores left out, as
    :func:`detection_report` leaves them); (NaN, NaN) without two attacks and two normal events, or
    where DeLong's variance is 0 (every attack above every normal event, say): not that it is sure."""
    usable = _usable(labels, scores)
    if usable is None:
        return math.nan, math.nan
    aucs, covariance = _delong(*usable)
    variance = float(covariance[0, 0])
    if not variance > 1e-15:  # every attack on one side of every normal event, or all tied: no spread to read
        return math.nan, math.nan
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(variance)
    return max(0.0, float(aucs[0]) - half), min(1.0, float(aucs[0]) + half)


def roc_auc_difference(
    labels: ArrayLike, scores: ArrayLike, reference: ArrayLike, level: float = LEVEL
) -> tuple[float, float, float]:
    """ROC-AUC of ``scores`` minus that of ``reference`` on the same events, and DeLong's interval
    for the difference: paired, so the events both rank alike do not widen it. Events either
    score left unscored are left out of both. (NaN, NaN, NaN) without two of each class; the
    interval NaN where DeLong's variance of the difference is 0."""
    usable = _usable(labels, scores, reference)
    if usable is None:
        return math.nan, math.nan, math.nan
    aucs, covariance = _delong(*usable)
    difference = float(aucs[0] - aucs[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    if not variance > 1e-15:  # the two rank every pair alike (or perfectly): DeLong reads no spread
        return difference, math.nan, math.nan
    half = NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(variance)
    return difference, difference - half, difference + half
