"""The feature encoder: odd input never raises, missing/unknown handling, every kind, stability, persistence."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scorer.features.encoder import (
    MISSING_INDEX,
    ONE_HOT_MAX,
    PORT_BUCKETS,
    RESERVED,
    UNKNOWN_INDEX,
    EncodedBatch,
    EncoderError,
    FeatureEncoder,
    category_codes,
    stable_bucket,
)
from scorer.features.infer import infer_spec
from scorer.features.spec import FeatureDef, FeatureSpec, default_spec
from scorer.io import OutOfRange, load_events
from scorer.paths import shared_data_dir

Event = dict[str, Any]

WELL_KNOWN, REGISTERED, EPHEMERAL = (RESERVED + i for i in range(len(PORT_BUCKETS)))

# One feature of every kind, each on its own path.
SPEC = FeatureSpec(
    features=(
        FeatureDef(path="cat", kind="categorical"),
        FeatureDef(path="num", kind="numeric", clip=4.0),
        FeatureDef(path="hsh", kind="hashed", buckets=32),
        FeatureDef(path="time", kind="time_cyclic"),
        FeatureDef(path="ip", kind="ip_prefix"),
        FeatureDef(path="port", kind="port_bucket"),
        FeatureDef(path="deep.a.b", kind="numeric", transform="log1p"),
    )
)
PATHS = ("cat", "num", "hsh", "time", "ip", "port")
CAT_NAMES = ["cat", "hsh", "ip#ip_prefix", "port#port_bucket"]
NUM_FEATURES = ["num", "time#time_cyclic", "deep.a.b"]


def _training_events() -> list[Event]:
    events = []
    for i in range(60):
        events.append(
            {
                "cat": ["alpha", "beta", "gamma", 4001, ""][i % 5],
                "num": float(i),
                "hsh": f"host-{i % 7}.example.com",
                "time": 1_700_000_000_000 + i * 3_600_000,
                "ip": f"10.1.{i % 3}.{i}",
                "port": [22, 443, 8080, 50000][i % 4],
                "deep": {"a": {"b": i * 100}},
            }
        )
    return events


@pytest.fixture(scope="module")
def encoder() -> FeatureEncoder:
    return FeatureEncoder(SPEC).fit(_training_events())


def _col(encoder: FeatureEncoder, name: str) -> int:
    return [f.name for f in encoder.categorical_features].index(name)


def _missing_col(encoder: FeatureEncoder, name: str) -> int:
    return encoder.numeric_columns.index(f"{name}:missing")


def _value_col(encoder: FeatureEncoder, name: str) -> int:
    return encoder.numeric_columns.index(name)


def _check_shape(encoder: FeatureEncoder, batch: EncodedBatch, n: int) -> None:
    assert batch.cat.shape == (n, len(encoder.categorical_features))
    assert batch.num.shape == (n, len(encoder.numeric_columns))
    assert batch.cat.dtype == np.int64
    assert batch.num.dtype == np.float32
    assert np.isfinite(batch.num).all()
    assert (batch.cat >= 0).all()
    assert (batch.cat < np.asarray(encoder.cardinalities)).all()


def _assert_all_missing(encoder: FeatureEncoder, batch: EncodedBatch) -> None:
    assert (batch.cat == MISSING_INDEX).all()
    n_values = len(encoder.numeric_columns) - len(NUM_FEATURES)
    assert (batch.num[:, :n_values] == 0).all()
    assert (batch.num[:, n_values:] == 1).all()


# ------------------------------------------------------------------ odd input never raises
def test_absent_paths_and_nulls_encode_as_missing(encoder: FeatureEncoder) -> None:
    events: list[Any] = [{}, dict.fromkeys(PATHS), {"deep": None}, {"deep": {"a": None}}, {"deep": {"a": {}}}]
    batch = encoder.encode(events)
    _check_shape(encoder, batch, len(events))
    _assert_all_missing(encoder, batch)


@pytest.mark.parametrize("event", [[1, 2], "an event", None, 42, 3.5, True, b"{}", ("cat", "alpha")])
def test_non_dict_events_encode_as_missing(encoder: FeatureEncoder, event: Any) -> None:
    batch = encoder.encode([event, {"cat": "alpha"}])
    _check_shape(encoder, batch, 2)
    _assert_all_missing(encoder, batch.take(np.array([0])))
    assert batch.cat[1, _col(encoder, "cat")] >= RESERVED


def test_empty_batch(encoder: FeatureEncoder) -> None:
    batch = encoder.encode([])
    _check_shape(encoder, batch, 0)
    assert len(batch) == 0
    assert batch.row_digests() == []


def test_an_intermediate_that_is_not_an_object_is_missing(encoder: FeatureEncoder) -> None:
    batch = encoder.encode([{"deep": "text"}, {"deep": [1]}, {"deep": {"a": 5}}, {"deep": {"a": [{"b": 1}]}}])
    assert (batch.num[:, _missing_col(encoder, "deep.a.b")] == 1).all()


NOT_SCALARS = [[1, 2], [], [None], {"x": 1}, {}, [{"a": 1}]]


@pytest.mark.parametrize("value", NOT_SCALARS, ids=repr)
def test_list_or_object_where_a_scalar_belongs(encoder: FeatureEncoder, value: Any) -> None:
    batch = encoder.encode([dict.fromkeys(PATHS, value), {"num": 3}])
    _check_shape(encoder, batch, 2)
    for name in CAT_NAMES:
        assert batch.cat[0, _col(encoder, name)] == UNKNOWN_INDEX, name
    for name in ("num", "time#time_cyclic"):
        assert batch.num[0, _missing_col(encoder, name)] == 1, name
    assert batch.num[1, _missing_col(encoder, "num")] == 0


# Values that are scalars but no number, no address and (for the vocabulary) never seen in training.
ODD_SCALARS = [
    "abc",
    " ",
    10**400,
    -(10**400),
    math.inf,
    -math.inf,
    math.nan,
    "inf",
    "nan",
    "1e999",
    "naïve café",
    "日本語",
    "😀🔥",
    "\ud800",
    "a\udfffb",
    "\x00",
    "0x1F",
]


@pytest.mark.parametrize("value", ODD_SCALARS, ids=repr)
def test_odd_scalars_never_raise_and_are_missing_or_unknown(encoder: FeatureEncoder, value: Any) -> None:
    batch = encoder.encode([dict.fromkeys(PATHS, value) | {"deep": {"a": {"b": value}}}])
    _check_shape(encoder, batch, 1)
    for name in ("cat", "ip#ip_prefix", "port#port_bucket"):
        assert batch.cat[0, _col(encoder, name)] == UNKNOWN_INDEX, name
    # a hashed string lands in a real bucket; it is a value, just not one we need to have seen
    assert batch.cat[0, _col(encoder, "hsh")] >= RESERVED
    for name in NUM_FEATURES:
        assert batch.num[0, _missing_col(encoder, name)] == 1, name


def test_booleans(encoder: FeatureEncoder) -> None:
    batch = encoder.encode([dict.fromkeys(PATHS, True), dict.fromkeys(PATHS, False), {"num": 1}, {"num": 0}])
    _check_shape(encoder, batch, 4)
    assert batch.cat[0, _col(encoder, "cat")] == UNKNOWN_INDEX  # "true" was never seen
    assert batch.cat[0, _col(encoder, "ip#ip_prefix")] == UNKNOWN_INDEX
    assert batch.cat[0, _col(encoder, "hsh")] != batch.cat[1, _col(encoder, "hsh")]
    # by design (scorer.features.encoder._number) a bool where a number belongs counts as 1 / 0:
    # in a numeric field, a port (1 → well-known) and a time (epoch second 1) alike
    value = _value_col(encoder, "num")
    assert batch.num[0, value] == batch.num[2, value]
    assert batch.num[1, value] == batch.num[3, value]
    assert batch.cat[0, _col(encoder, "port#port_bucket")] == WELL_KNOWN
    as_numbers = encoder.encode([dict.fromkeys(PATHS, 1), dict.fromkeys(PATHS, 0)])
    np.testing.assert_array_equal(batch.num[:2], as_numbers.num)


def test_booleans_in_a_vocabulary() -> None:
    spec = FeatureSpec(features=(FeatureDef(path="is_mfa", kind="categorical"),))
    encoder = FeatureEncoder(spec).fit([{"is_mfa": True}, {"is_mfa": False}] * 3)
    cat = encoder.encode([{"is_mfa": True}, {"is_mfa": False}, {"is_mfa": "true"}, {}]).cat[:, 0]
    assert cat[0] >= RESERVED
    assert cat[1] >= RESERVED
    assert cat[0] != cat[1]
    assert cat[2] == cat[0]  # "true" and True are one category, as 4001 and "4001"
    assert cat[3] == MISSING_INDEX


@pytest.mark.parametrize("text", ["443", " 443 ", "443.0", "4.43e2"])
def test_numeric_strings_count_as_numbers(encoder: FeatureEncoder, text: str) -> None:
    batch = encoder.encode([{"num": text, "port": text}, {"num": 443, "port": 443}])
    assert batch.num[0, _missing_col(encoder, "num")] == 0
    np.testing.assert_array_equal(batch.num[0], batch.num[1])
    assert batch.cat[0, _col(encoder, "port#port_bucket")] == WELL_KNOWN


def test_mixed_types_in_one_batch(encoder: FeatureEncoder) -> None:
    """Every numeric field of a batch is read in one pass: an odd value in one field and one row
    changes nothing else, and a batch encodes row for row as its events one at a time."""
    values: list[Any] = [1, "2", None, [3], {"x": 4}, "five", 10**400, True, 6.5, math.nan, "1e999"]
    events = [{"num": v, "deep": {"a": {"b": values[-1 - i]}}} for i, v in enumerate(values)]
    batch = encoder.encode(events)
    singles = [encoder.encode([e]) for e in events]
    np.testing.assert_array_equal(batch.num, np.concatenate([b.num for b in singles]))
    assert batch.invalid is not None
    np.testing.assert_array_equal(
        batch.invalid,
        np.concatenate(
            [b.invalid if b.invalid is not None else np.zeros_like(batch.invalid[:1]) for b in singles]
        ),
    )
    missing = batch.num[:, _missing_col(encoder, "num")].tolist()
    assert missing == [0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1]
    assert batch.num[:, _missing_col(encoder, "deep.a.b")].tolist() == missing[::-1]
    # 10**400 and "1e999" are impossible numbers; nothing else is
    impossible = [i for i, v in enumerate(values) if v in (10**400, "1e999")]
    numeric = [f.name for f in encoder.numeric_features]
    assert np.flatnonzero(batch.invalid[:, numeric.index("num")]).tolist() == impossible
    assert np.flatnonzero(batch.invalid[:, numeric.index("deep.a.b")]).tolist() == [
        len(values) - 1 - i for i in reversed(impossible)
    ]


def test_gigantic_int_in_a_categorical_field_does_not_raise(encoder: FeatureEncoder) -> None:
    batch = encoder.encode([dict.fromkeys(PATHS, 10**5000)])
    assert batch.cat[0, _col(encoder, "cat")] == UNKNOWN_INDEX


def test_gigantic_int_in_numeric_fields_is_missing() -> None:
    spec = FeatureSpec(
        features=(
            FeatureDef(path="num", kind="numeric"),
            FeatureDef(path="time", kind="time_cyclic"),
            FeatureDef(path="port", kind="port_bucket"),
        )
    )
    encoder = FeatureEncoder(spec).fit([{"num": 1, "time": 1, "port": 1}])
    batch = encoder.encode([dict.fromkeys(("num", "time", "port"), 10**5000)])
    assert batch.cat[0, 0] == UNKNOWN_INDEX
    assert (batch.num[0, -2:] == 1).all()


# ------------------------------------------------------------------ categorical vocabularies
def test_vocabulary_indices_missing_and_unknown(encoder: FeatureEncoder) -> None:
    j = _col(encoder, "cat")
    seen = ["alpha", "beta", "gamma", 4001, ""]
    batch = encoder.encode([{"cat": v} for v in [*seen, "delta", "ALPHA", None]] + [{}])
    indices = batch.cat[:, j].tolist()
    known = indices[: len(seen)]
    assert all(i >= RESERVED for i in known)
    assert len(set(known)) == len(known)  # distinct values, distinct indices
    assert indices[5] == UNKNOWN_INDEX
    assert indices[6] == UNKNOWN_INDEX
    assert indices[7] == MISSING_INDEX
    assert indices[8] == MISSING_INDEX
    assert encoder.cardinality(encoder.categorical_features[j]) == len(seen) + RESERVED


def test_values_that_look_like_the_reserved_slots_get_their_own_index() -> None:
    lookalikes = ["", "0", "1", "None", "null", "<unknown>", "unknown", "missing", "nan"]
    spec = FeatureSpec(features=(FeatureDef(path="v", kind="categorical", min_count=1),))
    encoder = FeatureEncoder(spec).fit([{"v": v} for v in lookalikes])
    indices = encoder.encode([{"v": v} for v in lookalikes]).cat[:, 0].tolist()
    assert sorted(indices) == list(range(RESERVED, RESERVED + len(lookalikes)))
    for index, value in zip(indices, lookalikes, strict=True):
        assert encoder.category_label(spec.features[0], index) == value


@pytest.mark.parametrize("values", [10, 100], ids=["one-hot", "coded"])
def test_the_feature_space_of_no_events_is_empty_not_an_error(values: int) -> None:
    """A batch without one event (a file chunk of bad lines only): a categorical of more than 64
    values, which gets a code rather than one-hot columns, made dense() fail to reshape 0 rows."""
    spec = FeatureSpec(features=(FeatureDef(path="v", kind="categorical", min_count=1, max_categories=200),))
    encoder = FeatureEncoder(spec).fit([{"v": str(i)} for i in range(values)])
    one = encoder.dense(encoder.encode([{"v": "1"}]))
    none = encoder.dense(encoder.encode([]))
    assert none.shape == (0, one.shape[1])


def test_min_count_and_max_categories() -> None:
    spec = FeatureSpec(features=(FeatureDef(path="v", kind="categorical", min_count=3, max_categories=2),))
    events = [{"v": "a"}] * 10 + [{"v": "b"}] * 5 + [{"v": "c"}] * 4 + [{"v": "d"}] * 2
    encoder = FeatureEncoder(spec).fit(events)
    cat = encoder.encode([{"v": v} for v in "abcd"]).cat[:, 0].tolist()
    assert cat[0] >= RESERVED
    assert cat[1] >= RESERVED
    assert cat[0] != cat[1]
    assert cat[2] == UNKNOWN_INDEX  # frequent enough but beyond max_categories
    assert cat[3] == UNKNOWN_INDEX  # under min_count


@pytest.mark.parametrize("code", [4001, 4001.0, "4001"], ids=repr)
def test_enum_codes_in_every_form_share_an_index(code: Any) -> None:
    spec = FeatureSpec(features=(FeatureDef(path="class_uid", kind="categorical"),))
    encoder = FeatureEncoder(spec).fit([{"class_uid": code}, {"class_uid": code}, {"class_uid": 3002}] * 2)
    cat = encoder.encode([{"class_uid": 4001}, {"class_uid": 4001.0}, {"class_uid": "4001"}]).cat[:, 0]
    assert cat[0] >= RESERVED
    assert cat.tolist() == [cat[0]] * 3
    other = encoder.encode([{"class_uid": 3002}, {"class_uid": 4001.5}]).cat[:, 0]
    assert other[0] not in (cat[0], UNKNOWN_INDEX)
    assert other[1] == UNKNOWN_INDEX


# ------------------------------------------------------------------ numeric
def test_numeric_scaling_and_clipping(encoder: FeatureEncoder) -> None:
    value = _value_col(encoder, "num")
    batch = encoder.encode([{"num": 1e12}, {"num": -1e12}, {"num": 1.7976931348623157e308}, {"num": 29.5}])
    assert batch.num[0, value] == pytest.approx(4.0)
    assert batch.num[1, value] == pytest.approx(-4.0)
    assert abs(batch.num[3, value]) < 0.1  # the median of 0..59
    assert np.isfinite(batch.num).all()
    # the largest float is no real count: the network sees it as missing, the batch marks it impossible
    assert batch.num[2, _missing_col(encoder, "num")] == 1
    assert batch.invalid is not None
    position = [f.name for f in encoder.numeric_features].index("num")
    assert batch.invalid[:, position].tolist() == [False, False, True, False]


IMPOSSIBLE = [
    10**400,
    -(10**400),
    math.inf,
    -math.inf,
    "inf",
    "nan",
    "NaN",
    "Infinity",
    "1e999",
    -1e308,
    1e308,
    2**65,
    2**64 + 1,  # rounds to 2⁶⁴ as a double, as 2⁶⁴ - 1 does: it was read as possible
    -(2**64) - 1,
    str(2**64 + 1),
]
# the edges of 64-bit integers, signed and unsigned (Long.MAX_VALUE, a counter's 2⁶⁴ - 1 sentinel):
# as doubles they round to 2⁶³ and 2⁶⁴, and were marked impossible
EDGES = [2**63 - 1, -(2**63), 2**63, 2**64 - 1, -(2**64), str(2**63 - 1), str(2**64 - 1)]


@pytest.mark.parametrize("value", [*IMPOSSIBLE, *EDGES, "abc", None, math.nan, 2.0**62, "12"], ids=repr)
def test_an_impossible_number_is_marked_and_nothing_else(encoder: FeatureEncoder, value: Any) -> None:
    """Not finite, or beyond ±2⁶⁴ (a string that reads as such too); a float NaN is a dataframe's
    "missing", a word is no number at all: neither is impossible."""
    batch = encoder.encode([{"num": value}, {"num": 3}])
    position = [f.name for f in encoder.numeric_features].index("num")
    marked = batch.invalid is not None and bool(batch.invalid[0, position])
    assert marked == (value in IMPOSSIBLE)
    assert batch.invalid is None or not batch.invalid[1].any()
    assert batch.take(np.array([1])).invalid is None or not batch.take(np.array([1])).invalid.any()


@pytest.mark.parametrize("transform", ["none", "log1p"])
def test_constant_training_field_encodes_a_change_clipped_not_inf(transform: str) -> None:
    spec = FeatureSpec(features=(FeatureDef(path="x", kind="numeric", transform=transform),))  # type: ignore[arg-type]
    encoder = FeatureEncoder(spec).fit([{"x": 5}] * 50)
    num = encoder.encode([{"x": 5}, {"x": 1e9}, {"x": -1e9}, {"x": 6}]).num
    assert np.isfinite(num).all()
    assert num[0, 0] == 0.0
    assert num[1, 0] == pytest.approx(10.0)  # default clip
    assert num[2, 0] == pytest.approx(-10.0)
    assert 0.0 < num[3, 0] < 10.0


def test_all_missing_in_training_still_encodes() -> None:
    spec = FeatureSpec(features=(FeatureDef(path="x", kind="numeric"),))
    encoder = FeatureEncoder(spec).fit([{}] * 5)
    num = encoder.encode([{"x": 3}, {}]).num
    assert np.isfinite(num).all()
    assert num.tolist() == [[3.0, 0.0], [0.0, 1.0]]


def test_signed_log1p_keeps_the_sign() -> None:
    spec = FeatureSpec(features=(FeatureDef(path="x", kind="numeric", transform="log1p", clip=100.0),))
    encoder = FeatureEncoder(spec).fit([{"x": 0}, {"x": 0}, {"x": 0}])
    num = encoder.encode([{"x": 1000}, {"x": -1000}]).num[:, 0]
    assert num[0] == pytest.approx(math.log1p(1000), rel=1e-5)
    assert num[1] == pytest.approx(-math.log1p(1000), rel=1e-5)


# ------------------------------------------------------------------ time_cyclic
INSTANT_S = 1_700_000_000  # 2023-11-14T22:13:20Z, a Tuesday


def _time_columns(encoder: FeatureEncoder, batch: EncodedBatch) -> np.ndarray:
    start = encoder.numeric_columns.index("time#time_cyclic:hour_sin")
    return batch.num[:, start : start + 4]


def test_epoch_seconds_milliseconds_and_iso_strings_agree(encoder: FeatureEncoder) -> None:
    forms: list[Any] = [
        INSTANT_S * 1000,
        INSTANT_S,
        float(INSTANT_S),
        str(INSTANT_S * 1000),
        "2023-11-14T22:13:20Z",
        "2023-11-14T22:13:20+00:00",
        "2023-11-14T23:13:20+01:00",
        "2023-11-14T22:13:20.000Z",
        INSTANT_S * 10**6,  # microseconds, and nanoseconds: they were read as milliseconds
        INSTANT_S * 10**9,
        str(INSTANT_S * 10**9),
    ]
    batch = encoder.encode([{"time": v} for v in forms])
    columns = _time_columns(encoder, batch)
    assert (batch.num[:, _missing_col(encoder, "time#time_cyclic")] == 0).all()
    for row in columns[1:]:
        np.testing.assert_allclose(row, columns[0], atol=1e-5)
    when = datetime.fromtimestamp(INSTANT_S, tz=UTC)
    hour = (when.hour + when.minute / 60 + when.second / 3600) / 24 * 2 * math.pi
    dow = (when.weekday() + (when.hour + when.minute / 60 + when.second / 3600) / 24) / 7 * 2 * math.pi
    np.testing.assert_allclose(
        columns[0], [math.sin(hour), math.cos(hour), math.sin(dow), math.cos(dow)], atol=1e-4
    )


def test_iso_text_of_before_1973_is_not_read_as_seconds(encoder: FeatureEncoder) -> None:
    """Text says its own unit: 1970-01-01T05:00 is 18,000,000 ms, not 18,000 s taken for ms × 1000."""
    weeks_later = 5 * 3_600_000 + 200 * 7 * 86_400_000  # the same time of the week, in 1973
    batch = encoder.encode([{"time": "1970-01-01T05:00:00Z"}, {"time": weeks_later}])
    np.testing.assert_allclose(*_time_columns(encoder, batch), atol=1e-4)


def test_same_hour_a_week_apart_encodes_the_same(encoder: FeatureEncoder) -> None:
    week_ms = 7 * 86_400_000
    batch = encoder.encode([{"time": INSTANT_S * 1000}, {"time": INSTANT_S * 1000 + week_ms}])
    np.testing.assert_allclose(*_time_columns(encoder, batch), atol=1e-4)


@pytest.mark.parametrize("value", ["yesterday", "2023-13-45T00:00:00Z", "", [INSTANT_S], {"t": INSTANT_S}])
def test_unparseable_time_is_missing(encoder: FeatureEncoder, value: Any) -> None:
    batch = encoder.encode([{"time": value}])
    assert batch.num[0, _missing_col(encoder, "time#time_cyclic")] == 1
    assert (_time_columns(encoder, batch) == 0).all()
    assert batch.invalid is None  # not a time, but no impossible number either


@pytest.mark.parametrize(
    "value", [*IMPOSSIBLE, 2**66, 9.3e19, *EDGES, "abc", None, math.nan, 2.0**62, -5, 0, "12"], ids=repr
)
def test_an_impossible_time_is_marked_as_numbers_are(encoder: FeatureEncoder, value: Any) -> None:
    """A time of 1e300, 2**66 or "Infinity" was only missing: the event was not flagged. The rule is
    the numbers' (not finite, or beyond ±2⁶⁴); an odd but possible time (0, -5, 2**62, a 64-bit
    integer's edge, as nanoseconds 1677 to 2554) is not."""
    batch = encoder.encode([{"time": value, "num": 3}, {"time": INSTANT_S * 1000}])
    position = [f.name for f in encoder.numeric_features].index("time#time_cyclic")
    impossible = value in IMPOSSIBLE or value in (2**66, 9.3e19)
    marked = batch.invalid is not None and bool(batch.invalid[0, position])
    assert marked == impossible
    if impossible:
        assert batch.invalid is not None
        assert batch.invalid[0].sum() == 1  # only the time
        assert batch.num[0, _missing_col(encoder, "time#time_cyclic")] == 1  # the network: missing
        assert (_time_columns(encoder, batch)[0] == 0).all()
    assert batch.invalid is None or not batch.invalid[1].any()
    single = encoder.encode([{"time": value, "num": 3}])
    assert (single.invalid is not None and bool(single.invalid[0, position])) == impossible


