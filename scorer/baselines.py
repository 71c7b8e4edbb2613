"""Two reference baselines that any learned model has to beat.

Both read the same raw feature matrix built straight from the OCSF JSON (no domain knowledge): every
leaf of the event, ``time`` and ``metadata`` aside, becomes a column. ``raw-knn`` scores an event by
its mean distance to the ``k`` nearest normal training events; ``isolation-forest`` by how easily an
isolation forest cuts it off. Both are fitted on normal events only and get their alarm threshold
from held-out normal events (split conformal, see :mod:`scorer.calibration`), exactly as a model would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import IsolationForest

from scorer.calibration import conformal_threshold
from scorer.io import DEEPEST_FIELD, OutOfRange
from scorer.knn import KnnIndex

Event = dict[str, Any]
FloatMatrix = NDArray[np.float32]
Scores = NDArray[np.float64]

# Top-level keys that carry no behaviour: the clock and the producer's bookkeeping (ids, versions).
_SKIPPED_TOP_LEVEL = frozenset({"time", "metadata"})
_CLIP = 10.0
_MIN_STD = 1e-9
_SEARCH_CHUNK = 4096
# A string path's columns are its most common values, at most this many (the rest encode as a
# value never seen): a path unique per event (a connection's uid) made a column of every event,
# a matrix of events × events (4.7 GB for 20,000 training events). No string path of the
# benchmarks' data holds this many (the demo's most, 1,257).
_MOST_VALUES = 2000


def _most_common(values: Sequence[str]) -> list[str]:
    """The ``_MOST_VALUES`` most common of ``values``, in sorted order (all of them, when fewer)."""
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    if len(counts) <= _MOST_VALUES:
        return sorted(counts)
    return sorted(sorted(counts, key=lambda value: (-counts[value], value))[:_MOST_VALUES])


@dataclass
class _Columns:
    """Leaves of a batch of events gathered per dotted path: the rows they occur in and their values."""

    n_rows: int
    numeric: dict[str, tuple[list[int], list[float]]]
    strings: dict[str, tuple[list[int], list[str]]]


class _Slot:
    """What one key of one JSON object (at one position in the tree) holds across a batch of events."""

    __slots__ = ("child", "numeric_rows", "numeric_values", "string_rows", "string_values")

    def __init__(self) -> None:
        self.child: dict[str, _Slot] | None = None
        self.numeric_rows: list[int] = []
        self.numeric_values: list[float] = []
        self.string_rows: list[int] = []
        self.string_values: list[str] = []


def _gather(events: Sequence[Event]) -> _Columns:
    # Walk each event alongside a tree of slots that mirrors the JSON: a leaf costs one dict lookup by
    # a key string whose hash orjson already cached, and no dotted path is built until the end.
    root: dict[str, _Slot] = {}

    def walk(obj: dict[str, Any], node: dict[str, _Slot], row: int, depth: int = 1) -> None:
        for key, value in obj.items():
            slot = node.get(key)
            if slot is None:
                slot = node[key] = _Slot()
            kind = type(value)
            if kind is dict:
                if depth == DEEPEST_FIELD:
                    continue  # no feature lies this deep
                if slot.child is None:
                    slot.child = {}
                walk(value, slot.child, row, depth + 1)
            elif kind is str:
                slot.string_rows.append(row)
                slot.string_values.append(value)
            elif kind is int or kind is float or kind is bool or kind is OutOfRange:
                slot.numeric_rows.append(row)
                slot.numeric_values.append(value)
            # Lists and nulls are left out: a list has no fixed column, a null is a missing value.

    for row, event in enumerate(events):
        if _SKIPPED_TOP_LEVEL.isdisjoint(event):
            walk(event, root, row)
        else:
            walk({k: v for k, v in event.items() if k not in _SKIPPED_TOP_LEVEL}, root, row)

    columns = _Columns(len(events), {}, {})

    def collect(node: dict[str, _Slot], prefix: str) -> None:
        for key, slot in node.items():
            path = prefix + key
            # Merging covers the odd event that spells one path two ways ({"a.b": 1} and {"a": {"b": 2}}).
            if slot.numeric_rows:
                rows, values = columns.numeric.setdefault(path, ([], []))
                rows += slot.numeric_rows
                values += slot.numeric_values
            if slot.string_rows:
                rows_s, values_s = columns.strings.setdefault(path, ([], []))
                rows_s += slot.string_rows
                values_s += slot.string_values
            if slot.child is not None:
                collect(slot.child, f"{path}.")

    collect(root, "")
    return columns


def _floats(values: list[float]) -> NDArray[np.float64]:
    return np.fromiter(values, dtype=np.float64, count=len(values))


def _indices(rows: list[int]) -> NDArray[np.intp]:
    return np.fromiter(rows, dtype=np.intp, count=len(rows))


def _signed_log1p(values: NDArray[np.float64]) -> NDArray[np.float64]:
    # Byte and packet counts span nine orders of magnitude; the log keeps one flow from dominating.
    return np.sign(values) * np.log1p(np.abs(values))


class RawFeatureEncoder:
    """OCSF events → dense float32 matrix, learnt from training events without any schema knowledge.

    Every leaf is flattened to its dotted path (``traffic.bytes_out``); top-level ``time`` and the
    whole ``metadata`` object are left out, and so are lists and nulls.

    * Numeric leaves (bools as 0/1) become ``sign(x)·log1p(|x|)``, standardised by the training mean
      and standard deviation (a deviation below 1e-9 counts as 1, so a field constant in training
      does not divide by zero) and clipped to ±10. A missing value encodes as 0, the training mean.
    * String leaves become one-hot columns over the values seen in training; an unseen value, or a
      missing field, encodes as all zeros.

    Paths never seen in training are ignored.
    """

    def __init__(self) -> None:
        self.numeric_paths: list[str] = []
        self.means: NDArray[np.float64] = np.zeros(0)
        self.stds: NDArray[np.float64] = np.ones(0)
        self.vocabularies: dict[str, dict[str, int]] = {}
        self.n_features = 0
        self._fitted = False

    @property
    def feature_names(self) -> list[str]:
        """Column names: numeric paths, then ``path=value`` for each one-hot column."""
        names = list(self.numeric_paths)
        for path, vocabulary in self.vocabularies.items():
            names.extend(f"{path}={value}" for value in vocabulary)
        return names

    def fit(self, events: Sequence[Event]) -> Self:
        """Learn the columns, means, deviations and vocabularies from ``events``."""
        self._fit_columns(_gather(events))
        return self

    def fit_transform(self, events: Sequence[Event]) -> FloatMatrix:
        """``fit(events)`` then ``transform(events)``, walking the events only once."""
        columns = _gather(events)
        self._fit_columns(columns)
        return self._encode(columns)

    def transform(self, events: Sequence[Event]) -> FloatMatrix:
        """Encode ``events`` as a ``(len(events), n_features)`` float32 matrix."""
        if not self._fitted:
            raise RuntimeError("RawFeatureEncoder.transform called before fit")
        return self._encode(_gather(events))

    def _fit_columns(self, columns: _Columns) -> None:
        if columns.n_rows == 0:
            raise ValueError("cannot fit on zero events")
        self.numeric_paths = sorted(columns.numeric)
        means = np.empty(len(self.numeric_paths))
        stds = np.empty(len(self.numeric_paths))
        for j, path in enumerate(self.numeric_paths):
            values = _signed_log1p(_floats(columns.numeric[path][1]))
            means[j] = values.mean()
            std = values.std()
            stds[j] = std if std >= _MIN_STD else 1.0
        self.means, self.stds = means, stds
        offset = len(self.numeric_paths)
        self.vocabularies = {}
        for path in sorted(columns.strings):
            vocabulary: dict[str, int] = {}
            for value in _most_common(columns.strings[path][1]):
                vocabulary[value] = offset
                offset += 1
            self.vocabularies[path] = vocabulary
        self.n_features = offset
        self._fitted = True

    def _encode(self, columns: _Columns) -> FloatMatrix:
        matrix = np.zeros((columns.n_rows, self.n_features), dtype=np.float32)
        for j, path in enumerate(self.numeric_paths):
            present = columns.numeric.get(path)
            if present is None:
                continue
            rows, raw = present
            values = (_signed_log1p(_floats(raw)) - self.means[j]) / self.stds[j]
            matrix[_indices(rows), j] = np.clip(values, -_CLIP, _CLIP)
        for path, vocabulary in self.vocabularies.items():
            present_s = columns.strings.get(path)
            if present_s is None:
                continue
            rows_s, raw_s = present_s
            targets = np.fromiter((vocabulary.get(v, -1) for v in raw_s), dtype=np.intp, count=len(raw_s))
            known = targets >= 0
            matrix[_indices(rows_s)[known], targets[known]] = 1.0
        return matrix


class RawFeatureKNN:
    """Mean L2 distance to the ``k`` nearest normal training events in the raw feature space.

    Exact search (:class:`scorer.knn.KnnIndex`). ``k`` is capped at the number of training events.
    """

    name = "raw-knn"

    def __init__(self, k: int = 20) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.encoder = RawFeatureEncoder()
        self._index: KnnIndex | None = None

    def fit(self, events: Sequence[Event]) -> Self:
        """Learn the encoding from normal ``events`` and index them."""
        encoder = RawFeatureEncoder()
        return self.fit_encoded(encoder, encoder.fit_transform(events))

    def fit_encoded(self, encoder: RawFeatureEncoder, features: FloatMatrix) -> Self:
        """Index ``features``, the training events already encoded by the fitted ``encoder``."""
        if features.shape[1] == 0:
            raise ValueError("the training events have no usable feature")
        self.encoder = encoder
        self._index = KnnIndex.build(features, k=self.k, ann_threshold=len(features))  # always exact
        return self

    def score(self, events: Sequence[Event]) -> Scores:
        """Anomaly scores of ``events`` (higher = more anomalous)."""
        return self.score_encoded(self.encoder.transform(events))

    def score_encoded(self, features: FloatMatrix) -> Scores:
        """Anomaly scores of events already encoded by this model's encoder."""
        if self._index is None:
            raise RuntimeError("RawFeatureKNN.score called before fit")
        scores = np.empty(len(features), dtype=np.float64)
        for start in range(0, len(features), _SEARCH_CHUNK):
            distances, _ = self._index.search(features[start : start + _SEARCH_CHUNK], self.k)
            scores[start : start + len(distances)] = distances.mean(axis=1, dtype=np.float64)
        return scores


