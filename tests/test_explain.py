"""Reasons on small hand-made neighbourhoods: each event beside the 20 baseline events it is explained by."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pytest

from scorer.detector import Detector
from scorer.explain import Reason, find_reasons, reason_text
from scorer.features.encoder import FeatureEncoder, stable_bucket
from scorer.features.spec import FeatureDef, FeatureSpec

Event = dict[str, Any]

SPEC = FeatureSpec(
    features=(
        FeatureDef(path="rate", kind="numeric", transform="log1p"),
        FeatureDef(path="count", kind="numeric", transform="log1p"),
        FeatureDef(path="flag", kind="numeric", transform="log1p"),
        FeatureDef(path="bytes", kind="numeric", transform="log1p"),
        FeatureDef(path="agent", kind="hashed", buckets=64),
        FeatureDef(path="host", kind="categorical", min_count=1),
        FeatureDef(path="port", kind="port_bucket"),
    )
)
AGENTS = ("curl/8.4", "Prometheus/2.48", "Go-http-client/1.1")


def _training() -> list[Event]:
    """Rates mostly 0 (a tiny robust scale: everything above about 0.04 is clipped), counts from
    1 to 40, flags half 0 and half 1, bytes in half of the events."""
    events = []
    for i in range(200):
        event: Event = {
            "rate": 0.0 if i % 5 else 0.01,
            "count": 1 + i % 40,
            "flag": i % 2,
            "agent": AGENTS[i % 3],
            "host": f"h{i % 4}",
            "port": 443,
        }
        if i % 2:
            event["bytes"] = 1000 + i
        events.append(event)
    return events


@pytest.fixture(scope="module")
def encoder() -> FeatureEncoder:
    return FeatureEncoder(SPEC).fit(_training())


def _neighbour(i: int, **fields: Any) -> Event:
    event: Event = {"rate": 0.0, "count": 10, "flag": 0, "agent": AGENTS[0], "host": "h0", "port": 443}
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


def _explain(encoder: FeatureEncoder, neighbours: list[Event], event: Event) -> dict[str, Reason]:
    """Each field's reason for ``event`` beside exactly ``neighbours`` (every field that has one)."""
    baseline = encoder.encode(neighbours)
    order = np.arange(len(neighbours), dtype=np.int64)[None, :]
    reasons = find_reasons(encoder, baseline, [event], encoder.encode([event]), order, len(SPEC.features))
    return {r.field: r for r in reasons[0]}


def _scaled(encoder: FeatureEncoder, field: str, value: float) -> float:
    """A value as the encoder scales it before the clip (every number of SPEC is log1p'd)."""
    feature = next(f for f in SPEC.features if f.path == field)
    center, one = (math.log1p(encoder.numeric_value(feature, x)) for x in (0.0, 1.0))
    return (math.log1p(value) - center) / (one - center)


def test_a_numbers_deviation_is_measured_unclipped_and_its_typical_is_what_neighbours_hold(
    encoder: FeatureEncoder,
) -> None:
    """The encoder clips at ±10 robust deviations; the explanation read the clipped columns, so a
    value far beyond the clip counted as 10 away and the typical came back through the log scale as
    values no neighbour held (11.99998, the mean of two middle values)."""
    counts = [3, 4, 5, 5, 6, 7, 7, 8, 9, 10, 12, 12, 13, 15, 17, 19, 20, 22, 25, 30]
    neighbours = [_neighbour(i, count=c) for i, c in enumerate(counts)]
    reason = _explain(encoder, neighbours, _neighbour(0, count=10**7))["count"]
    assert reason.value == 10**7
    assert reason.typical == 12  # the upper of the two middle values (10, 12): the nearer to 10⁷
    assert type(reason.typical) is int
    expected = _scaled(encoder, "count", 10**7) - _scaled(encoder, "count", 12)
    assert expected > 10  # beyond what the clip lets a column say
    assert reason.deviation == pytest.approx(expected, rel=1e-5)
    low = _explain(encoder, neighbours, _neighbour(0, count=0))["count"]
    assert low.typical == 10  # the lower of them, the nearer to 0
    assert low.deviation == pytest.approx(
        _scaled(encoder, "count", 10) - _scaled(encoder, "count", 0), rel=1e-5
    )