_TZ_SCRIPT = """
import json, sys
from scorer.features.encoder import epoch_ms
print(json.dumps(epoch_ms(["2023-11-14T22:13:20", "2023-11-14T22:13:20Z"]).tolist()))
"""


def test_iso_time_without_offset_is_utc_on_every_machine() -> None:
    env = {**os.environ, "TZ": "EST+5"}  # POSIX form: UTC-5, needs no tz database
    out = subprocess.run(
        [sys.executable, "-c", _TZ_SCRIPT], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    naive, utc = json.loads(out.stdout)
    assert naive == utc


# ------------------------------------------------------------------ ip_prefix
def test_ipv4_prefixes_share_an_index(encoder: FeatureEncoder) -> None:
    j = _col(encoder, "ip#ip_prefix")
    cat = encoder.encode(
        [{"ip": v} for v in ["10.1.2.3", "10.1.2.200", " 10.1.2.9 ", "10.1.1.3", "10.9.9.9", "10.1.2.3/24"]]
    ).cat[:, j]
    assert cat[0] >= RESERVED
    assert cat[1] == cat[0]
    assert cat[2] == cat[0]
    assert cat[3] >= RESERVED
    assert cat[3] != cat[0]
    assert cat[4] == UNKNOWN_INDEX  # a real address in a prefix never seen
    assert cat[5] == UNKNOWN_INDEX  # a network is not an address


def test_ipv6_prefixes() -> None:
    spec = FeatureSpec(features=(FeatureDef(path="ip", kind="ip_prefix"),))
    train = [{"ip": "2001:db8:abcd:12::1"}, {"ip": "2001:db8:abcd:ff::2"}, {"ip": "10.0.0.1"}] * 2
    encoder = FeatureEncoder(spec).fit(train)
    assert encoder.category_label(spec.features[0], RESERVED) in ("10.0.0.0/24", "2001:db8:abcd::/48")
    cat = encoder.encode(
        [
            {"ip": "2001:db8:abcd:1234:5678::9"},
            {"ip": "2001:DB8:ABCD::"},
            {"ip": "2001:db8:abce::1"},
            {"ip": "::ffff:10.0.0.1"},
            {"ip": "fe80::1%eth0"},
        ]
    ).cat[:, 0]
    assert cat[0] >= RESERVED
    assert cat[1] == cat[0]
    assert cat[2] == UNKNOWN_INDEX
    assert cat[3] == encoder.encode([{"ip": "10.0.0.1"}]).cat[0, 0] >= RESERVED  # its IPv4 address
    assert cat[4] in (UNKNOWN_INDEX, cat[0])  # never raises on a scoped address


def test_ipv4_mapped_ipv6_addresses_are_their_ipv4_address() -> None:
    """``::ffff:a.b.c.d`` all fell in ``::/48``: a known internal host read as an unseen network, and an
    external address encoded exactly as an internal one."""
    spec = FeatureSpec(features=(FeatureDef(path="ip", kind="ip_prefix"),))
    encoder = FeatureEncoder(spec).fit(
        [{"ip": f"10.0.0.{i}"} for i in range(20)] + [{"ip": "::ffff:10.0.1.7"}] * 2
    )
    assert encoder.to_dict()["vocab"]["ip#ip_prefix"] == ["10.0.0.0/24", "10.0.1.0/24"]
    forms = ["10.0.0.15", "::ffff:10.0.0.15", "::FFFF:10.0.0.15", "::ffff:a00:f", "0:0:0:0:0:ffff:10.0.0.15"]
    values = [*forms, "::ffff:203.0.113.9", "203.0.113.9", "10.0.1.7"]
    cat = encoder.encode([{"ip": v} for v in values]).cat[:, 0]
    assert cat[0] >= RESERVED
    assert cat[: len(forms)].tolist() == [cat[0]] * len(forms)
    assert cat[-3] == cat[-2] == UNKNOWN_INDEX  # external, in either form: not the internal network
    assert cat[-1] >= RESERVED  # learnt from its mapped form
    assert cat[-1] != cat[0]
    label = encoder.category_label(spec.features[0], int(cat[1]))
    assert label == "10.0.0.0/24"


@pytest.mark.parametrize(
    "value",
    ["garbage", "", "999.1.2.3", "10.1.2", "10.1.2.3.4", "::g", "10.1.2.3 10.1.2.4", 167838211, 10.1, "🙂"],
    ids=repr,
)
def test_ip_garbage_is_unknown(encoder: FeatureEncoder, value: Any) -> None:
    assert encoder.encode([{"ip": value}]).cat[0, _col(encoder, "ip#ip_prefix")] == UNKNOWN_INDEX


# ------------------------------------------------------------------ port_bucket
@pytest.mark.parametrize(
    ("port", "index"),
    [
        (0, WELL_KNOWN),
        (22, WELL_KNOWN),
        (1023, WELL_KNOWN),
        ("22", WELL_KNOWN),
        (443.0, WELL_KNOWN),
        (1024, REGISTERED),
        (8080, REGISTERED),
        (49151, REGISTERED),
        (49152, EPHEMERAL),
        (50000, EPHEMERAL),
        (65535, EPHEMERAL),
        (-1, UNKNOWN_INDEX),
        (65536, UNKNOWN_INDEX),
        (70000, UNKNOWN_INDEX),
        (22.5, UNKNOWN_INDEX),
        ("x", UNKNOWN_INDEX),
        ("", UNKNOWN_INDEX),
        (math.nan, UNKNOWN_INDEX),
        ([22], UNKNOWN_INDEX),
        ("1e999", UNKNOWN_INDEX),
        (-math.inf, UNKNOWN_INDEX),
        (10**400, UNKNOWN_INDEX),
        (None, MISSING_INDEX),
    ],
    ids=repr,
)
def test_port_buckets(encoder: FeatureEncoder, port: Any, index: int) -> None:
    j = _col(encoder, "port#port_bucket")
    assert encoder.encode([{"port": port}]).cat[0, j] == index
    assert encoder.category_label(encoder.categorical_features[j], index) == (
        None if index == MISSING_INDEX else "<unknown>" if index == UNKNOWN_INDEX else PORT_BUCKETS[index - 2]
    )


def test_absent_port_is_missing(encoder: FeatureEncoder) -> None:
    assert encoder.encode([{}]).cat[0, _col(encoder, "port#port_bucket")] == MISSING_INDEX


# a number no port can be (not whole, or outside 0..65535), by numbers()' rule of what is a number:
# a numeric string is one, a float NaN is a dataframe's "missing", a bool is 0 or 1
NO_PORT = [70000, 65536, -1, 80.5, "70000", " -1 ", "80.5", "1e999", "Infinity", "NaN", math.inf, -math.inf]
NO_PORT += [1e300, 2**64, 10**400, 10**5000, OutOfRange("1e400")]
NOT_FLAGGED = [0, 65535, 443, 443.0, "443", True, False, "http", "", "0x50", math.nan, [22], {"p": 1}, None]


def test_a_port_no_port_can_be_is_marked_as_an_impossible_number_is(encoder: FeatureEncoder) -> None:
    """70000, -1 or "80.5" in a port field was only an unknown port: the event was not flagged. It
    is marked as an impossible number is (the detector flags what ``invalid`` marks), in the port's
    column after the numeric features' (the order explanations list fields in); a name ("http",
    producers write service names there) or no port is not. The encoded columns are as they were:
    a number no port can be encodes as any unknown port does."""
    values = [*NO_PORT, *NOT_FLAGGED]
    events = [{"port": value, "num": 3} for value in values]
    batch = encoder.encode(events)
    column = len(encoder.numeric_features) + _col(encoder, "port#port_bucket")
    assert batch.invalid is not None
    assert batch.invalid.shape == (
        len(values),
        len(encoder.numeric_features) + len(encoder.categorical_features),
    )
    assert batch.invalid[:, column].tolist() == [True] * len(NO_PORT) + [False] * len(NOT_FLAGGED)
    assert batch.invalid.sum() == len(NO_PORT)  # the port only, never a numeric column
    unknown = encoder.encode([{"port": "http", "num": 3}] * len(NO_PORT))
    np.testing.assert_array_equal(batch.cat[: len(NO_PORT)], unknown.cat)
    np.testing.assert_array_equal(batch.num[: len(NO_PORT)], unknown.num)
    # one at a time as in a batch, and taken apart
    for i, event in enumerate(events):
        single = encoder.encode([event]).invalid
        assert (single is not None and bool(single[0, column])) == (i < len(NO_PORT)), values[i]
    taken = batch.take(np.arange(len(NO_PORT) - 1, len(values))).invalid
    assert taken is not None
    assert taken[:, column].tolist() == [True] + [False] * len(NOT_FLAGGED)
    # beside an impossible number and an impossible time, each in its own column
    both = encoder.encode([{"port": 70000, "num": "1e999", "time": "Infinity"}, {"port": 443}])
    numeric = [f.name for f in encoder.numeric_features]
    assert both.invalid is not None
    assert np.flatnonzero(both.invalid[0]).tolist() == sorted(
        [numeric.index("num"), numeric.index("time#time_cyclic"), column]
    )
    assert not both.invalid[1].any()


def test_a_port_no_port_can_be_that_training_held_is_a_producers_no_port_not_flagged() -> None:
    """A producer that writes -1 (or "-1") for "no port" would have had every such event flagged
    as impossible, though training was full of them. What training held is kept with the fitted
    encoder (and saved with it) and read as an unknown port; other impossible numbers still flag."""
    events = _training_events()
    for i in range(0, len(events), 3):
        events[i] = {**events[i], "port": -1 if i % 2 else "-1"}
    fitted = FeatureEncoder(SPEC).fit(events)
    assert fitted.port_sentinels == {"port#port_bucket": ["-1"]}
    again = FeatureEncoder.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.port_sentinels == fitted.port_sentinels
    column = len(fitted.numeric_features) + _col(fitted, "port#port_bucket")
    for encoder in (fitted, again):
        batch = encoder.encode([{"port": v} for v in (-1, "-1", -1.0, " -1 ", 70000, -2)])
        assert batch.invalid is not None
        assert batch.invalid[:, column].tolist() == [False, False, False, False, True, True]
        assert len(set(map(tuple, batch.cat.tolist()))) == 1  # all an unknown port, as before
    assert FeatureEncoder(SPEC).fit(_training_events()).port_sentinels == {}
    # a second producer's sentinel, rarer than the first: each is kept, not the most common alone
    # (the mutation review)
    for i in range(1, len(events), 7):
        events[i] = {**events[i], "port": 99999}
    two = FeatureEncoder(SPEC).fit(events)
    assert two.port_sentinels == {"port#port_bucket": ["-1", "99999"]}
    assert two.encode([{"port": 99999}, {"port": -1}]).invalid is None
    older = fitted.to_dict()
    del older["port_sentinels"]  # a bundle made before: which of them training held is unknown
    read = FeatureEncoder.from_dict(older)
    assert read.encode([{"port": -1}, {"port": 70000}]).invalid is None  # none flags, as then
    assert "port_sentinels" not in read.to_dict()  # and so it stays, written again (refresh)


# ------------------------------------------------------------------ hashing
HASH_KEYS = ["", "a", "example.com", "ünïcödé", "日本", "😀", "\ud800", "x" * 10_000, "4001"]

_HASH_SCRIPT = """
import json, sys
from scorer.features.encoder import FeatureEncoder, stable_bucket
from scorer.features.spec import FeatureDef, FeatureSpec
keys = KEYS
spec = FeatureSpec(features=(FeatureDef(path="h", kind="hashed", buckets=97),))
encoder = FeatureEncoder(spec).fit([{"h": "seed"}])
print(json.dumps({
    "buckets": [stable_bucket(k, 1024) for k in keys],
    "encoded": encoder.encode([{"h": k} for k in keys] + [{"h": 4001}]).cat[:, 0].tolist(),
    "hash": [hash(k) for k in keys if k and "\\ud800" not in k][:3],
}))
"""


def _hash_in_subprocess(seed: str) -> dict[str, list[int]]:
    script = _HASH_SCRIPT.replace("KEYS", repr(HASH_KEYS))
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, list[int]] = json.loads(out.stdout)
    return result