class IsolationForestBaseline:
    """scikit-learn's IsolationForest (200 trees) on the raw feature matrix; score = ``-score_samples``."""

    name = "isolation-forest"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.encoder = RawFeatureEncoder()
        self._forest: IsolationForest | None = None

    def fit(self, events: Sequence[Event]) -> Self:
        """Learn the encoding from normal ``events`` and grow the forest on them."""
        encoder = RawFeatureEncoder()
        return self.fit_encoded(encoder, encoder.fit_transform(events))

    def fit_encoded(self, encoder: RawFeatureEncoder, features: FloatMatrix) -> Self:
        """Grow the forest on ``features``, the training events already encoded by ``encoder``."""
        self.encoder = encoder
        forest = IsolationForest(n_estimators=200, random_state=self.seed, n_jobs=-1)
        forest.fit(features)
        self._forest = forest
        return self

    def score(self, events: Sequence[Event]) -> Scores:
        """Anomaly scores of ``events`` (higher = more anomalous)."""
        return self.score_encoded(self.encoder.transform(events))

    def score_encoded(self, features: FloatMatrix) -> Scores:
        """Anomaly scores of events already encoded by this model's encoder."""
        if self._forest is None:
            raise RuntimeError("IsolationForestBaseline.score called before fit")
        if len(features) == 0:  # scikit-learn refuses an empty batch
            return np.empty(0, dtype=np.float64)
        return np.asarray(-self._forest.score_samples(features), dtype=np.float64)


