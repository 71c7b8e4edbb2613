"""infer_spec on a hand-made corpus: every rule of scorer.features.infer, one field each."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from scorer.features.encoder import FeatureEncoder
from scorer.features.infer import infer_spec, iter_leaves
from scorer.features.spec import FeatureDef, FeatureSpec, SpecError

Event = dict[str, Any]

N = 3_000
DAY_MS = 86_400_000
START_MS = 1_700_000_000_000
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def _event(i: int, *, time_span_ms: int, n: int = N) -> Event:
    event: Event = {
        "class_uid": [4001, 3002, 6003][i % 3],
        "class_name": ["Network Activity", "Authentication", "API Activity"][i % 3],
        "category_uid": 4,
        "activity_id": 1 + i % 4,
        "activity_name": ["Open", "Close", "Reset", "Fail"][i % 4],
        "severity_id": 1,
        "severity": "Informational",
        "time": START_MS + (i * time_span_ms) // n,
        "metadata": {"uid": f"evt-{i:06d}", "version": "1.5.0", "product": {"name": "P"}},
        "actor": {"user": {"name": WORDS[i % 10], "uid": f"S-1-5-21-{i % 10}"}, "session": {"uid": f"s{i}"}},
        "device": {"instance_uid": f"i-{i % 40:08x}"},
        "src_endpoint": {"ip": f"10.{i % 4}.{i % 7}.{i % 250}", "port": 40_000 + i % 20_000},
        "dst_endpoint": {"ip": f"192.168.{i % 3}.{i % 200}", "port": [22, 443, 3389, 8080][i % 4]},
        "answers": [{"rdata": "1.2.3.4"}, {"rdata": "5.6.7.8"}],
        "message": f"user {WORDS[i % 10]} opened a connection from a host that we have seen {i} times before today",
        "request_token": f"tok-{i * 7919:x}",  # nearly unique per event
        "http_request": {"user_agent": f"agent-{i % 1500}"},  # > 1000 distinct, each twice
        "is_mfa": i % 2 == 0,
        "status_code": ["200", "404"][i % 2],
        "traffic": {"bytes_in": i * 13 % 5000},
        "unmapped": {"sttl": i % 255, "risk_score": (i % 100) / 10.0, "sensor": f"sensor-{i % 3}"},
        "start_time": START_MS + i,
    }
    if i % 500 == 0:  # 6 of 3,000 events: 0.2 %
        event["rare_field"] = "present"
    return event


def _corpus(time_span_ms: int, n: int = N) -> list[Event]:
    return [_event(i, time_span_ms=time_span_ms, n=n) for i in range(n)]


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return infer_spec(_corpus(time_span_ms=10 * DAY_MS))


def _excluded(spec: FeatureSpec) -> dict[str, str]:
    return dict(spec.excluded)


def _kinds(spec: FeatureSpec, path: str) -> list[str]:
    return [f.kind for f in spec.features if f.path == path]


def _feature(spec: FeatureSpec, path: str) -> FeatureDef:
    (feature,) = [f for f in spec.features if f.path == path]
    return feature


@pytest.mark.parametrize(
    "path", ["metadata.uid", "actor.user.uid", "actor.session.uid", "device.instance_uid"]
)
def test_identifiers_are_excluded(spec: FeatureSpec, path: str) -> None:
    assert _kinds(spec, path) == []
    assert _excluded(spec)[path] == "identifier"


def test_other_metadata_is_excluded(spec: FeatureSpec) -> None:
    assert _excluded(spec)["metadata.version"] == "record metadata"
    assert _excluded(spec)["metadata.product.name"] == "record metadata"


@pytest.mark.parametrize("path", ["class_uid", "category_uid", "activity_id", "severity_id"])
def test_enum_codes_are_categorical(spec: FeatureSpec, path: str) -> None:
    assert _kinds(spec, path) == ["categorical"]
    assert path not in _excluded(spec)


@pytest.mark.parametrize(
    ("caption", "code"),
    [("activity_name", "activity_id"), ("class_name", "class_uid"), ("severity", "severity_id")],
)
def test_enum_captions_are_excluded(spec: FeatureSpec, caption: str, code: str) -> None:
    assert _kinds(spec, caption) == []
    assert _excluded(spec)[caption] == f"caption of {code}"


def test_lists_are_excluded(spec: FeatureSpec) -> None:
    assert _kinds(spec, "answers") == []
    assert _excluded(spec)["answers"] == "list"


def test_long_free_text_is_excluded(spec: FeatureSpec) -> None:
    assert _kinds(spec, "message") == []
    assert _excluded(spec)["message"] == "free text"


def test_nearly_unique_string_is_an_identifier(spec: FeatureSpec) -> None:
    assert _kinds(spec, "request_token") == []
    assert _excluded(spec)["request_token"] == "identifier (nearly unique per event)"


@pytest.mark.parametrize("path", ["src_endpoint.ip", "dst_endpoint.ip"])
def test_addresses_become_ip_prefixes(spec: FeatureSpec, path: str) -> None:
    assert _kinds(spec, path) == ["ip_prefix"]
    assert _feature(spec, path).prefix_v4 == 24


def test_service_port_becomes_bucket_and_vocabulary(spec: FeatureSpec) -> None:
    features = [f for f in spec.features if f.path == "dst_endpoint.port"]
    assert [f.kind for f in features] == ["port_bucket", "categorical"]
    assert features[1].min_count == 5
    assert features[1].max_categories == 200
    assert len({f.name for f in features}) == 2


def test_mostly_ephemeral_port_becomes_a_bucket_only(spec: FeatureSpec) -> None:
    # 3,000 distinct source ports: a vocabulary would be all noise
    assert _kinds(spec, "src_endpoint.port") == ["port_bucket"]
    assert "src_endpoint.port" not in _excluded(spec)


def test_high_cardinality_string_is_hashed(spec: FeatureSpec) -> None:
    assert _kinds(spec, "http_request.user_agent") == ["hashed"]


def test_low_cardinality_strings_are_categorical(spec: FeatureSpec) -> None:
    assert _kinds(spec, "actor.user.name") == ["categorical"]
    assert _kinds(spec, "unmapped.sensor") == ["categorical"]
    assert _kinds(spec, "status_code") == ["categorical"]


def test_booleans_are_categorical(spec: FeatureSpec) -> None:
    assert _kinds(spec, "is_mfa") == ["categorical"]


@pytest.mark.parametrize("path", ["unmapped.sttl", "unmapped.risk_score", "traffic.bytes_in"])
def test_numbers_are_numeric_with_log1p(spec: FeatureSpec, path: str) -> None:
    assert _kinds(spec, path) == ["numeric"]
    assert _feature(spec, path).transform == "log1p"


def test_time_spanning_two_days_or_more_is_cyclic(spec: FeatureSpec) -> None:
    assert _kinds(spec, "time") == ["time_cyclic"]
    assert "time" not in _excluded(spec)
    events = _corpus(time_span_ms=DAY_MS, n=300)
    events[-1]["time"] = START_MS + 2 * DAY_MS  # exactly two days
    assert _kinds(infer_spec(events), "time") == ["time_cyclic"]
    events[-1]["time"] = START_MS + 2 * DAY_MS - 1
    assert _kinds(infer_spec(events), "time") == []


def test_time_spanning_under_two_days_is_excluded() -> None:
    short = infer_spec(_corpus(time_span_ms=DAY_MS + DAY_MS // 2, n=300))
    assert _kinds(short, "time") == []
    assert _excluded(short)["time"].startswith("timestamp spanning under two days")


def test_time_in_seconds_or_iso_strings_also_counts() -> None:
    events = _corpus(time_span_ms=5 * DAY_MS, n=300)
    for e in events[::2]:
        e["time"] = e["time"] // 1000  # a producer sending seconds
    assert _kinds(infer_spec(events), "time") == ["time_cyclic"]


def test_other_timestamps_are_excluded(spec: FeatureSpec) -> None:
    assert _kinds(spec, "start_time") == []
    assert _excluded(spec)["start_time"] == "timestamp"


def test_rare_paths_are_excluded(spec: FeatureSpec) -> None:
    assert _kinds(spec, "rare_field") == []
    assert _excluded(spec)["rare_field"] == "rare (in 0.20% of events)"


def test_presence_just_above_one_percent_is_kept() -> None:
    events = _corpus(time_span_ms=5 * DAY_MS, n=900)
    for i in range(0, 900, 90):  # 10 of 900: 1.11 %
        events[i]["sometimes"] = ["x", "y"][i % 2]
    spec = infer_spec(events)
    assert _kinds(spec, "sometimes") == ["categorical"]


def test_every_path_is_a_feature_or_excluded(spec: FeatureSpec) -> None:
    leaves = {path for event in _corpus(time_span_ms=10 * DAY_MS) for path, _ in iter_leaves(event)}
    covered = {f.path for f in spec.features} | set(_excluded(spec))
    assert leaves == covered
    assert not ({f.path for f in spec.features} & set(_excluded(spec)))


def test_inferred_spec_fits_encodes_and_round_trips(spec: FeatureSpec) -> None:
    events = _corpus(time_span_ms=10 * DAY_MS)
    encoder = FeatureEncoder(spec).fit(events)
    batch = encoder.encode(events[:100])
    assert batch.cat.shape == (100, len(encoder.categorical_features))
    assert FeatureSpec.from_dict(tomllib.loads(spec.to_toml())) == spec


def test_non_dict_events_and_odd_keys_are_ignored() -> None:
    events: list[Any] = _corpus(time_span_ms=5 * DAY_MS, n=300)
    events += [None, "text", [1, 2], 5]
    events[0] = {**events[0], "a.b": 1, "": 2, 3: 4}
    spec = infer_spec(events)
    paths = {f.path for f in spec.features} | set(_excluded(spec))
    assert "a.b" not in paths
    assert "" not in paths


def test_no_usable_feature_is_an_error() -> None:
    """The error said "see the excluded paths", which were printed nowhere: it names them."""
    with pytest.raises(ValueError) as info:
        infer_spec([{"metadata": {"uid": str(i), "correlation_uid": f"c{i}"}} for i in range(10)])
    assert str(info.value).startswith(
        "no usable feature found in these events, of 2 paths: metadata.correlation_uid: "
    )
    assert "; metadata.uid: identifier" in str(info.value)
    with pytest.raises(ValueError, match="no usable feature found: none of the 0 events holds a field"):
        infer_spec([])


def test_deterministic(spec: FeatureSpec) -> None:
    assert infer_spec(_corpus(time_span_ms=10 * DAY_MS)) == spec


@pytest.mark.parametrize("n", [3_000, 5_000, 6_000, 20_000, 30_000])
def test_unique_values_read_as_unique_past_the_distinct_cap(n: int) -> None:
    """Distinct values are counted up to a cap (5,000): over all the events, their share fell as the
    events grew, and a token unique per event was an identifier at 5,000 events but hashed at 6,000,
    a short unique message free text up to 6,000 but hashed at 20,000."""
    events = [
        {
            "class_uid": 4001,
            "request_token": f"tok-{i * 7919:x}",
            "note": f"conn {i} from host {i * 7 % 9973} ok",
            "host": f"host-{i % 2500}",  # repeated: hashed, whatever the count
        }
        for i in range(n)
    ]
    spec = infer_spec(events)
    assert _excluded(spec)["request_token"] == "identifier (nearly unique per event)"
    assert _excluded(spec)["note"] == "free text"
    assert _kinds(spec, "host") == ["hashed"]


def test_numbers_written_as_strings_are_numbers() -> None:
    """ "443" for 443: ports and byte counts were left out as identifiers, the port lost its range."""

    def corpus(as_text: bool) -> list[Event]:
        out = []
        for i in range(3_000):
            sp, dp, sent = 40_000 + (i * 7919) % 20_000, [22, 443, 3389, 8080][i % 4], i * 13 % 5_000
            out.append(
                {
                    "class_uid": 4001,
                    "src_endpoint": {"port": str(sp) if as_text else sp},
                    "dst_endpoint": {"port": str(dp) if as_text else dp},
                    "traffic": {"bytes_out": f"{sent}.0" if as_text else float(sent)},
                    "status_code": ["200", "404"][i % 2],
                    "version": "1.5.0",  # no number, however numeric it looks
                    "infinite": "Infinity",  # reads as a number, but not a finite one
                }
            )
        return out

    as_numbers, as_text = infer_spec(corpus(False)), infer_spec(corpus(True))
    for path, kinds in (
        ("src_endpoint.port", ["port_bucket"]),
        ("dst_endpoint.port", ["port_bucket", "categorical"]),
        ("traffic.bytes_out", ["numeric"]),
        ("status_code", ["categorical"]),
        ("version", ["categorical"]),
        ("infinite", ["categorical"]),
    ):
        assert _kinds(as_numbers, path) == kinds, path
        assert _kinds(as_text, path) == kinds, path
    assert as_text == as_numbers


def test_numbers_that_read_as_epoch_times_are_timestamps() -> None:
    """A clock under a name no rule knows: as a number, every later event would lie past the
    training range, and flag. Left out by its values, in any of four units, as by names."""
    start_s = 1_700_000_000  # 2023-11-14
    events = []
    for i in range(1_000):
        events.append(
            {
                "class_uid": 4001,
                "traffic": {"bytes_out": (i * 7_919) % 1000 * 5_000_000},  # up to 5e9 bytes: no clock
                "unmapped": {
                    "seen_s": start_s + 60 * i,
                    "seen_ms": (start_s + 60 * i) * 1000 + i % 1000,
                    "seen_us": float(start_s + 60 * i) * 1e6,
                    "seen_ns": str((start_s + 60 * i) * 10**9),  # a number as text, as the encoder reads it
                    "feed_epoch": start_s,  # one moment, never varying: a constant, kept as numbers are
                    "sequence": (i * 2_654_435_761) % 2**32,  # 32-bit counters start near 0 too
                    "@timestamp": start_s * 1000 + i,
                    "event_ts": start_s + i,
                    # a busy sensor's seconds: each repeated four times, a quarter of them distinct
                    # (kept as a number, the next day's normal traffic was flagged for it: the review)
                    "stime": start_s + i // 4,
                    # days and moments as text (a category each: every later one unseen)
                    "day": f"2023-11-{14 + i // 100:02d}",
                    "seen_at": f"2023-11-14T{i // 60 % 24:02d}:{i % 60:02d}:00Z",
                    "release": f"1.{i % 3}.0",  # no date: a category as ever
                    # ten digits, two values, each repeated: codes in the range of epoch seconds
                    "phone": (2_025_550_143, 3_125_550_199)[i % 2],
                },
            }
        )
    spec = infer_spec(events)
    for leaf in ("seen_s", "seen_ms", "seen_us", "seen_ns", "stime"):
        assert _kinds(spec, f"unmapped.{leaf}") == [], leaf
        assert _excluded(spec)[f"unmapped.{leaf}"] == "timestamp (its numbers read as epoch times)", leaf
    for leaf in ("day", "seen_at"):
        assert _excluded(spec)[f"unmapped.{leaf}"] == "timestamp (its text reads as dates)", leaf
    assert _kinds(spec, "unmapped.release") == ["categorical"]
    assert _kinds(spec, "unmapped.phone") == ["numeric"]
    for leaf in ("@timestamp", "event_ts"):
        assert _excluded(spec)[f"unmapped.{leaf}"] == "timestamp", leaf
    assert _kinds(spec, "traffic.bytes_out") == ["numeric"]
    assert _kinds(spec, "unmapped.feed_epoch") == ["numeric"]
    assert _kinds(spec, "unmapped.sequence") == ["numeric"]


def test_an_event_nested_as_deep_as_json_reads_is_no_recursion_error() -> None:
    """orjson reads 1,024 levels; walking an event's leaves took a level of Python's recursion for
    each, and `features infer` (and `train --features auto`) ended in a RecursionError traceback on
    one such event. What lies deeper than DEEPEST_FIELD levels is left out."""
    from scorer.io import DEEPEST_FIELD

    deep: Any = 7
    for _ in range(1_000):
        deep = {"a": deep}
    assert list(iter_leaves({"n": 1, **deep})) == [("n", 1)]
    within: Any = 5
    for _ in range(DEEPEST_FIELD):
        within = {"a": within}
    assert list(iter_leaves(within)) == [("a." * (DEEPEST_FIELD - 1) + "a", 5)]


def test_a_vendors_camel_case_names_follow_the_rules_of_names() -> None:
    """EventID, StatusCode and DestinationPort were numbers to log1p (an unseen EventID 4625 left
    the score as it was); as event_id, status_code and destination_port they are codes and a port."""
    events = [
        {
            "unmapped": {
                "EventID": [4624, 4625, 4634][i % 3],
                "StatusCode": [200, 404][i % 2],
                "DestinationPort": [443, 80, 22][i % 3],
                "SessionID": f"s-{i}",
                "Bytes": i * 37,
            }
        }
        for i in range(300)
    ]
    kinds = {(f.path, f.kind) for f in infer_spec(events).features}
    assert ("unmapped.EventID", "categorical") in kinds
    assert ("unmapped.StatusCode", "categorical") in kinds
    assert ("unmapped.DestinationPort", "port_bucket") in kinds
    assert ("unmapped.Bytes", "numeric") in kinds
    assert dict(infer_spec(events).excluded)["unmapped.SessionID"] == "identifier"


def test_a_long_value_of_few_kinds_is_a_category_and_long_distinct_text_is_not() -> None:
    """A user agent (11 kinds, each over 64 characters) was left out as free text, so an sqlmap
    user agent moved no score; free text is long or spaced values that are mostly distinct."""
    agents = [f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/{v}.0" for v in range(11)]
    events = [
        {"http_request": {"user_agent": agents[i % 11]}, "message": f"login of user {i} from host {i * 7}"}
        for i in range(300)
    ]
    spec = infer_spec(events)
    assert ("http_request.user_agent", "categorical") in {(f.path, f.kind) for f in spec.features}
    assert dict(spec.excluded)["message"] == "free text"


def test_keys_no_path_can_name_and_fields_too_deep_are_listed_as_left_out() -> None:
    """A flattened event ({"traffic.bytes_out": 5}) gave a spec of its few nested fields, and the
    rest vanished from both the features and the paths left out; so did a field too deep."""
    from scorer.io import DEEPEST_FIELD

    deep: Any = 1
    for _ in range(DEEPEST_FIELD + 1):
        deep = {"d": deep}
    events = [
        {"class_uid": 4001, "traffic.bytes_out": i, "unmapped": {"a.b": "x", "n": i % 7}, "deep": deep}
        for i in range(200)
    ]
    spec = infer_spec(events)
    excluded = dict(spec.excluded)
    assert excluded['"traffic.bytes_out"'].startswith("a key holding '.'")
    assert excluded['unmapped."a.b"'].startswith("a key holding '.'")
    assert (
        excluded["deep" + ".d" * (DEEPEST_FIELD - 1) + ".*"] == f"nested deeper than {DEEPEST_FIELD} levels"
    )
    assert {f.path for f in spec.features} == {"class_uid", "unmapped.n"}


def test_a_field_as_deep_as_a_feature_may_lie_is_encoded_and_a_deeper_path_refused() -> None:
    """A field 100 keys deep was inferred a feature, and the encoder's extractor, a level of code for
    each key, passed Python's 100 levels: train ended in an IndentationError (from a SPEC.toml or a
    bundle's features.json too). A path holds at most DEEPEST_FIELD keys."""
    from scorer.io import DEEPEST_FIELD

    def nested(keys: int, leaf: Any) -> Any:
        for _ in range(keys):
            leaf = {"a": leaf}
        return leaf

    events = [{"class_uid": 4001, **nested(DEEPEST_FIELD, i % 7)} for i in range(200)]
    path = ".".join(["a"] * DEEPEST_FIELD)
    spec = infer_spec(events)
    assert path in [f.path for f in spec.features]
    encoder = FeatureEncoder(spec).fit(events)  # its extractor compiles
    assert len(encoder.encode(events[:3]).num) == 3
    with pytest.raises(
        SpecError, match=f"its path holds {DEEPEST_FIELD + 1} keys, more than the {DEEPEST_FIELD}"
    ):
        FeatureDef(path=path + ".a", kind="numeric")


@pytest.mark.parametrize("field", ["anomaly", "verdict"])
def test_the_verdict_of_a_scored_event_is_no_feature(field: str) -> None:
    """Trained on `score`'s own output (or the stream's), the model took `anomaly.score`,
    `anomaly.p_value`, `anomaly.is_anomaly` … as features: it learned the last model's verdicts, and
    events not yet scored hold none. Under whatever name the anomaly field was given."""
    events = [
        {
            "class_uid": 4001,
            "traffic": {"bytes_out": 100 + i},
            field: {
                "score": i / 10,
                "p_value": 0.5,
                "is_anomaly": i % 7 == 0,
                "threshold": 3.1,
                "alpha": 0.01,
            },
        }
        for i in range(200)
    ]
    spec = infer_spec(events)
    assert {f.path for f in spec.features} == {"class_uid", "traffic.bytes_out"}
    assert dict(spec.excluded)[f"{field}.score"] == "a verdict of ocsf-anomaly (a scored event's)"
