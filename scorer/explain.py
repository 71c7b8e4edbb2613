"""Why an event scored as it did: the fields on which it differs most from its nearest baseline events."""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.features.encoder import (
    IMPOSSIBLE,
    MISSING_INDEX,
    NOT_SCALAR,
    RESERVED,
    UNKNOWN_INDEX,
    EncodedBatch,
    FeatureEncoder,
    category_key,
    compile_getter,
    epoch_ms,
    to_numbers,
)
from scorer.features.spec import FeatureDef
from scorer.io import OutOfRange

Event = dict[str, Any]
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
READ_AS_LINE = frozenset(' ()",\\')  # characters a reason line is read by: a value holding one is quoted
NOT_A_PORT = "not a port"  # a port field's value that is no port number, beside the ranges


@dataclass
class Reason:
    """One field of an event beside its nearest normal events: its value and theirs, in one form."""

    field: str  # the OCSF field, as the feature spec names its path
    value: Any
    typical: Any  # the neighbours' median (a number one of them holds, or "≥ x" beyond the clip) or mode
    deviation: float | None  # None: the value is an impossible number, or a number no port can be

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

    The deviation is one scale for every kind of field: for a number, its distance (unclipped) from
    the median of the neighbours that hold one, in robust standard deviations (missing where they
    have one: 3 × the share that have one; held where most have none: 3 × the share that have none,
    if larger); for a category, 3 × the share of neighbours with another value (5 × for a value
    never seen in training), so that a category none of them shares ranks with a number 3 (or 5)
    deviations away. A number that cannot be real (not finite, or beyond ±2⁶⁴), or a port field's
    number that no port can be (``"not a port (70000)"``), comes first, deviation None.
    """
    nbr = np.where(neighbours >= 0, neighbours, 0)
    numeric = encoder.numeric_features
    n_numeric = len(numeric)
    starts = encoder.numeric_value_starts
    numbers = _Numbers.of(encoder, events, encoded, baseline.num[nbr]) if n_numeric else None
    numeric_dev = numbers.deviation if numbers is not None else np.zeros((len(events), 0))
    nbr_cat = baseline.cat[nbr]  # (n, k, categorical)
    differs = (nbr_cat != encoded.cat[:, None, :]).sum(axis=1) / nbr.shape[1]
    categorical_dev = np.where(_unseen(encoder, encoded.cat), 5.0, 3.0) * differs
    if encoded.invalid is not None:  # a port no port can be: its columns follow the numeric ones
        categorical_dev[encoded.invalid[:, n_numeric:]] = math.inf
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
                if mode == own and not math.isinf(deviation):  # most neighbours share it: nothing to show
                    continue
                value = _category_value(encoder, feature, own, raw)
                typical = _category_typical(encoder, feature, mode)
            else:
                assert numbers is not None
                impossible = math.isinf(deviation)
                value = _display(raw) if impossible else _number_value(feature, raw)
                typical = numbers.typical(encoder, feature, row, f, starts[f])
            if value == typical:  # e.g. two times in the same minute of the week
                continue
            reasons.append(Reason(feature.path, value, typical, None if math.isinf(deviation) else deviation))
            named.add(feature.path)
        out.append(reasons)
    return out


@dataclass(frozen=True)
class _Layout:
    """Where each numeric value column belongs, as arrays (the same for every batch an encoder explains)."""

    owner: npt.NDArray[np.int64]  # (value columns,): its feature in numeric_features
    starts: npt.NDArray[np.int64]  # (numeric features,): each one's first value column
    cyclic: npt.NDArray[np.bool_]  # (value columns,): a time's sin or cos
    clip: npt.NDArray[np.float32]  # (value columns,): where a stored value is a bound (inf for a time)
    any_cyclic: bool
    hashed: list[tuple[int, FeatureDef]]  # hashed features and their categorical columns


_LAYOUTS: weakref.WeakKeyDictionary[FeatureEncoder, _Layout] = weakref.WeakKeyDictionary()


def _layout(encoder: FeatureEncoder) -> _Layout:
    layout = _LAYOUTS.get(encoder)
    if layout is None:  # two threads making it at once make the same one
        numeric = encoder.numeric_features
        owner = encoder.numeric_column_feature[: len(encoder.numeric_columns) - len(numeric)]
        time = [numeric[i].kind == "time_cyclic" for i in owner]
        layout = _LAYOUTS[encoder] = _Layout(
            owner=np.array(owner, dtype=np.int64),
            starts=np.array(encoder.numeric_value_starts, dtype=np.int64),
            cyclic=np.array(time, dtype=bool),
            clip=np.array(
                [math.inf if t else numeric[i].clip for i, t in zip(owner, time, strict=True)], np.float32
            ),
            any_cyclic=any(time),
            hashed=[(j, f) for j, f in enumerate(encoder.categorical_features) if f.kind == "hashed"],
        )
    return layout


@dataclass
class _Numbers:
    """The numeric fields of a batch of events beside their neighbours'."""

    deviation: npt.NDArray[np.float64]  # (events, numeric features)
    typical_missing: npt.NDArray[np.bool_]  # (events, numeric features): the neighbours' typical is "none"
    shown: npt.NDArray[np.floating[Any]]  # (events, value columns): the stored value the typical stands for
    clip: npt.NDArray[np.float32]  # (value columns,): where a stored value is a bound (inf for a time)

    @classmethod
    def of(
        cls,
        encoder: FeatureEncoder,
        events: Sequence[Event],
        encoded: EncodedBatch,
        nbr_num: npt.NDArray[np.float32],
    ) -> _Numbers:
        """Each event's numbers against the median of the neighbours that hold one.

        The baseline keeps its rows as encoded, clipped at ±clip: a stored value at the clip stands
        for itself or anything beyond. Clipping keeps order, so the neighbours' middle values are
        exact unless they sit at the clip, where they bound the median instead; an event's own value
        is read unclipped from the event. For an even number of neighbours, the two middle values
        bound the median: the distance is to the nearer of them (none for a value between them).
        """
        layout = _layout(encoder)
        owner, clip, cyclic = layout.owner, layout.clip, layout.cyclic
        n, k = nbr_num.shape[:2]
        n_values = len(owner)
        lacking = nbr_num[:, :, n_values:] > 0  # (n, k, features): neighbours without the field
        values = nbr_num[:, :, :n_values]
        if lacking.any():  # the holders' values in order, the others (NaN) after them
            holders = k - lacking.sum(axis=1)  # (n, features)
            held = holders[:, owner]  # (n, columns)
            ordered = np.sort(np.where(lacking[:, :, owner], np.float32(np.nan), values), axis=1)
            rows, columns = np.arange(n)[:, None], np.arange(n_values)[None, :]
            low = ordered[rows, np.maximum(held - 1, 0) // 2, columns]
            high = ordered[rows, np.minimum(held // 2, k - 1), columns]
        else:
            holders = np.full((n, len(layout.starts)), k)
            ordered = np.sort(values, axis=1)
            low, high = ordered[:, (k - 1) // 2], ordered[:, k // 2]
        own = encoded.num[:, :n_values].astype(np.float64)
        beyond = np.abs(encoded.num[:, :n_values]) >= clip  # clipped: read again from the event
        if beyond.any():
            for column in np.flatnonzero(beyond.any(axis=0)).tolist():
                at = np.flatnonzero(beyond[:, column])
                feature = encoder.numeric_features[owner[column]]
                get = compile_getter(feature.path)
                unclipped = encoder.unclipped(feature, [get(events[r]) for r in at.tolist()])
                own[at, column] = np.where(np.isnan(unclipped), own[at, column], unclipped)
        # a middle value at the clip bounds the median on that side only (NaN: no neighbour holds one)
        lower = np.where(low <= -clip, -np.inf, low)
        upper = np.where(high >= clip, np.inf, high)
        gap = np.fmax(np.fmax(lower - own, own - upper), 0.0)  # fmax: 0 where lower and upper are NaN
        if layout.any_cyclic:  # a time's sin and cos: from their mean
            middle = (low.astype(np.float64) + high) / 2
            gap = np.where(cyclic, np.fmax(np.abs(own - middle), 0.0), gap)
        value_gap = np.maximum.reduceat(gap, layout.starts, axis=1)
        event_missing = encoded.num[:, n_values:] > 0  # (n, features)
        lacking_share = 1.0 - holders / k
        most_lack = lacking_share > 0.5
        absence = 3.0 * lacking_share
        deviation = np.where(
            event_missing,
            3.0 * (1.0 - lacking_share),
            np.where(most_lack, np.maximum(value_gap, absence), value_gap),
        )
        if encoded.invalid is not None:  # the numeric features' columns (categorical ones follow)
            deviation[encoded.invalid[:, : deviation.shape[1]]] = math.inf
        typical_missing = most_lack & (event_missing | (absence >= value_gap))
        # a number beside the middle value nearer to it (the lower one beside a missing number)
        nearer = np.where((own > upper) & ~event_missing[:, owner], high, low)
        shown = np.where(cyclic, middle, nearer) if layout.any_cyclic else nearer
        return cls(deviation=deviation, typical_missing=typical_missing, shown=shown, clip=clip)

    def typical(self, encoder: FeatureEncoder, feature: FeatureDef, row: int, f: int, start: int) -> Any:
        """The neighbours' typical value of a numeric field, in the form of :func:`_number_value`:
        a number a neighbour holds, a bound ("≥ 0.1581") where it is beyond the clip, None."""
        if self.typical_missing[row, f]:
            return None
        if feature.kind == "time_cyclic":
            columns = self.shown[row, start : start + 4]
            hour = (math.atan2(float(columns[0]), float(columns[1])) / (2 * math.pi) * 24) % 24
            day = (math.atan2(float(columns[2]), float(columns[3])) / (2 * math.pi) * 7) % 7
            return _weekly(hour, day)
        stored, clip = float(self.shown[row, start]), float(self.clip[start])  # a float32, exactly
        if stored >= clip:  # the median is at least what the clip keeps
            return f"≥ {_bound(encoder.numeric_value(feature, clip), up=False)}"
        if stored <= -clip:
            return f"≤ {_bound(encoder.numeric_value(feature, -clip), up=True)}"
        return _stored_number(encoder, feature, stored)


def _stored_number(encoder: FeatureEncoder, feature: FeatureDef, stored: float) -> float | int:
    """The number a stored (scaled, float32) value stands for, rounded as far as it still encodes
    to that value: the 12 or 0 a neighbour holds rather than 11.999993 or -8e-08 (a float32 cell
    keeps about seven digits of the scaled value, not of the number)."""
    exact = encoder.numeric_value(feature, stored)
    if not exact:
        return 0
    if stored:  # the float32 step above and below the stored value (below is half at a power of two)
        fraction, exponent = math.frexp(abs(stored))
        step = 2.0 ** (exponent - 24)
        inward = step / 2 if fraction == 0.5 else step
        up, down = (step, inward) if stored > 0 else (inward, step)
    else:
        up = down = 2.0**-149
    # every number in between encodes to the stored value (and a few doubles' steps of the inverse)
    slack = 4 * math.ulp(exact)
    low = encoder.numeric_value(feature, stored - down / 2) - slack
    high = encoder.numeric_value(feature, stored + up / 2) + slack
    first = -math.floor(math.log10(abs(exact)))  # rounded from the place above its first digit, so
    for places in range(first - 2, first + 16):  # 0.62 to 0, 1, 0.6, 0.62 (up to 17 digits)
        candidate = round(exact, places)
        if low < candidate < high:
            return _plain_number(float(candidate))
    return _plain_number(exact)


def _unseen(encoder: FeatureEncoder, cat: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Where a category is one training never saw: unknown, or a hashed value in a bucket that held
    none in training (the encoder keeps an example of every bucket that held one)."""
    unseen: npt.NDArray[np.bool_] = cat == UNKNOWN_INDEX
    for column, feature in _layout(encoder).hashed:
        held = set(cat[:, column].tolist())
        empty = [i for i in held if i >= RESERVED and encoder.category_label(feature, i) is None]
        if empty:
            unseen[:, column] |= np.isin(cat[:, column], empty)
    return unseen


def _category_value(encoder: FeatureEncoder, feature: FeatureDef, own: int, raw: Any) -> Any:
    """The event's value as the neighbours' is shown: its prefix, port range or category key."""
    if own == MISSING_INDEX:
        return None
    if feature.kind == "port_bucket":  # a range, or what is no port beside the ranges
        return encoder.category_label(feature, own) if own != UNKNOWN_INDEX else f"{NOT_A_PORT} ({_key(raw)})"
    if own != UNKNOWN_INDEX and feature.kind == "ip_prefix":
        return encoder.category_label(feature, own)
    return _key(raw, encoder.category_keys(feature, [raw])[0])


def _key(raw: Any, key: str | None = None) -> Any:
    """A category's value as the encoder read it ("4001" for 4001.0, a prefix), a float too large
    to be read as a whole number (beyond 2⁵³) as Python writes it (1e+300, not its 301 digits)."""
    if type(raw) is float and abs(raw) >= 2.0**53:
        return repr(raw)
    if key is None:
        key = category_key(raw)
    return _display(raw) if key is None or key == NOT_SCALAR else _display(key)


def _category_typical(encoder: FeatureEncoder, feature: FeatureDef, mode: int) -> Any:
    """The neighbours' most common category, in the form of :func:`_category_value`."""
    if feature.kind == "port_bucket" and mode == UNKNOWN_INDEX:
        return NOT_A_PORT
    return encoder.category_label(feature, mode)


def _number_value(feature: FeatureDef, raw: Any) -> Any:
    """A numeric field's value as a number (a numeric string read as one; a time as its hour)."""
    if feature.kind == "time_cyclic":
        ms = float(epoch_ms([raw])[0])
        return None if math.isnan(ms) else _weekly(ms / 3_600_000 % 24, (ms / 86_400_000 + 3) % 7)
    kind = type(raw)
    if kind is float or (kind is int and -IMPOSSIBLE <= raw <= IMPOSSIBLE):  # what numbers() reads it as,
        number = float(raw)  # without its batch machinery (a third of explaining an event)
        if -IMPOSSIBLE <= number <= IMPOSSIBLE:  # NaN and the impossible: as numbers() says, below
            return _plain(number)
    number = float(to_numbers([raw])[0])
    return _display(raw) if math.isnan(number) else _plain(number)


def _weekly(hour: float, day: float) -> str:
    """A time of the week, as the encoder sees time: "Tue 13:42 UTC" (day 0 is Monday)."""
    minutes = int(hour * 60) % (24 * 60)
    return f"{DAYS[int(day) % 7]} {minutes // 60:02d}:{minutes % 60:02d} UTC"


def _plain_number(number: float) -> float | int:
    """A neighbour's number as it was written: a whole one as an int (huge ones as they are)."""
    return int(number) if number.is_integer() and abs(number) < 1e15 else number


def _bound(number: float, *, up: bool) -> float | int:
    """A bound to four significant digits, rounded away from the values it bounds."""
    if number == 0 or not math.isfinite(number):
        return _plain_number(number)
    exponent = math.floor(math.log10(abs(number))) - 3
    steps = (math.ceil if up else math.floor)(number / 10.0**exponent)
    if exponent >= 0:
        return _plain_number(float(steps * 10**exponent))
    return round(steps * 10.0**exponent, -exponent)


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
    hosts that keep text rather than objects (an OpenSearch document's keyword list, the Splunk
    app's field, an alert's annotation). A text value that could be read as part of the line is
    quoted (:func:`_shown`)."""
    value, typical, how = reason_parts(reason)
    return f"{reason.get('field')}={value} (typical {typical}, {how})"


def reason_parts(reason: dict[str, Any]) -> tuple[str, str, str]:
    """A reason's value, typical and deviation ("deviation 4.2", or what makes the value
    impossible) as its line of text writes them (the report shows them so too)."""
    deviation = reason.get("deviation")
    value, typical = value_text(reason.get("value")), value_text(reason.get("typical"))
    raw = reason.get("value")
    if deviation is not None:
        how = f"deviation {float(deviation):.1f}"
    elif isinstance(raw, str) and raw.startswith(f"{NOT_A_PORT} ("):  # a port field's number no port can be
        how, value = "not a possible port", raw  # this module's own words, not the event's
        typical = NOT_A_PORT if reason.get("typical") == NOT_A_PORT else typical
    else:
        how = "not a possible number"
    return value, typical, how


def value_text(value: Any) -> str:
    """A reason's value (or typical) as its line of text shows it (:func:`reason_text`)."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return _shown(value)
    return str(value)


def _shown(text: str) -> str:
    """An event's text as a reason line shows it: as it is where it cannot be read as part of the
    line, else as a JSON string with every character that is not printable escaped. A value such
    as ``"x (typical x, deviation 0.1)"`` or one holding a line break, an ANSI escape or U+2028
    read as a reason of its own, or as a smaller deviation, to an analyst (the adversarial review)."""
    if text and text != "missing" and text.isprintable() and not any(c in READ_AS_LINE for c in text):
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in json.dumps(text, ensure_ascii=False))


def _escaped(character: str) -> str:
    """``character`` as JSON escapes it (a pair of surrogates beyond U+FFFF)."""
    code = ord(character)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
