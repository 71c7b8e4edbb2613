"""Fit a feature spec on training events, then encode batches of events into arrays.

Encoding is batch-first (one pass over the events per feature, numpy for the arithmetic) and
never raises on odd input: a missing path, a null, a list or object where a scalar belongs, a
string where a number belongs, a number too large for a float, non-ASCII text — each encodes to
*missing* or *unknown*, which the model and the explanation then see as such.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.features.spec import FeatureDef, FeatureSpec
from scorer.io import OutOfRange

Event = dict[str, Any]
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

MISSING_INDEX = 0
UNKNOWN_INDEX = 1
RESERVED = 2  # indices 0 and 1 of every categorical input
PORT_BUCKETS = ("well-known", "registered", "ephemeral")
ONE_HOT_MAX = 64  # wider categoricals get a fixed random code in feature space
CODE_DIM = 16
PORT_SENTINELS_MAX = 16  # a port field's impossible numbers that training held, kept as the producer's
_HASH_CACHE_MAX = 200_000


class EncoderError(ValueError):
    """An encoder that cannot be fitted or loaded, with the reason."""


@dataclass(frozen=True)
class EncodedBatch:
    """A batch of encoded events: categorical indices and scaled numeric columns, and where a
    field held an impossible number (which the columns show as missing) or a port field a number
    no port can be (which the columns show as an unknown port, as they did before it was flagged).

    ``invalid`` has a column per numeric feature (in ``numeric_features`` order), then one per
    categorical feature (in column order, as ``cat``): the order in which explanations list fields.
    Only a ``port_bucket`` feature is ever marked among the categorical ones."""

    cat: IntArray  # (n, n_categorical), 0 = missing, 1 = unknown
    num: FloatArray  # (n, n_numeric): values, then per feature a missing indicator
    invalid: npt.NDArray[np.bool_] | None = None  # (n, numeric + categorical features); None: none anywhere

    def __len__(self) -> int:
        return int(self.cat.shape[0])

    def take(self, rows: npt.NDArray[np.int64]) -> EncodedBatch:
        invalid = self.invalid[rows] if self.invalid is not None else None
        return EncodedBatch(cat=self.cat[rows], num=self.num[rows], invalid=invalid)

    def row_digests(self) -> list[bytes]:
        """A digest of each whole encoded row: two events share one only if every input matches."""
        joined = np.concatenate([self.cat.view(np.uint8), self.num.view(np.uint8)], axis=1)
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in joined]


@dataclass(frozen=True)
class Coverage:
    """How many events hold none of a spec's fields, and which fields none of them holds."""

    events: int
    empty: int
    absent: list[str]
    what: str

    def warnings(self) -> list[str]:
        said = []
        if self.empty:
            said.append(f"{self.empty:,} of the {self.events:,} {self.what} hold none of the model's fields")
        if self.absent:
            shown = ", ".join(self.absent[:8]) + ("…" if len(self.absent) > 8 else "")
            said.append(f"{len(self.absent)} of the model's fields are in none of the {self.what}: {shown}")
        return said


@lru_cache(maxsize=1024)
def compile_getter(path: str) -> Callable[[Event], Any]:
    """An accessor for one dotted path; anything absent (or not an object on the way) is None."""
    extract = compile_extractor([path])
    return lambda event: extract(event)[0]


def compile_extractor(paths: Sequence[str]) -> Callable[[Event], list[Any]]:
    """One function that reads every path of ``paths`` from an event in a single walk.

    Paths sharing a prefix share the lookups. The generated source names keys only by their
    position in a tuple passed alongside (``K[3]``), so no text from a spec ever becomes code.
    """
    trie: dict[str, Any] = {}
    for i, path in enumerate(paths):
        node = trie
        for key in path.split("."):
            node = node.setdefault(key, {})
        node.setdefault("\x00leaves", []).append(i)
    keys: list[str] = []
    lines = [
        "def extract(event):",
        f"    out = [None] * {len(paths)}",
        "    if event.__class__ is not dict:",
        "        return out",
    ]

    def emit(node: dict[str, Any], var: str, depth: int) -> None:
        pad = "    " * depth
        for key, child in node.items():
            if key == "\x00leaves":
                continue
            keys.append(key)
            child_var = f"v{len(keys)}"
            lines.append(f"{pad}{child_var} = {var}.get(K[{len(keys) - 1}])")
            for leaf in child.get("\x00leaves", []):
                lines.append(f"{pad}out[{leaf}] = {child_var}")
            if any(k != "\x00leaves" for k in child):
                lines.append(f"{pad}if {child_var}.__class__ is dict:")
                emit(child, child_var, depth + 1)

    emit(trie, "event", 1)
    lines.append("    return out")
    namespace: dict[str, Any] = {"K": tuple(keys), "dict": dict}
    exec(compile("\n".join(lines), "<feature-extractor>", "exec"), namespace)  # noqa: S102 - source holds no spec text
    extract: Callable[[Event], list[Any]] = namespace["extract"]
    return extract


