"""Feature specs: validation errors that name the feature, TOML round trips, loading and the default spec."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from scorer.features.spec import KINDS, FeatureDef, FeatureSpec, SpecError, default_spec, load_spec


def _spec_dict(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"feature": list(entries)}


OK_ENTRY = {"path": "traffic.bytes_in", "kind": "numeric"}


# ------------------------------------------------------------------ FeatureDef validation
def test_unknown_kind_names_the_feature() -> None:
    with pytest.raises(SpecError, match=r"unknown kind 'nope'") as info:
        FeatureDef(path="traffic.bytes_in", kind="nope", name="bytes")  # type: ignore[arg-type]
    assert "'bytes'" in str(info.value)
    for kind in KINDS:  # the message lists the valid kinds
        assert kind in str(info.value)


def test_unknown_kind_without_name_names_the_path() -> None:
    with pytest.raises(SpecError, match=r"traffic\.bytes_in"):
        FeatureDef(path="traffic.bytes_in", kind="float")  # type: ignore[arg-type]


@pytest.mark.parametrize("transform", ["log", "sqrt", "", "LOG1P"])
def test_bad_transform_names_the_feature(transform: str) -> None:
    with pytest.raises(SpecError, match=r"transform must be 'none' or 'log1p'") as info:
        FeatureDef(path="duration", kind="numeric", transform=transform)  # type: ignore[arg-type]
    assert "'duration'" in str(info.value)


@pytest.mark.parametrize("path", ["", ".", "a..b", ".a", "a."])
def test_empty_path_or_empty_segment_names_the_feature(path: str) -> None:
    with pytest.raises(SpecError, match=r"is not a dotted path") as info:
        FeatureDef(path=path, kind="numeric", name="my_feature")
    assert "'my_feature'" in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"clip": 0.0},
        {"clip": -1.0},
        {"min_count": 0},
        {"max_categories": 0},
        {"buckets": 0},
        {"prefix_v4": 33},
        {"prefix_v4": -1},
        {"prefix_v6": 129},
    ],
)
def test_out_of_range_options_name_the_feature(changes: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as info:
        FeatureDef(path="src_endpoint.ip", kind="ip_prefix", **changes)
    assert "'src_endpoint.ip#ip_prefix'" in str(info.value)


def test_default_names() -> None:
    assert FeatureDef(path="a.b", kind="numeric").name == "a.b"
    assert FeatureDef(path="a.b", kind="categorical").name == "a.b"
    assert FeatureDef(path="a.b", kind="hashed").name == "a.b"
    assert FeatureDef(path="a.b", kind="port_bucket").name == "a.b#port_bucket"
    assert FeatureDef(path="a.b", kind="ip_prefix").name == "a.b#ip_prefix"
    assert FeatureDef(path="time", kind="time_cyclic").name == "time#time_cyclic"
    assert FeatureDef(path="a.b", kind="numeric", name="custom").name == "custom"


# ------------------------------------------------------------------ FeatureSpec validation
def test_duplicate_names_are_named() -> None:
    with pytest.raises(SpecError, match=r"duplicate feature names: duration"):
        FeatureSpec(
            features=(
                FeatureDef(path="duration", kind="numeric"),
                FeatureDef(path="duration", kind="numeric", transform="log1p"),
            )
        )


def test_duplicate_explicit_names_are_named() -> None:
    with pytest.raises(SpecError, match=r"port"):
        FeatureSpec(
            features=(
                FeatureDef(path="src_endpoint.port", kind="categorical", name="port"),
                FeatureDef(path="dst_endpoint.port", kind="categorical", name="port"),
            )
        )


def test_same_path_with_different_kinds_is_fine() -> None:
    spec = FeatureSpec(
        features=(
            FeatureDef(path="dst_endpoint.port", kind="port_bucket"),
            FeatureDef(path="dst_endpoint.port", kind="categorical"),
        )
    )
    assert [f.name for f in spec.features] == ["dst_endpoint.port#port_bucket", "dst_endpoint.port"]


def test_empty_spec_is_an_error() -> None:
    with pytest.raises(SpecError, match=r"at least one feature"):
        FeatureSpec(features=())


def test_unknown_keys_are_named_with_the_feature_and_source() -> None:
    data = _spec_dict(OK_ENTRY, {"path": "dst_endpoint.hostname", "kind": "hashed", "bukets": 64, "zzz": 1})
    with pytest.raises(SpecError) as info:
        FeatureSpec.from_dict(data, source="my-spec.toml")
    message = str(info.value)
    assert "my-spec.toml" in message
    assert "feature #2" in message  # TOML entries are named by position
    assert "bukets" in message
    assert "zzz" in message


@pytest.mark.parametrize("entry", [{"kind": "numeric"}, {"path": "duration"}, {}])
def test_missing_path_or_kind_is_named(entry: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match=r"my-spec\.toml: feature #2 needs both 'path' and 'kind'"):
        FeatureSpec.from_dict(_spec_dict(OK_ENTRY, entry), source="my-spec.toml")


def test_feature_entry_that_is_not_a_table() -> None:
    with pytest.raises(SpecError, match=r"feature #2 is not a table"):
        FeatureSpec.from_dict({"feature": [OK_ENTRY, "duration"]}, source="s.toml")


@pytest.mark.parametrize("data", [{}, {"feature": {"path": "a", "kind": "numeric"}}, {"feature": "a"}])
def test_feature_must_be_a_list_of_tables(data: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match=r"^s\.toml: expected a list of \[\[feature\]\] tables"):
        FeatureSpec.from_dict(data, source="s.toml")


def test_wrong_value_type_becomes_spec_error_naming_the_feature() -> None:
    data = _spec_dict({"path": "duration", "kind": "numeric", "clip": "ten"})
    with pytest.raises(SpecError, match=r"s\.toml: feature #1"):
        FeatureSpec.from_dict(data, source="s.toml")


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("buckets", 2.5, "buckets must be a whole number, not 2.5"),
        ("buckets", True, "buckets must be a whole number, not True"),
        ("buckets", 10**12, "at most 1,048,576 buckets, not 1,000,000,000,000"),
        ("min_count", "2", "min_count must be a whole number, not '2'"),
        ("prefix_v4", 24.0, "prefix_v4 must be a whole number, not 24.0"),
        ("clip", "ten", "clip must be a number, not 'ten'"),
        ("name", 7, "name must be a string, not 7"),
    ],
)
def test_an_option_of_the_wrong_type_or_size_is_named_with_its_file(
    option: str, value: Any, said: str
) -> None:
    """A fractional or enormous bucket count reached torch's embedding table as a traceback."""
    data = _spec_dict({"path": "query.hostname", "kind": "hashed", option: value})
    with pytest.raises(SpecError) as info:
        FeatureSpec.from_dict(data, source="s.toml")
    assert str(info.value).startswith("s.toml: feature #1: feature ")
    assert str(info.value).endswith(said)


