"""Split-conformal calibration: raw scores → p-values and verdicts at a target false-positive rate.

Held-out normal events, which neither trained the encoder nor sit in the index, are scored exactly
as serving scores. For a new score ``s`` against ``n`` calibration scores,
``p = (1 + #{calibration ≥ s}) / (n + 1)``; the event is anomalous when ``p ≤ α``. If normal
events at scoring time are exchangeable with the calibration events, the false-positive rate is
at most α (within about 1/n of it; a little under once the calibration events join the baseline,
which can only bring later events nearer). Per-``class_uid`` calibration where a class has enough
events, since classes differ in how far their normal events sit from their neighbours. The rest
(``global``) are judged, Mondrian's way, against the calibration scores of the classes that fall
back like them at that α, pooled; against every score only where those few cannot flag at α.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

GLOBAL = "global"
BOOLS, FLOATS = (bool, np.bool_), (float, np.floating)
MIN_GROUP_SIZE = 500

Floats = npt.NDArray[np.float64]


def _calibration(calibration_scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    cal = np.asarray(calibration_scores, dtype=np.float64).ravel()
    if np.isnan(cal).any():
        # A NaN has no rank, so it would silently shift every p-value; refuse rather than guess.
        raise ValueError("calibration scores contain NaN")
    return np.sort(cal)


def _p_value_from_count(count: int, n: int) -> float:
    # The one formula both functions use, so that threshold and p-values round identically.
    return (1.0 + count) / (n + 1.0)


def conformal_p_values(calibration_scores: npt.ArrayLike, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Split-conformal p-values ``p(s) = (1 + #{cal >= s}) / (n + 1)`` of ``scores``.

    ``calibration_scores`` are the scores of ``n`` held-out normal events. Small p-values mean
    anomalous. If ``s`` and the calibration scores are exchangeable, ``P(p(s) <= a) <= a`` for every
    ``a`` (with equality at ``a = j / (n + 1)`` when there are no ties). A NaN score gets a NaN p-value.
    """
    return _p_values_sorted(_calibration(calibration_scores), np.asarray(scores, dtype=np.float64))


