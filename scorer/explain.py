"""Why an event scored as it did: the fields on which it differs most from its nearest baseline events."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.features.encoder import MISSING_INDEX, UNKNOWN_INDEX, EncodedBatch, FeatureEncoder, compile_getter
from scorer.features.spec import FeatureDef

Event = dict[str, Any]


@dataclass
class Reason:
    field: str
    value: Any
    typical: Any
    deviation: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": self.value,
            "typical": self.typical,
            "deviation": round(self.deviation, 3),
        }


def find_reasons(
    encoder: FeatureEncoder,
    baseline: EncodedBatch,
    events: Sequence[Event],
    encoded: EncodedBatch,
    neighbours: npt.NDArray[np.int64],
    n_reasons: int,
) -> list[list[Reason]]:
    """The fields on which each event differs most from its neighbours.

    Numbers: the gap to the neighbours' median in robust standard deviations (a missing value
    where the neighbours have one counts 3). Categories: the share of neighbours with another
    value, times 3, or times 5 for a value never seen in training.
    """
    nbr = np.where(neighbours >= 0, neighbours, 0)
    numeric = encoder.numeric_features
    n_numeric = len(numeric)
    n_values = len(encoder.numeric_columns) - n_numeric
    starts = encoder.numeric_value_starts
    nbr_num = baseline.num[nbr]  # (n, k, columns)
    median = np.median(nbr_num[:, :, :n_values], axis=1) if n_values else np.zeros((len(events), 0))
    numeric_dev = np.zeros((len(events), n_numeric), dtype=np.float64)
    if n_numeric:
        gap = np.maximum.reduceat(np.abs(encoded.num[:, :n_values] - median), starts, axis=1)
        missing = encoded.num[:, n_values:]
        missing_gap = np.abs(missing - nbr_num[:, :, n_values:].mean(axis=1))
        numeric_dev = np.where(missing > 0, 3.0 * missing_gap, gap)
    nbr_cat = baseline.cat[nbr]  # (n, k, categorical)
    differs = (nbr_cat != encoded.cat[:, None, :]).mean(axis=1)
    categorical_dev = np.where(encoded.cat == UNKNOWN_INDEX, 5.0, 3.0) * differs
    matrix = np.concatenate([numeric_dev, categorical_dev], axis=1)
    fields: list[FeatureDef] = numeric + encoder.categorical_features
    n_reasons = min(n_reasons, matrix.shape[1])
    top = np.argsort(-matrix, axis=1)[:, :n_reasons]
    getters = [compile_getter(f.path) for f in fields]
    out: list[list[Reason]] = []
    for row, event in enumerate(events):
        reasons = []
        for f in top[row].tolist():
            deviation = float(matrix[row, f])
            if deviation < 0.5:
                break
            feature = fields[f]
            if f >= n_numeric:
                mode = int(np.bincount(nbr_cat[row, :, f - n_numeric]).argmax())
                typical = None if mode == MISSING_INDEX else encoder.category_label(feature, mode)
            else:
                typical = _typical_number(encoder, feature, median[row, starts[f] :])
            reasons.append(
                Reason(
                    field=feature.path if feature.kind in ("numeric", "categorical") else feature.name,
                    value=_display(getters[f](event) if isinstance(event, dict) else None),
                    typical=typical,
                    deviation=deviation,
                )
            )
        out.append(reasons)
    return out


def _typical_number(
    encoder: FeatureEncoder, feature: FeatureDef, columns: npt.NDArray[np.floating[Any]]
) -> Any:
    """The neighbours' median, unscaled (for time, the hour it stands for)."""
    if feature.kind == "time_cyclic":
        hour = (math.atan2(float(columns[0]), float(columns[1])) / (2 * math.pi) * 24) % 24
        return f"{int(hour):02d}:00 UTC"
    value = encoder.numeric_value(feature, float(columns[0]))
    return round(value, 4) if abs(value) < 1e15 else value


def _display(value: Any) -> Any:
    """An event value as it may appear in an explanation: scalars as they are, others summarised."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "…"
    return f"<{type(value).__name__}>"