def test_hashing_is_stable_across_processes() -> None:
    spec = FeatureSpec(features=(FeatureDef(path="h", kind="hashed", buckets=97),))
    encoder = FeatureEncoder(spec).fit([{"h": "seed"}])
    here = {
        "buckets": [stable_bucket(k, 1024) for k in HASH_KEYS],
        "encoded": encoder.encode([{"h": k} for k in HASH_KEYS] + [{"h": 4001}]).cat[:, 0].tolist(),
    }
    first, second = _hash_in_subprocess("123"), _hash_in_subprocess("456")
    assert first["hash"] != second["hash"]  # the salted hash() really differs between the two
    for other in (first, second):
        assert other["buckets"] == here["buckets"]
        assert other["encoded"] == here["encoded"]
    assert all(0 <= b < 1024 for b in here["buckets"])
    assert all(RESERVED <= i < 97 + RESERVED for i in here["encoded"])
    assert here["encoded"][-1] == here["encoded"][HASH_KEYS.index("4001")]  # 4001 and "4001" alike


def test_hashed_missing_and_not_scalar(encoder: FeatureEncoder) -> None:
    j = _col(encoder, "hsh")
    cat = encoder.encode([{}, {"hsh": None}, {"hsh": [1]}, {"hsh": {"a": 1}}, {"hsh": "x"}]).cat[:, j]
    assert cat.tolist()[:4] == [MISSING_INDEX, MISSING_INDEX, UNKNOWN_INDEX, UNKNOWN_INDEX]
    assert cat[4] == RESERVED + stable_bucket("x", 32)