def _p_values_sorted(cal: npt.NDArray[np.float64], s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    n = len(cal)
    # side="left": the count of calibration scores strictly below s, so n minus it counts cal >= s.
    at_least = n - np.searchsorted(cal, s, side="left")
    p = (1.0 + at_least) / (n + 1.0)
    return np.where(np.isnan(s), np.nan, p)


def conformal_threshold(calibration_scores: npt.ArrayLike, alpha: float) -> float:
    """The score threshold of the conformal test at level ``alpha``: flag ``s`` iff ``s > threshold``.

    For every score ``s`` above ``-inf`` (ties with calibration scores included), ``s > threshold``
    exactly when ``conformal_p_values(calibration_scores, [s]) <= alpha``. The threshold is one of the
    calibration scores, ``+inf`` when ``alpha < 1 / (n + 1)`` (no score can reach so small a p-value
    with ``n`` calibration scores, so nothing is flagged), and ``-inf`` when every score qualifies.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha}")
    cal = _calibration(calibration_scores)
    n = len(cal)
    # p(s) <= alpha  <=>  #{cal >= s} <= m, with m the largest count whose p-value is <= alpha.
    # floor() of alpha * (n + 1) can be one off in floating point, so settle m with the exact formula.
    m = math.floor(alpha * (n + 1)) - 1
    while m + 1 <= n and _p_value_from_count(m + 1, n) <= alpha:
        m += 1
    while m >= 0 and _p_value_from_count(m, n) > alpha:
        m -= 1
    if m < 0:
        return math.inf
    if m >= n:
        return -math.inf
    # #{cal >= s} <= m  <=>  s exceeds the (m + 1)-th largest calibration score.
    return float(cal[n - 1 - m])


def group_key(value: Any) -> str:
    """The calibration group of a ``class_uid`` value: ``class_uid=4001``, or ``global`` if it is not one."""
    if type(value) is int:  # JSON's, nearly always: no other check (a batch asks once an event)
        return f"class_uid={value}" if 0 <= value < 10**18 else GLOBAL
    if isinstance(value, BOOLS) or value is None:
        return GLOBAL
    if isinstance(value, np.integer):  # a dataframe's column (pandas, Arrow's to_numpy)
        value = int(value)
    if isinstance(value, FLOATS) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    if (
        isinstance(value, str)
        and value.strip().isascii()
        and value.strip().isdigit()
        and len(value.strip()) <= 18
    ):
        value = int(value)
    if isinstance(value, int) and 0 <= value < 10**18:
        return f"class_uid={value}"
    return GLOBAL


MAX_THRESHOLDS = 1024  # (group, alpha) thresholds kept: the configured alpha's, and a few a client asks for


@dataclass
class Calibration:
    """Sorted calibration scores per group (``global`` plus classes with enough events)."""

    groups: dict[str, Floats]
    min_group_size: int = MIN_GROUP_SIZE
    classes: frozenset[str] = frozenset()  # every class seen in calibration, calibrated on its own or not
    _thresholds: dict[tuple[str, float], float] = field(default_factory=dict, repr=False, compare=False)
    _rests: dict[tuple[str, ...], Floats] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def fit(
        cls, scores: npt.ArrayLike, class_uids: Sequence[Any], *, min_group_size: int = MIN_GROUP_SIZE
    ) -> Calibration:
        values = np.asarray(scores, dtype=np.float64)
        if values.size == 0:
            raise ValueError("calibration needs at least one held-out score")
        keys = np.array([group_key(v) for v in class_uids])
        groups = {GLOBAL: np.sort(values)}
        for key in sorted(set(keys.tolist()) - {GLOBAL}):
            members = values[keys == key]
            if members.size >= min_group_size:
                groups[key] = np.sort(members)
        seen = frozenset(key.removeprefix("class_uid=") for key in keys.tolist() if key != GLOBAL)
        return cls(groups=groups, min_group_size=min_group_size, classes=seen)

    def class_labels(self, class_uids: Sequence[Any]) -> list[str]:
        """Each event's class for metrics: a class seen in calibration, else ``other`` (bounded)."""
        return [
            c if (c := group_key(v).removeprefix("class_uid=")) in self.classes else "other"
            for v in class_uids
        ]

    def resolve(self, class_uids: Sequence[Any], alpha: float) -> list[str]:
        """The calibration group of each event: its class where calibrated on enough events to flag
        at ``alpha`` (n of them give no p-value below 1 / (n + 1): at α = 0.001 a class of 600
        would flag nothing), else global (:meth:`scores_of`)."""
        usable = self._usable(alpha)
        return [key if (key := group_key(v)) in usable else GLOBAL for v in class_uids]

    def _usable(self, alpha: float) -> set[str]:
        return {key for key, held in self.groups.items() if key != GLOBAL and _reaches(held, alpha)}

    def scores_of(self, key: str, alpha: float) -> Floats:
        """The calibration scores group ``key`` is judged against at ``alpha``. A class's own; for
        ``global``, those of the classes judged there at ``alpha`` (and of events of no class),
        pooled: an event of a small class is exchangeable with them, not with the classes
        calibrated on their own (judged against every score, a class of the demo company was
        flagged at 4.3% of its normal events at α = 1%: a statistical audit). Every score where
        those few cannot flag at ``alpha``, or every class is calibrated on its own (an event of
        a class calibration never saw, or of none, is judged so)."""
        everything = self.groups[GLOBAL]
        if key != GLOBAL:
            return self.groups[key]
        own = tuple(sorted(self._usable(alpha)))
        rest = self._rests.get(own)
        if rest is None:
            rest = self._rests[own] = _without(everything, [self.groups[k] for k in own])
        return rest if _reaches(rest, alpha) else everything

    def p_values(self, scores: npt.ArrayLike, groups: Sequence[str], alpha: float) -> Floats:
        """The p-value of each score in its group (:meth:`resolve` at ``alpha``)."""
        values = np.asarray(scores, dtype=np.float64)
        out = np.full(values.shape, np.nan)
        keys = np.asarray(groups)
        for key in set(groups):
            rows = keys == key
            out[rows] = _p_values_sorted(self.scores_of(key, alpha), values[rows])  # sorted when built
        return out

    def thresholds(self, groups: Sequence[str], alpha: float) -> Floats:
        per_group = {key: self._threshold(key, alpha) for key in set(groups)}
        return np.array([per_group[g] for g in groups], dtype=np.float64)

    def _threshold(self, key: str, alpha: float) -> float:
        found = self._thresholds.get((key, alpha))
        if found is None:
            if len(self._thresholds) >= MAX_THRESHOLDS:  # every ?alpha= a client ever sent was kept
                self._thresholds.clear()
            found = self._thresholds[(key, alpha)] = conformal_threshold(self.scores_of(key, alpha), alpha)
        return found

    @property
    def smallest_alpha(self) -> float:
        """The smallest p-value the global group can give, 1 / (n + 1): below it nothing is flagged
        (a class's own group holds at least ``min_group_size`` events)."""
        return 1.0 / (self.groups[GLOBAL].size + 1.0)

    def sizes(self) -> dict[str, int]:
        return {key: int(v.size) for key, v in self.groups.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_group_size": self.min_group_size,
            "classes": sorted(self.classes),
            "groups": {key: v.tolist() for key, v in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        groups = {str(k): np.sort(np.asarray(v, dtype=np.float64)) for k, v in data["groups"].items()}
        if GLOBAL not in groups or any(
            v.ndim != 1 or v.size == 0 or np.isnan(v).any() for v in groups.values()
        ):
            raise ValueError("calibration.json needs a non-empty 'global' group of finite scores")
        classes = frozenset(str(c) for c in data.get("classes", []))
        return cls(groups=groups, min_group_size=int(data["min_group_size"]), classes=classes)


def _reaches(held: Floats, alpha: float) -> bool:
    """Whether ``held`` calibration scores can give a p-value of ``alpha`` or less: 1 / (n + 1) ≤ α."""
    return held.size > 0 and 1.0 / (held.size + 1.0) <= alpha


def _without(everything: Floats, parts: list[Floats]) -> Floats:
    """The sorted scores of ``everything`` less those of ``parts`` (each one's scores are among
    them, as :meth:`Calibration.fit` builds the groups), as a multiset. Where a part's scores are
    not all there (a calibration.json written by hand), every score."""
    if not parts:
        return everything
    values, counts = np.unique(everything, return_counts=True)
    gone, gone_counts = np.unique(np.concatenate(parts), return_counts=True)
    at = np.searchsorted(values, gone)
    if (at >= len(values)).any() or (values[np.minimum(at, len(values) - 1)] != gone).any():
        return everything
    counts[at] -= gone_counts
    if (counts < 0).any():
        return everything
    return np.repeat(values, counts)
