"""Why an event scored as it did: the fields on which it differs most from its nearest baseline events."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.features.encoder import (
    IMPOSSIBLE,
    MISSING_INDEX,
    NOT_SCALAR,
    UNKNOWN_INDEX,
    EncodedBatch,
    FeatureEncoder,
    compile_getter,
    epoch_ms,
    to_numbers,
)
from scorer.features.spec import FeatureDef
from scorer.io import OutOfRange

Event = dict[str, Any]
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class Reason:
    """One field of an event beside its nearest normal events: its value and theirs, in one form."""

    field: str  # the OCSF field, as the feature spec names its path
    value: Any
    typical: Any  # the neighbours' median (numbers) or most common value (categories)
    deviation: float | None  # None: the value is an impossible number

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": self.value,
            "typical": self.typical,
            "deviation": None if self.deviation is None else round(self.deviation, 3),
        }


def find_reasons(
    encoder: FeatureEncoder,
    baseline: EncodedBatch,
    events: Sequence[Event],
    encoded: EncodedBatch,
    neighbours: npt.NDArray[np.int64],
    n_reasons: int,
) -> list[list[Reason]]:
    """Up to ``n_reasons`` fields on which each event differs most from its neighbours, largest
    deviation first, one reason per OCSF field, none below a deviation of 0.5.

    The deviation is one scale for every kind of field: for a number, its distance from the
    neighbours' median in robust standard deviations (missing where they have one: 3); for a
    category, 3 × the share of neighbours with another value (5 × for a value never seen in
    training), so that a category none of them shares ranks with a number 3 (or 5) deviations
    away. A number that cannot be real (not finite, or beyond ±2⁶³) comes first, deviation None.
    """
    nbr = np.where(neighbours >= 0, neighbours, 0)
    numeric = encoder.numeric_features
    n_numeric = len(numeric)
    n_values = len(encoder.numeric_columns) - n_numeric
    starts = encoder.numeric_value_starts
    nbr_num = baseline.num[nbr]  # (n, k, columns)
    median = _median(nbr_num[:, :, :n_values]) if n_values else np.zeros((len(events), 0))
    numeric_dev = np.zeros((len(events), n_numeric), dtype=np.float64)
    if n_numeric:
        gap = np.maximum.reduceat(np.abs(encoded.num[:, :n_values] - median), starts, axis=1)
        missing = encoded.num[:, n_values:]
        missing_gap = np.abs(missing - nbr_num[:, :, n_values:].sum(axis=1) / nbr.shape[1])
        numeric_dev = np.where(missing > 0, 3.0 * missing_gap, gap)
        if encoded.invalid is not None:
            numeric_dev[encoded.invalid] = math.inf
    nbr_cat = baseline.cat[nbr]  # (n, k, categorical)
    differs = (nbr_cat != encoded.cat[:, None, :]).sum(axis=1) / nbr.shape[1]
    categorical_dev = np.where(encoded.cat == UNKNOWN_INDEX, 5.0, 3.0) * differs
    matrix = np.concatenate([numeric_dev, categorical_dev], axis=1)
    fields: list[FeatureDef] = numeric + encoder.categorical_features
    order = np.argsort(-matrix, axis=1, kind="stable")
    out: list[list[Reason]] = []
    for row, event in enumerate(events):
        reasons: list[Reason] = []
        named: set[str] = set()
        for f in order[row].tolist():
            deviation = float(matrix[row, f])
            if deviation < 0.5 or len(reasons) == n_reasons:
                break
            feature = fields[f]
            if feature.path in named:  # a port as a number and as a range: the larger one speaks
                continue
            raw = compile_getter(feature.path)(event) if isinstance(event, dict) else None
            if f >= n_numeric:
                column = f - n_numeric
                own = int(encoded.cat[row, column])
                mode = int(np.bincount(nbr_cat[row, :, column]).argmax())
                if mode == own:  # most neighbours share its value: nothing to show
                    continue
                value = _category_value(encoder, feature, own, raw)
                typical = None if mode == MISSING_INDEX else encoder.category_label(feature, mode)
            else:
                impossible = math.isinf(deviation)
                value = _display(raw) if impossible else _number_value(feature, raw)
                typical = _typical_number(encoder, feature, median[row, starts[f] :])
            if value == typical:  # e.g. two times in the same minute of the week
                continue
            reasons.append(Reason(feature.path, value, typical, None if math.isinf(deviation) else deviation))
            named.add(feature.path)
        out.append(reasons)
    return out


def _median(values: npt.NDArray[np.float32]) -> npt.NDArray[np.floating[Any]]:
    """np.median over axis 1 of (events, neighbours, columns), without its wrapper's cost (a third of
    explaining one event); the same values (nothing here is NaN)."""
    k = values.shape[1]
    ordered = np.sort(values, axis=1)
    middle: npt.NDArray[np.floating[Any]] = (ordered[:, (k - 1) // 2] + ordered[:, k // 2]) / 2
    return middle


def _category_value(encoder: FeatureEncoder, feature: FeatureDef, own: int, raw: Any) -> Any:
    """The event's value as the neighbours' is shown: its prefix, port range or category key."""
    if own == MISSING_INDEX:
        return None
    if own != UNKNOWN_INDEX and feature.kind in ("ip_prefix", "port_bucket"):
        return encoder.category_label(feature, own)
    key = encoder.category_keys(feature, [raw])[0]  # as the encoder read it: "4001" for 4001.0, a prefix
    return _display(raw) if key is None or key == NOT_SCALAR else _display(key)


def _number_value(feature: FeatureDef, raw: Any) -> Any:
    """A numeric field's value as a number (a numeric string read as one; a time as its hour)."""
    if feature.kind == "time_cyclic":
        ms = float(epoch_ms([raw])[0])
        return None if math.isnan(ms) else _weekly(ms / 3_600_000 % 24, (ms / 86_400_000 + 3) % 7)
    kind = type(raw)
    if kind is float or (kind is int and -IMPOSSIBLE < raw < IMPOSSIBLE):  # what numbers() reads it as,
        number = float(raw)  # without its batch machinery (a third of explaining an event)
        if -IMPOSSIBLE < number < IMPOSSIBLE:  # NaN and the impossible: as numbers() says, below
            return _plain(number)
    number = float(to_numbers([raw])[0])
    return _display(raw) if math.isnan(number) else _plain(number)