# ------------------------------------------------------------------ real vendor events
def _vendor_events() -> list[Event]:
    path = shared_data_dir() / "ocsf_events" / "events.jsonl"
    if not path.exists():
        pytest.skip(f"real OCSF events not available at {path} (set OCSF_ANOMALY_SHARED_DATA)")
    return load_events([path], warn=False)


@pytest.fixture(scope="module")
def vendor_events() -> list[Event]:
    return _vendor_events()


@pytest.mark.parametrize("which", ["default", "inferred"])
def test_every_vendor_event_encodes(vendor_events: list[Event], which: str) -> None:
    assert len(vendor_events) > 400
    assert len({e.get("class_uid") for e in vendor_events}) >= 40
    spec = default_spec() if which == "default" else infer_spec(vendor_events)
    encoder = FeatureEncoder(spec).fit(vendor_events)
    batch = encoder.encode(vendor_events)
    _check_shape(encoder, batch, len(vendor_events))
    # event by event gives the same rows as the batch
    for i in range(0, len(vendor_events), 7):
        single = encoder.encode([vendor_events[i]])
        np.testing.assert_array_equal(single.cat[0], batch.cat[i])
        np.testing.assert_array_equal(single.num[0], batch.num[i])
    # a fresh encoder fitted on half of them encodes the other half in range too
    half = FeatureEncoder(spec).fit(vendor_events[::2])
    _check_shape(half, half.encode(vendor_events[1::2]), len(vendor_events[1::2]))