@dataclass
class BaselineResult:
    """One baseline's verdict on the test events: scores, the conformal threshold and the alarms."""

    name: str
    scores: np.ndarray
    threshold: float
    flagged: np.ndarray


class Baselines:
    """Both baselines fitted on normal events, each with its threshold at ``alpha``, to score test
    events a batch at a time (an event's scores do not depend on the batch it comes in)."""

    def __init__(
        self, train_normal_events: Sequence[Event], *, alpha: float = 0.01, seed: int = 0, k: int = 20
    ) -> None:
        """``train_normal_events`` is shuffled with ``seed``; four fifths fit the encoder and the
        models, the remaining fifth (at least one event) is held out to set each threshold with
        :func:`scorer.calibration.conformal_threshold`. An event is flagged when its score exceeds
        the threshold, so on normal test events the expected false-positive rate is at most ``alpha``."""
        if len(train_normal_events) < 2:
            raise ValueError("need at least two normal training events (one to fit, one to calibrate)")
        order = np.random.default_rng(seed).permutation(len(train_normal_events))
        n_calibration = max(1, len(order) // 5)
        calibration = [train_normal_events[i] for i in order[:n_calibration]]
        fitting = [train_normal_events[i] for i in order[n_calibration:]]
        # One encoding shared by both baselines: they are specified on the same raw feature matrix.
        self.encoder = RawFeatureEncoder()
        fit_features = self.encoder.fit_transform(fitting)
        calibration_features = self.encoder.transform(calibration)
        self.models: list[RawFeatureKNN | IsolationForestBaseline] = [
            RawFeatureKNN(k=k).fit_encoded(self.encoder, fit_features),
            IsolationForestBaseline(seed=seed).fit_encoded(self.encoder, fit_features),
        ]
        self.thresholds = [
            conformal_threshold(model.score_encoded(calibration_features), alpha) for model in self.models
        ]

    def score(self, events: Sequence[Event]) -> list[Scores]:
        """Each baseline's scores of ``events``: ``raw-knn``'s, then ``isolation-forest``'s."""
        features = self.encoder.transform(events)
        return [model.score_encoded(features) for model in self.models]

    def results(self, scores: Sequence[Scores]) -> list[BaselineResult]:
        """Each baseline's verdicts on the events ``scores`` (as :meth:`score` gives them) hold."""
        return [
            BaselineResult(model.name, each, threshold, each > threshold)
            for model, each, threshold in zip(self.models, scores, self.thresholds, strict=True)
        ]


def run_baselines(
    train_normal_events: list[dict[str, Any]],
    test_events: list[dict[str, Any]],
    *,
    alpha: float = 0.01,
    seed: int = 0,
    k: int = 20,
) -> list[BaselineResult]:
    """Fit both baselines on normal events, set their thresholds at ``alpha`` (:class:`Baselines`),
    and score ``test_events``. Returns ``raw-knn`` then ``isolation-forest``."""
    baselines = Baselines(train_normal_events, alpha=alpha, seed=seed, k=k)
    return baselines.results(baselines.score(test_events))