def _typical_number(
    encoder: FeatureEncoder, feature: FeatureDef, columns: npt.NDArray[np.floating[Any]]
) -> Any:
    """The neighbours' median, unscaled (for time, the time of the week it stands for)."""
    if feature.kind == "time_cyclic":
        hour = (math.atan2(float(columns[0]), float(columns[1])) / (2 * math.pi) * 24) % 24
        day = (math.atan2(float(columns[2]), float(columns[3])) / (2 * math.pi) * 7) % 7
        return _weekly(hour, day)
    return _plain(encoder.numeric_value(feature, float(columns[0])))


def _weekly(hour: float, day: float) -> str:
    """A time of the week, as the encoder sees time: "Tue 13:42 UTC" (day 0 is Monday)."""
    minutes = int(hour * 60) % (24 * 60)
    return f"{DAYS[int(day) % 7]} {minutes // 60:02d}:{minutes % 60:02d} UTC"


def _plain(number: float) -> float | int:
    """A whole number as an int, others rounded to 4 places (huge ones as they are)."""
    if abs(number) >= 1e15:
        return number
    rounded = round(number, 4)
    return int(rounded) if rounded.is_integer() else rounded


def _display(value: Any) -> Any:
    """An event value as it may appear in an explanation: scalars as they are (an integer beyond
    64 bits as its digits, which every JSON writer keeps exactly; one too long to show, by its
    length; a number beyond a double's range as its text), others summarised."""
    if isinstance(value, OutOfRange):
        return value.text if len(value.text) <= 200 else f"<number of {len(value.text):,} characters>"
    if type(value) is int and not -(2**63) <= value < 2**64:
        if value.bit_length() <= 640:  # at most 193 digits, within the 200 characters a string shows
            return str(value)
        return f"<integer of about {int(value.bit_length() * math.log10(2)) + 1:,} digits>"
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "…"
    return f"<{type(value).__name__}>"


def reason_text(reason: dict[str, Any]) -> str:
    """A reason (as the service answers it) as one line: ``field=value (typical T, deviation D)``, for
    hosts that keep text rather than objects (an OpenSearch document's keyword list)."""
    deviation = reason.get("deviation")
    how = "not a possible number" if deviation is None else f"deviation {float(deviation):.1f}"
    return (
        f"{reason.get('field')}={_text(reason.get('value'))} (typical {_text(reason.get('typical'))}, {how})"
    )


def _text(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