def test_a_vendor_s_clock_under_its_own_name_is_no_feature(vendor_events: list[Event]) -> None:
    """A real vendor's epoch field under a name no rule knows (its feed's last sighting, in ms):
    as a number it would put every later event past the training range."""
    excluded = dict(infer_spec(vendor_events).excluded)
    assert excluded["unmapped.lastFeedOccurence"] == "timestamp (its numbers read as epoch times)"


# ------------------------------------------------------------------ row digests
def test_row_digests(encoder: FeatureEncoder) -> None:
    base = {"traffic": {"bytes_in": 1000}, "class_uid": 4001, "dst_endpoint": {"port": 443}}
    spec = default_spec()
    enc = FeatureEncoder(spec).fit([base, {**base, "traffic": {"bytes_in": 5000}}, base])
    events = [
        base,
        json.loads(json.dumps(base)),
        {**base, "traffic": {"bytes_in": 1001}},
        {**base, "traffic": {"bytes_in": 1000, "bytes_out": 1}},
        {**base, "class_uid": 3002},
    ]
    digests = enc.encode(events).row_digests()
    assert len(digests) == len(events)
    assert all(isinstance(d, bytes) and len(d) == 16 for d in digests)
    assert digests[0] == digests[1]
    assert len(set(digests[1:])) == len(digests) - 1
    # a batch taken apart gives the same digests
    assert enc.encode(events).take(np.array([2, 0])).row_digests() == [digests[2], digests[0]]