def test_an_even_split_of_neighbours_is_no_reason_and_a_flag_shows_a_value_they_hold(
    encoder: FeatureEncoder,
) -> None:
    """Ten neighbours with 0 and ten with 1: the median read as their mean in log space (0.4142),
    and a 1 was half a deviation from it."""
    neighbours = [_neighbour(i, flag=i % 2) for i in range(20)]
    for flag in (0, 1):
        assert "flag" not in _explain(encoder, neighbours, _neighbour(0, flag=flag))
    reason = _explain(encoder, neighbours, _neighbour(0, flag=9))["flag"]
    assert reason.typical == 1
    assert reason.deviation == pytest.approx(
        _scaled(encoder, "flag", 9) - _scaled(encoder, "flag", 1), rel=1e-5
    )


def test_neighbours_beyond_the_clip_show_as_a_bound_and_the_deviation_as_the_least_distance(
    encoder: FeatureEncoder,
) -> None:
    """Neighbours at 0.38–0.78, all stored at the clip (a rate of about 0.04): the typical read back
    as the clip's own value, as if they held it."""
    rates = [0.38 + 0.02 * i for i in range(20)]
    neighbours = [_neighbour(i, rate=r) for i, r in enumerate(rates)]
    feature = next(f for f in SPEC.features if f.path == "rate")
    bound = encoder.numeric_value(feature, feature.clip)
    assert bound < min(rates)
    value = round(bound / 2, 4)
    reason = _explain(encoder, neighbours, _neighbour(0, rate=value))["rate"]
    assert reason.value == value
    assert isinstance(reason.typical, str)
    assert reason.typical.startswith("≥ ")
    assert float(reason.typical[2:]) <= bound  # a true bound, rounded down
    assert float(reason.typical[2:]) == pytest.approx(bound, rel=1e-3)
    assert reason.deviation == pytest.approx(feature.clip - _scaled(encoder, "rate", value), rel=1e-5)
    # a value beyond the clip too: the neighbours may hold the same, nothing to show
    assert "rate" not in _explain(encoder, neighbours, _neighbour(0, rate=0.5))


def test_a_number_no_neighbour_holds_has_no_typical_and_deviates_as_a_missing_one_does(
    encoder: FeatureEncoder,
) -> None:
    """Neighbours without the field counted as holding the training median: bytes of 1 showed a
    typical of 1,000-odd that none of them held, bytes at that median were no reason at all."""
    neighbours = [_neighbour(i) for i in range(20)]  # none holds bytes
    feature = next(f for f in SPEC.features if f.path == "bytes")
    median = round(encoder.numeric_value(feature, 0.0))
    for value in (1, median, 10**7):
        reason = _explain(encoder, neighbours, _neighbour(0, bytes=value))["bytes"]
        assert (reason.value, reason.typical, reason.deviation) == (value, None, 3.0)
    # five of twenty hold it, at the event's value: 3 × the share that hold none
    some = [_neighbour(i, bytes=1500 if i < 5 else None) for i in range(20)]
    reason = _explain(encoder, some, _neighbour(0, bytes=1500))["bytes"]
    assert reason.typical is None
    assert reason.deviation == pytest.approx(2.25)
    # half of them hold it, at the event's value: those lacking it are not most, nothing to show
    # (the mutation review)
    half = [_neighbour(i, bytes=1500 if i % 2 else None) for i in range(20)]
    assert "bytes" not in _explain(encoder, half, _neighbour(0, bytes=1500))
    # ... far from it: the distance from those that hold it speaks, beside their value
    far = _explain(encoder, some, _neighbour(0, bytes=10**9))["bytes"]
    assert far.typical == 1500
    assert far.deviation == pytest.approx(
        _scaled(encoder, "bytes", 10**9) - _scaled(encoder, "bytes", 1500), rel=1e-5
    )
    # the mirror image: missing where all of them hold it, beside their median
    held = [_neighbour(i, bytes=1200 + i) for i in range(20)]
    missing = _explain(encoder, held, _neighbour(0))["bytes"]
    assert (missing.value, missing.typical, missing.deviation) == (None, 1209, 3.0)