def test_invalid_kind_from_dict_names_the_feature() -> None:
    data = _spec_dict(OK_ENTRY, {"path": "query.hostname", "kind": "hash"})
    with pytest.raises(SpecError, match=r"query\.hostname"):
        FeatureSpec.from_dict(data)


def test_nan_clip_is_rejected() -> None:
    with pytest.raises(SpecError):
        FeatureDef(path="duration", kind="numeric", clip=math.nan)


# ------------------------------------------------------------------ TOML round trip
def _rich_spec() -> FeatureSpec:
    return FeatureSpec(
        features=(
            FeatureDef(path="time", kind="time_cyclic"),
            FeatureDef(path="class_uid", kind="categorical", min_count=1, max_categories=50),
            FeatureDef(path="traffic.bytes_in", kind="numeric", transform="log1p", clip=5.5),
            FeatureDef(path="unmapped.sttl", kind="numeric", name="ttl"),
            FeatureDef(path="query.hostname", kind="hashed", buckets=64),
            FeatureDef(path="src_endpoint.ip", kind="ip_prefix", prefix_v4=16, prefix_v6=64),
            FeatureDef(path="dst_endpoint.port", kind="port_bucket"),
            FeatureDef(path="dst_endpoint.port", kind="categorical", min_count=5, max_categories=200),
            FeatureDef(path='unmapped.we"ird\\key', kind="categorical", name="wéird ✓ 😀"),
        ),
        excluded=(
            ("metadata.uid", "identifier"),
            ("message", "free text"),
            ("unmapped.x", 'quote " and backslash \\ and tab\tand ünïcode 😀'),
        ),
    )


def _round_trip(spec: FeatureSpec) -> FeatureSpec:
    return FeatureSpec.from_dict(tomllib.loads(spec.to_toml()), source="round-trip")


def test_toml_round_trip_with_options_and_excluded() -> None:
    spec = _rich_spec()
    again = _round_trip(spec)
    assert again == spec
    assert again.excluded == spec.excluded
    assert [f.name for f in again.features] == [f.name for f in spec.features]


def test_toml_round_trip_of_the_default_spec() -> None:
    spec = default_spec()
    assert _round_trip(spec) == spec