# ------------------------------------------------------------------ persistence
def test_to_dict_from_dict_round_trip(encoder: FeatureEncoder) -> None:
    data = json.loads(json.dumps(encoder.to_dict()))
    again = FeatureEncoder.from_dict(data)
    odd: list[Any] = [
        {"cat": "zzz", "num": "abc", "ip": "::1"},
        [],
        {"port": 70000},
        {"time": "2024-02-29T12:00:00Z"},
    ]
    events = _training_events() + odd
    a, b = encoder.encode(events), again.encode(events)
    np.testing.assert_array_equal(a.cat, b.cat)
    np.testing.assert_array_equal(a.num, b.num)
    assert again.cardinalities == encoder.cardinalities
    assert again.numeric_columns == encoder.numeric_columns
    assert again.to_dict() == encoder.to_dict()


def test_unfitted_encoder_refuses_to_encode() -> None:
    with pytest.raises(EncoderError, match="not fitted"):
        FeatureEncoder(SPEC).encode([{}])
    with pytest.raises(EncoderError, match="zero events"):
        FeatureEncoder(SPEC).fit([])


def _mangled(good: dict[str, Any], label: str) -> Any:
    cases: dict[str, Any] = {
        "not a dict": [],
        "none": None,
        "no spec": {k: v for k, v in good.items() if k != "spec"},
        "no numeric": {k: v for k, v in good.items() if k != "numeric"},
        "no vocab": {k: v for k, v in good.items() if k != "vocab"},
        "scaler dropped": {**good, "numeric": {}},
        "extra scaler": {**good, "numeric": {**good["numeric"], "ghost": {"center": 0, "scale": 1}}},
        "scaler not a number": {**good, "numeric": {**good["numeric"], "num": {"center": "x", "scale": 1}}},
        "scaler without scale": {**good, "numeric": {**good["numeric"], "num": {"center": 0}}},
        "scaler not an object": {**good, "numeric": {**good["numeric"], "num": 3}},
        "vocab of ints": {**good, "vocab": {**good["vocab"], "cat": [1, 2]}},
        "vocab not a list": {**good, "vocab": {**good["vocab"], "cat": "alpha"}},
        "vocab dropped": {**good, "vocab": {"cat": good["vocab"]["cat"]}},
        "bad kind": {**good, "spec": {"feature": [{"path": "cat", "kind": "bogus"}]}},
        "no features": {**good, "spec": {"feature": []}},
        "spec of another shape": {**good, "spec": {"feature": [{"path": "other", "kind": "numeric"}]}},
    }
    return cases[label]