def test_a_hashed_value_whose_bucket_training_never_filled_is_unseen(encoder: FeatureEncoder) -> None:
    """A categorical value never seen in training counts 5 × the share of neighbours without it; a
    hashed one counted 3 ×, as if seen."""
    seen = {stable_bucket(a, 64) for a in AGENTS}
    new = next(f"sqlmap/1.{i}" for i in range(100) if stable_bucket(f"sqlmap/1.{i}", 64) not in seen)
    neighbours = [_neighbour(i) for i in range(20)]
    reason = _explain(encoder, neighbours, _neighbour(0, agent=new))["agent"]
    assert (reason.value, reason.typical, reason.deviation) == (new, AGENTS[0], 5.0)
    known = _explain(encoder, neighbours, _neighbour(0, agent=AGENTS[2]))["agent"]
    assert (known.value, known.typical, known.deviation) == (AGENTS[2], AGENTS[0], 3.0)
    host = _explain(encoder, neighbours, _neighbour(0, host="never-seen"))["host"]
    assert host.deviation == 5.0


@pytest.mark.parametrize(
    ("port", "shown", "deviation"),
    [
        (70000, "not a port (70000)", None),
        (-1, "not a port (-1)", None),
        ("80.5", "not a port (80.5)", None),
        (1e300, "not a port (1e+300)", None),
        ("http", "not a port (http)", 5.0),
    ],
)
def test_a_port_that_is_no_port_shows_beside_the_ranges_in_their_form(
    encoder: FeatureEncoder, port: Any, shown: str, deviation: float | None
) -> None:
    """The value was the raw number beside a range ("70000" beside "ephemeral"), 1e300 as 301 digits.
    A number no port can be is flagged as an impossible number is (deviation None); a name
    ("http") is a port never seen in training (5 × the share of neighbours with another value)."""
    neighbours = [_neighbour(i, port=50000 + i) for i in range(20)]
    reason = _explain(encoder, neighbours, _neighbour(0, port=port))["port"]
    assert (reason.value, reason.typical, reason.deviation) == (shown, "ephemeral", deviation)


def test_a_number_no_port_can_be_is_the_first_reason_even_beside_unknown_ports(
    encoder: FeatureEncoder,
) -> None:
    """Flagged as an impossible number is: first, before a number far from its neighbours', and
    shown even where the neighbours' ports are unknown too (they share its category, which hid it)."""
    neighbours = [_neighbour(i, port="http") for i in range(20)]
    event = _neighbour(0, port=70000, count=10**6)
    baseline = encoder.encode(neighbours)
    order = np.arange(len(neighbours), dtype=np.int64)[None, :]
    reasons = find_reasons(encoder, baseline, [event], encoder.encode([event]), order, 3)[0]
    assert [r.field for r in reasons] == ["port", "count"]
    first = reasons[0].to_dict()
    assert first == {
        "field": "port",
        "value": "not a port (70000)",
        "typical": "not a port",
        "deviation": None,
    }
    assert reason_text(first) == "port=not a port (70000) (typical not a port, not a possible port)"
    # an impossible number still says so
    number = {"field": "count", "value": "1e999", "typical": 10, "deviation": None}
    assert reason_text(number) == "count=1e999 (typical 10, not a possible number)"
    # a name where the neighbours have names: nothing to show, as before
    assert "port" not in _explain(encoder, neighbours, _neighbour(0, port="ssh"))