def test_toml_round_trip_of_an_inferred_spec() -> None:
    from scorer.demo import generate_events
    from scorer.features.infer import infer_spec

    events, _ = generate_events(600, seed=5)
    spec = infer_spec(events)
    assert spec.excluded  # metadata.uid at least
    assert _round_trip(spec) == spec


def test_to_dict_lists_only_non_default_options() -> None:
    feature = FeatureDef(path="query.hostname", kind="hashed", buckets=64)
    assert feature.to_dict() == {"path": "query.hostname", "kind": "hashed", "buckets": 64}
    assert FeatureDef(path="a", kind="numeric").to_dict() == {"path": "a", "kind": "numeric"}


@pytest.mark.parametrize("text", ["line\nbreak", "bell\x07", "carriage\rreturn"])
def test_toml_round_trip_with_control_characters(text: str) -> None:
    spec = FeatureSpec(
        features=(FeatureDef(path=f"unmapped.{text}", kind="categorical"),),
        excluded=((f"unmapped.{text}x", text),),
    )
    assert _round_trip(spec) == spec


# ------------------------------------------------------------------ load_spec
def test_load_spec_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(_rich_spec().to_toml(), encoding="utf-8")
    assert load_spec(path) == _rich_spec()
    assert load_spec(str(path)) == _rich_spec()


def test_load_spec_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "missing-spec.toml"
    with pytest.raises(SpecError, match=r"not found") as info:
        load_spec(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "[[feature]\npath = 'a'\n",
        "[[feature]]\npath = a.b\nkind = 'numeric'\n",
        "[[feature]]\npath = 'a'\npath = 'b'\nkind = 'numeric'\n",
        'path = "unterminated\n',
    ],
)
def test_load_spec_invalid_toml_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken-spec.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match=r"not valid TOML") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_load_spec_structural_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "typo-spec.toml"
    path.write_text(
        '[[feature]]\npath = "duration"\nkind = "numeric"\ntransfrom = "log1p"\n', encoding="utf-8"
    )
    with pytest.raises(SpecError, match=r"transfrom") as info:
        load_spec(path)
    assert str(path) in str(info.value)
    assert "feature #1" in str(info.value)


def test_load_spec_non_utf8_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1-spec.toml"
    path.write_bytes('[[feature]]\npath = "caf\u00e9"\nkind = "categorical"\n'.encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_load_spec_on_a_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_load_spec_excluded_without_reason(tmp_path: Path) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(
        '[[feature]]\npath = "a"\nkind = "numeric"\n\n[[excluded]]\npath = "b"\n', encoding="utf-8"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------ default spec
EXPECTED_DEFAULT = [
    ("class_uid", "categorical"),
    ("activity_id", "categorical"),
    ("severity_id", "categorical"),
    ("status_id", "categorical"),
    ("src_endpoint.ip", "ip_prefix"),
    ("dst_endpoint.port", "port_bucket"),
    ("traffic.bytes_in", "numeric"),
    ("time", "time_cyclic"),
    ("api.operation", "categorical"),
    ("cloud.region", "categorical"),
    ("http_request.http_method", "categorical"),
    ("query.hostname", "hashed"),
]


def test_default_spec_loads_with_the_common_fields() -> None:
    spec = default_spec()
    pairs = {(f.path, f.kind) for f in spec.features}
    for expected in EXPECTED_DEFAULT:
        assert expected in pairs, expected
    by_name = {f.name: f for f in spec.features}
    assert by_name["traffic.bytes_in"].transform == "log1p"
    assert by_name["time#time_cyclic"].kind == "time_cyclic"
    assert by_name["src_endpoint.ip#ip_prefix"].prefix_v4 == 24
    assert by_name["dst_endpoint.port#port_bucket"].kind == "port_bucket"
    assert len(by_name) == len(spec.features)  # names are unique
    assert spec.excluded == ()


def test_default_spec_is_a_fresh_equal_object_each_time() -> None:
    first, second = default_spec(), default_spec()
    assert first == second
    assert first is not second  # a caller that changes its spec changes no one else's


def test_a_spec_or_settings_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Windows Notepad saves UTF-8 with a byte order mark: the spec a user edited (as the README has
    them do) was refused, "not valid TOML: Invalid statement (at line 1, column 1)"."""
    from scorer.settings import Settings

    spec = tmp_path / "spec.toml"
    spec.write_text("\ufeff" + default_spec().to_toml(), encoding="utf-8")
    assert load_spec(spec).features == default_spec().features
    config = tmp_path / "settings.toml"
    config.write_text("\ufeffalpha = 0.05\n", encoding="utf-8")
    assert Settings.load(config).alpha == 0.05