MANGLED = [
    "not a dict",
    "none",
    "no spec",
    "no numeric",
    "no vocab",
    "scaler dropped",
    "extra scaler",
    "scaler not a number",
    "scaler without scale",
    "scaler not an object",
    "vocab of ints",
    "vocab not a list",
    "vocab dropped",
    "bad kind",
    "no features",
    "spec of another shape",
]


@pytest.mark.parametrize("label", MANGLED)
def test_from_dict_of_mangled_data_raises_encoder_error(encoder: FeatureEncoder, label: str) -> None:
    data = _mangled(json.loads(json.dumps(encoder.to_dict())), label)
    with pytest.raises(EncoderError):
        FeatureEncoder.from_dict(data)


@pytest.mark.parametrize(("key", "value"), [("numeric", []), ("vocab", None), ("spec", "features")])
def test_from_dict_with_wrong_container_types_raises_encoder_error(
    encoder: FeatureEncoder, key: str, value: Any
) -> None:
    with pytest.raises(EncoderError):
        FeatureEncoder.from_dict({**encoder.to_dict(), key: value})


def test_encoder_state_is_json_serialisable(tmp_path: Path, encoder: FeatureEncoder) -> None:
    path = tmp_path / "features.json"
    path.write_text(json.dumps(encoder.to_dict(), allow_nan=False), encoding="utf-8")
    again = FeatureEncoder.from_dict(json.loads(path.read_text(encoding="utf-8")))
    assert again.fitted_