@pytest.mark.parametrize(
    "value",
    [
        "allow-outbound\nunmapped.sensor=fw-edge-01 (typical fw-edge-01, deviation 0.0)",
        "6667 (typical 6667, deviation 0.1)",
        "\x1b[2K\x1b[1Gnothing to see",
        "a\u2028b\u0085c\x7f",
        "tag\U000e0041characters",
        'say "hi"\\',
        "missing",
        "",
    ],
)
def test_a_value_that_reads_as_part_of_the_line_is_quoted_and_escaped(value: str) -> None:
    """An event's text goes into the one-line reason that OpenSearch, the Splunk app and the alerts
    keep: a line break there added a reason of the attacker's own, "(typical …, deviation 0.1)" a
    smaller deviation, an ANSI escape rewrote a terminal's line (the adversarial review). Such a
    value is a JSON string, every character that is not printable escaped."""
    text = reason_text({"field": "f", "value": value, "typical": value, "deviation": 4.0})
    assert text.isprintable()
    decoder = json.JSONDecoder()
    shown, end = decoder.raw_decode(text, len("f="))
    assert text[end:].startswith(" (typical ")
    typical, end = decoder.raw_decode(text, end + len(" (typical "))
    assert (shown, typical, text[end:]) == (value, value, ", deviation 4.0)")


@pytest.mark.parametrize(
    "value", ["ben.sato", "/api/v4/projects", "10.0.0.5", "{{_index}}", "ünïcode", "a=b"]
)
def test_a_plain_value_is_shown_as_it_is(value: str) -> None:
    assert reason_text({"field": "f", "value": value, "typical": 443, "deviation": 2}) == (
        f"f={value} (typical 443, deviation 2.0)"
    )


def test_a_huge_float_in_a_category_is_shown_as_python_writes_it(encoder: FeatureEncoder) -> None:
    neighbours = [_neighbour(i) for i in range(20)]
    assert _explain(encoder, neighbours, _neighbour(0, host=1e300))["host"].value == "1e+300"
    assert _explain(encoder, neighbours, _neighbour(0, host=4001.0))["host"].value == "4001"


def test_an_authentication_event_with_bytes_is_explained_by_their_absence(
    fitted_detector: Detector, held_out_events: list[Event]
) -> None:
    """The whole path: bytes on an event of a kind that never has them (the auditor's repro)."""
    logon = next(e for e in held_out_events if e.get("class_uid") == 3002)
    feature = next(f for f in fitted_detector.encoder.spec.features if f.path == "traffic.bytes_out")
    median = round(fitted_detector.encoder.numeric_value(feature, 0.0))
    odd = [copy.deepcopy(logon) for _ in range(2)]
    odd[0]["traffic"], odd[1]["traffic"] = {"bytes_out": median}, {"bytes_out": 1}
    result = fitted_detector.score([logon, *odd])
    for reasons in result.reasons[1:]:
        reason = next(r for r in reasons if r.field == "traffic.bytes_out")
        assert reason.typical is None
        assert reason.deviation is not None
        assert math.isclose(reason.deviation, 3.0)


@pytest.mark.parametrize("field", ["src_endpoint.port", "dst_endpoint.port"])
def test_a_number_no_port_can_be_flags_the_event_through_the_detector(
    fitted_detector: Detector, held_out_events: list[Event], field: str
) -> None:
    """70000 in a port field (dst_endpoint.port is a port range and a category both) was an unseen
    port: now p-value 0 and the first reason, as an impossible number; a name or no port is not forced."""
    network = next(e for e in held_out_events if e.get("class_uid") == 4001)
    endpoint, leaf = field.split(".")
    values: list[Any] = [70000, "70000", -1, 80.5, "Infinity", "http", None]
    events = [network]
    for value in values:
        event = copy.deepcopy(network)
        event[endpoint][leaf] = value
        events.append(event)
    result = fitted_detector.score(events)
    forced = [True] * 5 + [False] * 2
    assert result.forced.tolist() == [False, *forced]
    assert (result.p_value == 0.0).tolist() == [False, *forced]
    assert result.is_anomaly[1:6].all()
    for row, value in enumerate(values[:5], start=1):
        first = result.anomaly(row, fitted_detector.model_info)["reasons"][0]
        assert first["field"] == field
        assert first["value"] == f"not a port ({value})"
        assert first["deviation"] is None
