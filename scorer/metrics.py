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

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import average_precision_score, roc_auc_score


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
    normal, attack = np.sort(s[y == 0])[::-1], s[y == 1]
    if not normal.size or not attack.size or math.isnan(fpr):
        return math.nan
    m = round(min(max(fpr, 0.0), 1.0) * normal.size)
    threshold = normal[m] if m < normal.size else -math.inf
    return float(np.mean(attack > threshold))