# ------------------------------------------------------------------ the feature space
@pytest.mark.parametrize("n", [1, 7, 300])
def test_the_feature_space_vector_is_the_numeric_columns_then_each_categoricals_code(n: int) -> None:
    wide = FeatureSpec(
        features=(
            FeatureDef(path="cat", kind="categorical"),
            FeatureDef(path="hsh", kind="hashed", buckets=200),
            FeatureDef(path="num", kind="numeric"),
            FeatureDef(path="port", kind="port_bucket"),
            FeatureDef(path="other", kind="hashed", buckets=100),
            # the widest one-hot and the narrowest code: the plan and the codes must agree at the edge
            FeatureDef(path="edge", kind="hashed", buckets=ONE_HOT_MAX - RESERVED),
            FeatureDef(path="beyond", kind="hashed", buckets=ONE_HOT_MAX - RESERVED + 1),
        )
    )
    encoder = FeatureEncoder(wide).fit(_training_events())
    cards = encoder.cardinalities
    assert cards[-2:] == [ONE_HOT_MAX, ONE_HOT_MAX + 1]
    # both kinds, interleaved
    assert [c > ONE_HOT_MAX for c in cards] == [False, True, False, True, False, True]
    rng = np.random.default_rng(n)
    batch = EncodedBatch(
        cat=np.stack([rng.integers(0, c, n) for c in cards], axis=1),
        num=rng.standard_normal((n, len(encoder.numeric_columns))).astype(np.float32),
    )
    codes = [category_codes(j, c, 0)[batch.cat[:, j]] for j, c in enumerate(cards)]
    dense = encoder.dense(batch)
    assert dense.dtype == np.float32
    assert dense.flags.c_contiguous
    assert np.array_equal(dense, np.concatenate([batch.num, *codes], axis=1))