# Beyond every 64-bit integer, signed or not (an OCSF long, or a producer's unsigned counter or
# sentinel, 2⁶⁴ - 1): no real count, size or time is larger. The largest of them (2⁶³ - 1, 2⁶⁴ - 1)
# round to a power of two as doubles, and so do integers a little beyond (2⁶⁴ + 1): a value read as
# ±2⁶⁴ is judged by what was written (:func:`_beyond_64_bits`), an integer or a numeric string; a
# JSON number with a fraction or an exponent is its double (1.8446744073709551617e19 is 2⁶⁴).
IMPOSSIBLE = 2.0**64


def as_number(value: Any) -> float:
    """A number or a numeric string as a float (inf where it overflows); NaN for anything else."""
    kind = type(value)
    if kind is float or kind is int or kind is bool or kind is str or kind is OutOfRange:
        try:
            return float(value)
        except ValueError:
            return math.nan
        except OverflowError:  # an integer beyond float's range
            return math.inf
    return math.nan


def _port_index(value: Any) -> int:
    """A port's range (well-known, registered, ephemeral); unknown for what is no port number."""
    if value is None:
        return MISSING_INDEX
    port = as_number(value)
    if not 0 <= port <= 65535 or port != math.floor(port):  # NaN and ±inf fail the range
        return UNKNOWN_INDEX
    return RESERVED + (0 if port < 1024 else 1 if port < 49152 else 2)


def _impossible_ports(
    raw: list[Any], indices: list[int], sentinels: frozenset[str] = frozenset()
) -> npt.NDArray[np.bool_] | None:
    """Where a port field holds a number no port can be, by the rule of :func:`numbers` for what
    is a number (a numeric string is one, a float NaN is a dataframe's "missing", a bool is 0 or 1):
    one that is not a whole number from 0 to 65535 (``70000``, ``-1``, ``80.5``, ``"70000"``,
    ``"Infinity"``). A name (``"http"``: producers write service names there) is no number: only
    an unknown port; so is one of ``sentinels`` (by :func:`_port_number`), the impossible numbers
    training held, which a producer writes for "no port" (``-1``). None where there is none (only
    a value read as unknown can be one)."""
    if UNKNOWN_INDEX not in indices:  # every port possible, or missing: the common case, in C
        return None
    impossible = None
    for i, index in enumerate(indices):
        if index == UNKNOWN_INDEX and _is_number(raw[i]) and _port_number(raw[i]) not in sentinels:
            if impossible is None:
                impossible = np.zeros(len(indices), dtype=bool)
            impossible[i] = True
    return impossible


def _port_number(value: Any) -> str:
    """A port field's number as the text that names it among the sentinels: -1, "-1", -1.0 and
    " -1 " are one ("-1"); "inf", "nan" for what is not finite."""
    return f"{as_number(value):.17g}"


def _is_number(value: Any) -> bool:
    """Whether a value is a number or a string that reads as one ("1e999", "NaN", "Infinity" too)."""
    if isinstance(value, float):
        return not math.isnan(value)  # a float NaN is how dataframes write "missing"
    if isinstance(value, bool | int):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def numbers(values: Sequence[Any], fields: int = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Values → float64, NaN where absent or unusable, and where a value was an impossible number:
    one that is not finite (``"NaN"``, ``"Infinity"``, ``"1e999"``) or beyond ±2⁶⁴.

    With ``fields``, ``values`` holds that many equally long lists (one per field) and both arrays
    are (len, fields), a row per event: the checks run once for every numeric field of a batch,
    however small the batch.
    """
    columns: Sequence[Sequence[Any]] = values if fields else [values]
    out = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        try:
            out[:, j] = column  # numpy reads numbers, numeric strings and None (NaN) as np.asarray does
        except (ValueError, TypeError, OverflowError):  # a nested or non-numeric value: one at a time
            out[:, j] = np.fromiter((as_number(v) for v in column), dtype=np.float64, count=len(column))
    usable = np.abs(out) < IMPOSSIBLE  # NaN compares false: absent, non-numeric and impossible
    impossible = np.zeros(out.shape, dtype=bool)
    if not usable.all():
        nan = np.isnan(out)
        for i, j in zip(*np.nonzero(np.abs(out) == IMPOSSIBLE), strict=True):  # ±2⁶⁴ as a double
            usable[i, j] = not _beyond_64_bits(columns[j][i])
        impossible = ~usable & ~nan  # infinite or beyond ±2⁶⁴: only a number reads as that
        if int(nan.sum()) > sum(column.count(None) for column in columns):  # a NaN from no number, or "NaN"
            for i, j in zip(*np.nonzero(nan), strict=True):
                value = columns[j][i]
                impossible[i, j] = type(value) is str and _is_number(value)
        out[~usable] = np.nan
    return (out, impossible) if fields else (out[:, 0], impossible[:, 0])


def _beyond_64_bits(value: Any) -> bool:
    """Whether a number read as ±2⁶⁴ was written beyond it: 2⁶⁴ + 1 rounds to 2⁶⁴ as a double, as
    2⁶⁴ - 1 does."""
    if type(value) is int:
        return abs(value) > 2**64
    if type(value) is str:
        with contextlib.suppress(ArithmeticError):  # decimal.InvalidOperation: no number
            return abs(Decimal(value.strip())) > 2**64
    return False


def to_numbers(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Values → float64 with NaN for missing, non-numeric, non-finite or impossible entries."""
    return numbers(values)[0]


NOT_SCALAR = "\x00not-a-scalar"


def category_key(value: Any) -> str | None:
    """The vocabulary key of a scalar: enum codes 4001, 4001.0 and "4001" are one category."""
    kind = type(value)
    if kind is str:
        return str(value)
    if value is None:
        return None
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        try:
            return str(value)
        except ValueError:  # more than 4,300 digits: Python refuses to print it
            return NOT_SCALAR
    if kind is float or kind is OutOfRange:  # 1e400 by its text
        return str(int(value)) if value.is_integer() else repr(value)
    return NOT_SCALAR


@lru_cache(maxsize=_HASH_CACHE_MAX)  # thread-safe: scoring threads share one encoder
def stable_bucket(key: str, buckets: int) -> int:
    """A bucket that is the same in every process and on every machine (never Python's salted hash)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


@lru_cache(maxsize=65536)
def ip_prefix(value: str, prefix_v4: int, prefix_v6: int) -> str | None:
    """``10.1.2.3`` → ``10.1.2.0/24``; not an address → None. An IPv4-mapped IPv6 address
    (``::ffff:10.1.2.3``) is its IPv4 address: the same host either way, not all of ``::/48``."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = prefix_v4 if address.version == 4 else prefix_v6
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def iso_moment(text: str) -> datetime | None:
    """ISO 8601 text (as in OCSF ``*_dt`` fields) as an aware datetime; no offset means UTC, as OCSF
    times are, not this machine's zone. None for text that is not such a time."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def epoch_ms(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    return epoch_ms_checked(values)[0]


def epoch_ms_checked(values: Sequence[Any]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Times (epoch ms, s, µs or ns, or ISO 8601 text) as epoch milliseconds, NaN where absent or unusable,
    and where a time was an impossible number, by the rule of :func:`numbers` (``1e300``, ``2**64``,
    ``"Infinity"``): the encoder flags such an event, as it does for any numeric field."""
    ms, impossible = numbers(values)
    # OCSF says epoch milliseconds; some producers send seconds (before 1e11, 1973 in ms), and
    # microseconds or nanoseconds (from 1e14 and 1e17: the year 5138 and beyond in ms)
    size = np.abs(ms)
    ms[size < 1e11] *= 1000.0
    ms[(size >= 1e14) & (size < 1e17)] /= 1e3
    ms[size >= 1e17] /= 1e6
    for i in np.flatnonzero(np.isnan(ms)).tolist():  # ISO 8601 text says its own unit
        value = values[i]
        if isinstance(value, str) and (moment := iso_moment(value)) is not None:
            ms[i] = moment.timestamp() * 1000.0
    return ms, impossible


def signed_log1p(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class _Numeric:
    center: float = 0.0
    scale: float = 1.0


@dataclass
class _Vocab:
    values: list[str]

    def __post_init__(self) -> None:
        self.index = {v: i + RESERVED for i, v in enumerate(self.values)}

    @property
    def cardinality(self) -> int:
        return len(self.values) + RESERVED


@dataclass(frozen=True)
class _Layout:
    categorical: list[tuple[int, FeatureDef]]  # (spec index, feature) in column order
    plain: list[int]  # spec indices of plain numeric features
    plain_values: list[int]  # their value columns in `num`
    plain_missing: list[int]  # their missing-indicator columns in `num`
    plain_positions: list[int]  # their places in numeric_features
    log: npt.NDArray[np.bool_]
    center: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    clip: npt.NDArray[np.float64]
    cyclic: list[tuple[int, int, int]]  # (spec index, first value column, missing column)
    ports: list[int]  # the categorical columns of port_bucket features
    width: int


@dataclass(frozen=True)
class _DensePlan:
    width: int
    one_hot: npt.NDArray[np.int64]  # categorical columns coded one-hot …
    one_hot_starts: npt.NDArray[np.int64]  # … and where each one's block starts
    coded: npt.NDArray[np.int64]  # categorical columns with a random code …
    code_offsets: npt.NDArray[np.int64]  # … the first row of each one's codes in code_table …
    code_positions: npt.NDArray[np.int64]  # … and the CODE_DIM positions of each, in order
    code_table: FloatArray


class FeatureEncoder:
    """A feature spec fitted on training events: vocabularies and scalers, JSON-serialisable."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._extract = compile_extractor([f.path for f in spec.features])
        self._numeric: dict[str, _Numeric] = {}
        self._dense_plans: dict[int, _DensePlan] = {}
        self._vocab: dict[str, _Vocab] = {}
        self._examples: dict[str, dict[int, str]] = {}  # hashed: bucket → its most common training value
        # port_bucket: the numbers no port can be that training held (a producer's "no port": -1)
        self._port_sentinels: dict[str, frozenset[str]] = {}
        # False for a bundle written before the sentinels were learnt (2026-12-06): which impossible
        # ports its training held is unknown, so none flags, as none did when it was written (every
        # -1 of a producer's would be flagged otherwise, and refresh keeps the encoder)
        self.checks_ports = True
        self.fitted_ = False

    # ---------------------------------------------------------------- layout
    @cached_property
    def categorical_features(self) -> list[FeatureDef]:
        return [f for f in self.spec.features if f.is_categorical]

    @cached_property
    def numeric_features(self) -> list[FeatureDef]:
        return [f for f in self.spec.features if not f.is_categorical]

    @property
    def port_sentinels(self) -> dict[str, list[str]]:
        """Per port field, the numbers no port can be that training held: read as a port never
        seen, not flagged (a producer's "no port", such as -1)."""
        return {name: sorted(values) for name, values in self._port_sentinels.items() if values}

    def cardinality(self, feature: FeatureDef) -> int:
        if feature.kind == "hashed":
            return feature.buckets + RESERVED
        if feature.kind == "port_bucket":
            return len(PORT_BUCKETS) + RESERVED
        return self._vocab[feature.name].cardinality

    @property
    def cardinalities(self) -> list[int]:
        return [self.cardinality(f) for f in self.categorical_features]

    @cached_property
    def numeric_columns(self) -> list[str]:
        """Value columns first, one missing indicator per numeric feature after them."""
        values: list[str] = []
        for f in self.numeric_features:
            if f.kind == "time_cyclic":
                values += [
                    f"{f.name}:hour_sin",
                    f"{f.name}:hour_cos",
                    f"{f.name}:dow_sin",
                    f"{f.name}:dow_cos",
                ]
            else:
                values.append(f.name)
        return values + [f"{f.name}:missing" for f in self.numeric_features]

    @cached_property
    def numeric_value_starts(self) -> list[int]:
        """For each numeric feature, its first value column (time_cyclic features have four)."""
        starts, column = [], 0
        for f in self.numeric_features:
            starts.append(column)
            column += 4 if f.kind == "time_cyclic" else 1
        return starts

    @cached_property
    def numeric_column_feature(self) -> list[int]:
        """For each numeric column, the index of its feature in ``numeric_features``."""
        owners: list[int] = []
        for i, f in enumerate(self.numeric_features):
            owners += [i] * (4 if f.kind == "time_cyclic" else 1)
        return owners + list(range(len(self.numeric_features)))

    # ---------------------------------------------------------------- fit
    def fit(self, events: Sequence[Event]) -> FeatureEncoder:
        """Learn vocabularies and robust scalers from training events."""
        if not events:
            raise EncoderError("cannot fit features on zero events")
        self.__dict__.pop("_layout", None)  # derived from the fitted state below
        self._dense_plans.clear()
        for feature, raw in zip(self.spec.features, self._columns(events), strict=True):
            if feature.kind == "numeric":
                values = self._transform(feature, to_numbers(raw))
                self._numeric[feature.name] = _robust_scaler(values[~np.isnan(values)])
            elif feature.kind in ("categorical", "ip_prefix"):
                keys = self.category_keys(feature, raw)
                counts = Counter(k for k in keys if k is not None and k != NOT_SCALAR)
                kept = [v for v, c in counts.most_common(feature.max_categories) if c >= feature.min_count]
                self._vocab[feature.name] = _Vocab(sorted(kept))
            elif feature.kind == "hashed":  # explanations name a bucket by the value it mostly held
                examples: dict[int, str] = {}
                counts = Counter(
                    k for k in self.category_keys(feature, raw) if k is not None and k != NOT_SCALAR
                )
                for key, _ in counts.most_common():
                    examples.setdefault(stable_bucket(key, feature.buckets), key)
                self._examples[feature.name] = examples
            elif feature.kind == "port_bucket":
                held = _impossible_ports(raw, [_port_index(v) for v in raw])
                rows = np.flatnonzero(held) if held is not None else np.zeros(0, dtype=np.int64)
                sentinels = Counter(_port_number(raw[i]) for i in rows)
                self._port_sentinels[feature.name] = frozenset(
                    key for key, _ in sentinels.most_common(PORT_SENTINELS_MAX)
                )
        self.fitted_ = True
        return self

    def empty(self, encoded: EncodedBatch) -> npt.NDArray[np.bool_]:
        """Which encoded events held none of the spec's fields (every one missing; an impossible
        number is no missing field: such an event is flagged for it)."""
        empty: npt.NDArray[np.bool_] = (encoded.cat == 0).all(axis=1)
        n_numeric = len(self.numeric_features)
        if n_numeric:
            empty &= (encoded.num[:, -n_numeric:] == 1).all(axis=1)
        if encoded.invalid is not None:
            empty &= ~encoded.invalid.any(axis=1)
        return empty

    def coverage(self, events: Sequence[Event], what: str) -> Coverage:
        """Which of the spec's fields ``events`` hold, refusing events that hold none of them.

        A model fitted, re-baselined or calibrated on such events sees nothing: every one encodes
        alike, as all-missing, and it would pass every later event as normal.
        """
        per_field = self._held(events)
        empty = int((~per_field.any(axis=1)).sum())
        if empty == len(events):
            raise EncoderError(self.none_held(len(events), what))
        held = np.flatnonzero(per_field.any(axis=0))
        seen = {self.spec.features[i].path for i in held}
        absent = [path for path in self._paths() if path not in seen]
        return Coverage(events=len(events), empty=empty, absent=absent, what=what)

    def holding_none(self, events: Sequence[Event]) -> int:
        """How many of ``events`` hold none of the spec's fields."""
        return int((~self._held(events).any(axis=1)).sum())

    def none_held(self, n: int, what: str) -> str:
        """What to say of ``n`` events (``what``) none of which holds any of the spec's fields."""
        paths = self._paths()
        shown = ", ".join(paths[:5]) + ("…" if len(paths) > 5 else "")
        return (
            f"none of the {n:,} {what} holds any of the model's {len(paths)} fields "
            f"({shown}): they are not the kind of events the model describes"
        )

    def _held(self, events: Sequence[Event]) -> npt.NDArray[np.bool_]:
        """Whether each event holds each feature's field."""
        present = [[value is not None for value in values] for values in map(self._extract, events)]
        return np.array(present, dtype=bool).reshape(len(events), len(self.spec.features))

    def _paths(self) -> list[str]:
        return list(dict.fromkeys(f.path for f in self.spec.features))  # a path may feed two features

    def _columns(self, events: Sequence[Event]) -> list[list[Any]]:
        """Per feature, the raw value of its path in every event (None where absent)."""
        if not events:
            return [[] for _ in self.spec.features]
        extract = self._extract
        return [list(column) for column in zip(*[extract(e) for e in events], strict=True)]

    @staticmethod
    def _transform(feature: FeatureDef, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return signed_log1p(values) if feature.transform == "log1p" else values

    @staticmethod
    def category_keys(feature: FeatureDef, raw: list[Any]) -> list[str | None]:
        keys = [category_key(v) for v in raw]
        if feature.kind == "ip_prefix":
            return [
                k
                if k is None or k == NOT_SCALAR
                else (ip_prefix(k, feature.prefix_v4, feature.prefix_v6) or NOT_SCALAR)
                for k in keys
            ]
        return keys

    # ---------------------------------------------------------------- encode
    @cached_property
    def _layout(self) -> _Layout:
        """Where each feature's inputs and outputs sit, and the scalers as arrays (after fit)."""
        features = list(self.spec.features)
        numeric = self.numeric_features
        n_values = len(self.numeric_columns) - len(numeric)
        plain = [f for f in numeric if f.kind == "numeric"]
        states = [self._numeric[f.name] for f in plain]
        return _Layout(
            categorical=[(features.index(f), f) for f in self.categorical_features],
            plain=[features.index(f) for f in plain],
            plain_values=[self.numeric_value_starts[numeric.index(f)] for f in plain],
            plain_missing=[n_values + numeric.index(f) for f in plain],
            plain_positions=[numeric.index(f) for f in plain],
            log=np.array([f.transform == "log1p" for f in plain], dtype=bool),
            center=np.array([st.center for st in states], dtype=np.float64),
            scale=np.array([st.scale for st in states], dtype=np.float64),
            clip=np.array([f.clip for f in plain], dtype=np.float64),
            cyclic=[
                (features.index(f), self.numeric_value_starts[numeric.index(f)], n_values + numeric.index(f))
                for f in numeric
                if f.kind == "time_cyclic"
            ],
            ports=[j for j, f in enumerate(self.categorical_features) if f.kind == "port_bucket"],
            width=len(self.numeric_columns),
        )

    def encode(self, events: Sequence[Event]) -> EncodedBatch:
        """Encode a batch. Never raises on the content of an event.

        Numeric features are transformed, scaled and clipped together as one matrix, so a small
        batch (one event, as a service sees) costs a few array operations rather than a few per feature.
        """
        if not self.fitted_:
            raise EncoderError("encoder is not fitted")
        layout = self._layout
        n = len(events)
        columns = self._columns(events)
        num = np.zeros((n, layout.width), dtype=np.float32)
        n_numeric = len(self.numeric_features)
        invalid = None
        if layout.plain:
            x, impossible = numbers([columns[i] for i in layout.plain], len(layout.plain))
            if impossible.any():  # shown to the network as missing; the detector flags the event
                invalid = np.zeros((n, n_numeric + len(layout.categorical)), dtype=bool)
                invalid[:, layout.plain_positions] = impossible
            x[:, layout.log] = signed_log1p(x[:, layout.log])
            absent = np.isnan(x)
            scaled = np.clip((x - layout.center) / layout.scale, -layout.clip, layout.clip)
            scaled[absent] = 0.0
            num[:, layout.plain_values] = scaled
            num[:, layout.plain_missing] = absent
        for index, start, missing_column in layout.cyclic:
            ms, impossible_time = epoch_ms_checked(columns[index])
            if impossible_time.any():  # a time no event can hold (1e300, "Infinity"): flagged as numbers are
                if invalid is None:
                    invalid = np.zeros((n, n_numeric + len(layout.categorical)), dtype=bool)
                invalid[:, missing_column - (layout.width - n_numeric)] = impossible_time
            absent_time = np.isnan(ms)
            hour = (ms / 3_600_000.0) % 24.0 * (2 * math.pi / 24.0)
            dow = ((ms / 86_400_000.0) + 3.0) % 7.0 * (2 * math.pi / 7.0)  # 1970-01-01 was a Thursday
            block = np.stack([np.sin(hour), np.cos(hour), np.sin(dow), np.cos(dow)], axis=1)
            block[absent_time] = 0.0
            num[:, start : start + 4] = block
            num[:, missing_column] = absent_time
        # every categorical column as a list of indices, then one array (not one per column)
        indices = [self._category_indices(feature, columns[index]) for index, feature in layout.categorical]
        # a number no port can be (70000): still an unknown port, and flagged
        for j in layout.ports if self.checks_ports else ():
            index, feature = layout.categorical[j]
            impossible_port = _impossible_ports(
                columns[index], indices[j], self._port_sentinels.get(feature.name, frozenset())
            )
            if impossible_port is not None:
                if invalid is None:
                    invalid = np.zeros((n, n_numeric + len(layout.categorical)), dtype=bool)
                invalid[:, n_numeric + j] = impossible_port
        cat = np.ascontiguousarray(np.array(indices, dtype=np.int64).reshape(len(layout.categorical), n).T)
        return EncodedBatch(cat=cat, num=num, invalid=invalid)

    def _category_indices(self, feature: FeatureDef, raw: list[Any]) -> list[int]:
        if feature.kind == "port_bucket":
            return [_port_index(value) for value in raw]
        if feature.kind == "categorical":  # the common kind, in one pass (category_key is None only for None)
            vocab: dict[Any, int] = self._vocab[feature.name].index
            return [MISSING_INDEX if v is None else vocab.get(category_key(v), UNKNOWN_INDEX) for v in raw]
        keys = self.category_keys(feature, raw)
        if feature.kind == "hashed":
            return [
                MISSING_INDEX
                if key is None
                else UNKNOWN_INDEX
                if key == NOT_SCALAR
                else RESERVED + stable_bucket(key, feature.buckets)
                for key in keys
            ]
        index = self._vocab[feature.name].index
        return [MISSING_INDEX if k is None else index.get(k, UNKNOWN_INDEX) for k in keys]

    # ---------------------------------------------------------------- feature space
    def dense(self, batch: EncodedBatch, *, seed: int = 0) -> FloatArray:
        """The encoded rows as one float vector each, for k-NN in feature space.

        Numeric columns as scaled; categoricals one-hot (≤ 64 values) or a fixed random 16-d code,
        so that two different categories sit about √2 apart either way, as in a one-hot encoding.
        Written with three array operations whatever the number of columns (one event, as a
        service sees, would otherwise pay a few for each categorical column).
        """
        plan = self._dense_plan(seed)
        n, width = len(batch.num), batch.num.shape[1]
        out = np.zeros((n, plan.width), dtype=np.float32)
        out[:, :width] = batch.num
        if len(plan.one_hot):
            out[np.arange(n)[:, None], plan.one_hot_starts + batch.cat[:, plan.one_hot]] = 1.0
        if len(plan.coded):
            codes = plan.code_table[plan.code_offsets + batch.cat[:, plan.coded]]  # (n, coded, CODE_DIM)
            out[:, plan.code_positions] = codes.reshape(n, len(plan.code_positions))  # n may be 0
        return out

    def _dense_plan(self, seed: int) -> _DensePlan:
        """Where each categorical column's code goes in the dense vector, and the codes themselves
        (made once per seed; two threads making it at once make the same one)."""
        plan = self._dense_plans.get(seed)
        if plan is None:
            plan = self._dense_plans[seed] = self._make_dense_plan(seed)
        return plan

    def _make_dense_plan(self, seed: int) -> _DensePlan:
        position = len(self.numeric_columns)
        one_hot: list[int] = []
        one_hot_starts: list[int] = []
        coded: list[int] = []
        code_offsets: list[int] = []
        code_positions: list[int] = []
        tables: list[FloatArray] = []
        offset = 0
        for j, card in enumerate(self.cardinalities):
            codes = category_codes(j, card, seed)
            if card <= ONE_HOT_MAX:
                one_hot.append(j)
                one_hot_starts.append(position)
            else:
                coded.append(j)
                code_offsets.append(offset)
                code_positions.extend(range(position, position + CODE_DIM))
                tables.append(codes)
                offset += card
            position += codes.shape[1]
        return _DensePlan(
            width=position,
            one_hot=np.array(one_hot, dtype=np.int64),
            one_hot_starts=np.array(one_hot_starts, dtype=np.int64),
            coded=np.array(coded, dtype=np.int64),
            code_offsets=np.array(code_offsets, dtype=np.int64),
            code_positions=np.array(code_positions, dtype=np.int64),
            code_table=np.concatenate(tables) if tables else np.zeros((0, CODE_DIM), dtype=np.float32),
        )

    # ---------------------------------------------------------------- explain helpers
    def category_label(self, feature: FeatureDef, index: int) -> str | None:
        """The value behind a categorical index, for explanations (None = missing)."""
        if index == MISSING_INDEX:
            return None
        if index == UNKNOWN_INDEX:
            return "<unknown>"
        if feature.kind == "hashed":  # the bucket's most common value in training, if it had one
            return self._examples.get(feature.name, {}).get(index - RESERVED)
        if feature.kind == "port_bucket":
            return PORT_BUCKETS[index - RESERVED]
        return self._vocab[feature.name].values[index - RESERVED]

    def numeric_value(self, feature: FeatureDef, scaled: float) -> float:
        """Undo scaling (and log1p) of one value column, for explanations."""
        state = self._numeric[feature.name]
        x = scaled * state.scale + state.center
        if feature.transform == "log1p":
            x = math.copysign(math.expm1(min(abs(x), 700.0)), x)
        return float(x)

    def unclipped(self, feature: FeatureDef, values: Sequence[Any]) -> npt.NDArray[np.float64]:
        """Values of a numeric feature transformed and scaled as :meth:`encode` does, but not
        clipped (NaN where absent or unusable), for explanations: how far beyond the clip a value
        lies, and which number a stored (float32) value stands for."""
        state = self._numeric[feature.name]
        return (self._transform(feature, to_numbers(values)) - state.center) / state.scale

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "spec": self.spec.to_dict(),
            "numeric": {k: {"center": v.center, "scale": v.scale} for k, v in self._numeric.items()},
            "vocab": {k: v.values for k, v in self._vocab.items()},
            "examples": {k: {str(b): v for b, v in sorted(e.items())} for k, e in self._examples.items()},
        }
        if self.checks_ports:  # absent: as the bundle it was read from (refresh keeps the encoder)
            data["port_sentinels"] = {k: sorted(v) for k, v in self._port_sentinels.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEncoder:
        try:
            encoder = cls(FeatureSpec.from_dict(data["spec"], source="features.json"))
            for name, state in data["numeric"].items():
                numeric = _Numeric(center=float(state["center"]), scale=float(state["scale"]))
                if not (math.isfinite(numeric.center) and math.isfinite(numeric.scale) and numeric.scale > 0):
                    raise EncoderError(
                        f"the scaler of {name!r} needs a finite center and a finite scale above 0"
                    )
                encoder._numeric[name] = numeric
            for name, values in data["vocab"].items():
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise EncoderError(f"vocabulary of {name!r} must be a list of strings")
                encoder._vocab[name] = _Vocab(list(values))
            for name, examples in data["examples"].items():
                if not all(isinstance(v, str) for v in examples.values()):
                    raise EncoderError(f"examples of {name!r} must be strings")
                encoder._examples[name] = {int(bucket): value for bucket, value in examples.items()}
            encoder.checks_ports = "port_sentinels" in data
            for name, values in data.get("port_sentinels", {}).items():
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise EncoderError(f"port sentinels of {name!r} must be a list of strings")
                encoder._port_sentinels[name] = frozenset(values)
            expected = {f.name for f in encoder.spec.features if f.kind == "numeric"}
            expected_vocab = {f.name for f in encoder.spec.features if f.kind in ("categorical", "ip_prefix")}
            expected_examples = {f.name for f in encoder.spec.features if f.kind == "hashed"}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EncoderError(f"features.json is malformed: {exc}") from exc
        if (
            set(encoder._numeric) != expected
            or set(encoder._vocab) != expected_vocab
            or set(encoder._examples) != expected_examples
        ):
            raise EncoderError(
                "features.json does not match its own spec (scalers, vocabularies or examples missing)"
            )
        encoder.fitted_ = True
        return encoder


@lru_cache(maxsize=256)
def category_codes(column: int, cardinality: int, seed: int) -> FloatArray:
    """One-hot rows for a narrow categorical, fixed random unit codes for a wide one."""
    if cardinality <= ONE_HOT_MAX:
        return np.eye(cardinality, dtype=np.float32)
    rng = np.random.default_rng([seed, column, cardinality])
    codes = rng.standard_normal((cardinality, CODE_DIM))
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    return codes.astype(np.float32)


def _robust_scaler(values: npt.NDArray[np.float64]) -> _Numeric:
    if values.size == 0:
        return _Numeric()
    center = float(np.median(values))
    q25, q75 = np.percentile(values, [25, 75])
    scale = float(q75 - q25) / 1.349  # the IQR of a normal distribution, in standard deviations
    if scale < 1e-9:
        scale = float(np.std(values))
    if scale < 1e-9:  # constant in training: a change shows in raw units, then is clipped
        scale = 1.0
    return _Numeric(center=center, scale=scale)
