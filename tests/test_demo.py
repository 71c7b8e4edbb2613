"""The seeded demo-data generator: determinism, labels, OCSF shape and the demo files."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from scorer.demo import (
    ANOMALY_KINDS,
    CLASS_UIDS,
    MAX_NEW_HIRES,
    NORMAL,
    DemoFiles,
    generate_events,
    generate_later,
    write_demo_files,
)

Event = dict[str, Any]

BASE_FIELDS = (
    "class_uid",
    "class_name",
    "category_uid",
    "category_name",
    "activity_id",
    "activity_name",
    "type_uid",
    "severity_id",
    "time",
    "metadata",
)


def _get(event: Event, dotted: str) -> Any:
    value: Any = event
    for part in dotted.split("."):
        assert isinstance(value, dict), f"{dotted}: {part} is not in an object"
        value = value.get(part)
    return value


def _utc(event: Event) -> dt.datetime:
    return dt.datetime.fromtimestamp(event["time"] / 1000, tz=dt.UTC)


def _read_jsonl(path: Path) -> list[Event]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def sample() -> tuple[list[Event], list[str]]:
    return generate_events(5_000, seed=11, anomaly_rate=0.05)


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return write_demo_files(tmp_path_factory.mktemp("demo") / "nested" / "out", n_train=3_000, n_demo=1_000)


def test_same_seed_same_events_other_seed_other_events() -> None:
    first = generate_events(1_500, seed=3, anomaly_rate=0.03)
    second = generate_events(1_500, seed=3, anomaly_rate=0.03)
    other = generate_events(1_500, seed=4, anomaly_rate=0.03)
    assert orjson.dumps(first) == orjson.dumps(second)
    assert first[1] == second[1]
    assert orjson.dumps(first[0]) != orjson.dumps(other[0])
    assert [e["time"] for e in first[0]] != [e["time"] for e in other[0]]


@pytest.mark.parametrize(
    ("n", "rate"), [(1_000, 0.02), (999, 0.015), (10, 0.05), (7, 0.0), (0, 0.5), (20, 1.0)]
)
def test_label_count_matches_anomaly_rate(n: int, rate: float) -> None:
    events, labels = generate_events(n, seed=5, anomaly_rate=rate)
    assert len(events) == len(labels) == n
    assert sum(label != NORMAL for label in labels) == round(n * rate)
    assert set(labels) <= {NORMAL, *ANOMALY_KINDS}


def test_every_anomaly_kind_is_injected_and_positions_are_spread(
    sample: tuple[list[Event], list[str]],
) -> None:
    _, labels = sample
    counts = Counter(labels)
    assert counts[NORMAL] == 5_000 - 250
    assert {kind: counts[kind] for kind in ANOMALY_KINDS} == {
        kind: pytest.approx(250 / len(ANOMALY_KINDS), abs=1) for kind in ANOMALY_KINDS
    }
    positions = [i for i, label in enumerate(labels) if label != NORMAL]
    assert positions[0] < 1_000
    assert positions[-1] > 4_000


def test_all_classes_present_with_their_fields(sample: tuple[list[Event], list[str]]) -> None:
    events, labels = sample
    by_class: dict[int, list[Event]] = {}
    for event, label in zip(events, labels, strict=True):
        if label == NORMAL:
            by_class.setdefault(event["class_uid"], []).append(event)
    assert set(by_class) == set(CLASS_UIDS)
    assert all(len(group) >= 150 for group in by_class.values())
    required = {
        3002: ("user.name", "actor.user.name", "src_endpoint.ip", "dst_endpoint.hostname", "status_id",
               "auth_protocol", "is_mfa", "unmapped.sensor", "unmapped.risk_score"),
        4001: ("src_endpoint.ip", "src_endpoint.port", "dst_endpoint.ip", "dst_endpoint.port",
               "connection_info.protocol_name", "traffic.bytes_in", "traffic.bytes_out", "traffic.packets_in",
               "traffic.packets_out", "duration", "unmapped.risk_score"),
        4002: ("http_request.http_method", "http_request.url.path", "http_request.url.hostname",
               "http_request.user_agent", "http_response.code", "src_endpoint.ip"),
        4003: ("query.hostname", "query.type", "rcode_id", "src_endpoint.ip"),
        1007: ("actor.process.name", "process.name", "process.cmd_line", "actor.user.name", "device.hostname",
               "unmapped.sensor"),
        6003: ("api.operation", "api.service.name", "cloud.region", "actor.user.name", "src_endpoint.ip",
               "status_id"),
    }  # fmt: skip
    for class_uid, fields in required.items():
        for event in by_class[class_uid]:
            for field in fields:
                assert _get(event, field) is not None, (class_uid, field, event)
    assert {e["status_id"] for e in by_class[3002]} == {1, 2}
    assert {e["activity_id"] for e in by_class[3002]} >= {1}
    assert all(isinstance(e["unmapped"]["risk_score"], float) for e in by_class[4001])
    # Structure a model can learn: a few dozen users, home IPs in 10.1.x.x, one usual region.
    users = Counter(
        e["actor"]["user"]["name"] for e in by_class[1007] if e["actor"]["user"]["name"] != "SYSTEM"
    )
    assert 40 <= len(users) <= 60
    assert all(e["src_endpoint"]["ip"].startswith(("10.1.", "10.0.0.")) for e in by_class[3002])
    regions = Counter(e["cloud"]["region"] for e in by_class[6003])
    assert regions.most_common(1)[0][0] == "eu-west-1"


def test_base_fields_and_unique_uids(sample: tuple[list[Event], list[str]]) -> None:
    events, _ = sample
    for event in events:
        for field in BASE_FIELDS:
            assert field in event, (field, event)
        assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
        assert isinstance(event["time"], int)
        assert event["metadata"]["version"] == "1.5.0"
        assert event["metadata"]["product"]["name"]
        assert event["metadata"]["product"]["vendor_name"]
    uids = [e["metadata"]["uid"] for e in events]
    assert len(set(uids)) == len(uids)
    assert uids[0] == "demo-11-0"


def test_times_strictly_increase_with_a_working_day_rhythm(sample: tuple[list[Event], list[str]]) -> None:
    events, labels = sample
    times = [e["time"] for e in events]
    assert times[0] >= 1_700_000_000_000
    assert all(a < b for a, b in itertools.pairwise(times))
    normal = [_utc(e) for e, label in zip(events, labels, strict=True) if label == NORMAL]
    office = sum(1 for t in normal if t.weekday() < 5 and 8 <= t.hour < 18)
    assert office / len(normal) > 0.7
    weekend = sum(1 for t in normal if t.weekday() >= 5)
    assert weekend / len(normal) < 0.1


def test_start_time_is_respected() -> None:
    start = 1_710_000_000_000
    events, _ = generate_events(300, seed=1, anomaly_rate=0.1, start_time_ms=start)
    assert events[0]["time"] >= start


def test_anomalies_are_what_their_label_says(sample: tuple[list[Event], list[str]]) -> None:
    _assert_labels_hold(*sample)


def _assert_labels_hold(events: list[Event], labels: list[str]) -> None:
    """Each anomaly is off-distribution the way its kind says, against the normal events beside it."""
    normal = [e for e, label in zip(events, labels, strict=True) if label == NORMAL]
    normal_regions = {e["cloud"]["region"] for e in normal if e["class_uid"] == 6003}
    normal_ports = {e["dst_endpoint"]["port"] for e in normal if e["class_uid"] == 4001}
    normal_web_out = sorted(
        e["traffic"]["bytes_out"]
        for e in normal
        if e["class_uid"] == 4001 and e["dst_endpoint"]["port"] == 443
    )
    for event, label in zip(events, labels, strict=True):
        when = _utc(event)
        if label == "brute_force":
            assert event["class_uid"] == 3002
            assert event["status_id"] == 2
            assert not event["src_endpoint"]["ip"].startswith("10.")
        elif label == "impossible_region":
            assert event["class_uid"] == 6003
            assert event["cloud"]["region"] not in normal_regions
        elif label == "exfiltration":
            assert event["class_uid"] == 4001
            assert event["dst_endpoint"]["port"] == 443
            assert event["traffic"]["bytes_out"] >= 100 * normal_web_out[len(normal_web_out) // 2]
            assert 1 <= when.hour < 5
        elif label == "rare_port":
            assert event["class_uid"] == 4001
            assert event["dst_endpoint"]["port"] in {4444, 31337, 1337, 6667} - normal_ports
        elif label == "odd_process":
            assert event["class_uid"] == 1007
            assert event["device"]["hostname"].startswith("ws-")
        elif label == "dns_tunnel":
            assert event["class_uid"] == 4003
            assert event["query"]["type"] == "TXT"
            assert len(event["query"]["hostname"].split(".")[0]) >= 40
        elif label == "off_hours_admin":
            assert event["class_uid"] == 3002
            assert event["status_id"] == 1
            assert when.weekday() == 6
            assert when.hour == 3
    # the brute force comes in bursts: failures for one user from one IP
    bursts = Counter(
        (e["user"]["name"], e["src_endpoint"]["ip"])
        for e, label in zip(events, labels, strict=True)
        if label == "brute_force"
    )
    assert max(bursts.values()) >= 3


def _people(events: list[Event]) -> tuple[set[str], set[str], set[str]]:
    """User names, home IPs (10.1.x.x) and workstations that appear in ``events``."""
    names = {e["actor"]["user"]["name"] for e in events if "user" in e.get("actor", {})}
    ips = {
        e["src_endpoint"]["ip"] for e in events if e.get("src_endpoint", {}).get("ip", "").startswith("10.1.")
    }
    hosts = {e["device"]["hostname"] for e in events if e["class_uid"] == 1007}
    return names, ips, hosts


def test_new_hires_shift_the_traffic_and_leave_the_default_alone() -> None:
    # The default output is pinned: the shift option (and any later change) must not move it.
    default = generate_events(500, seed=3, anomaly_rate=0.05)
    assert hashlib.sha256(orjson.dumps(default)).hexdigest() == (
        "806237cfc908fcf090612186a76e50cbae74efd8c75925345b94a4eb72fc6f11"
    )
    assert orjson.dumps(generate_events(500, seed=3, anomaly_rate=0.05, new_hires=0)) == orjson.dumps(default)

    staff, _ = generate_events(5_000, seed=3)  # the company without the hires
    events, labels = generate_events(3_000, seed=3, anomaly_rate=0.05, new_hires=6)
    again = generate_events(3_000, seed=3, anomaly_rate=0.05, new_hires=6)
    assert orjson.dumps(again) == orjson.dumps((events, labels))
    assert sum(label != NORMAL for label in labels) == 150
    _assert_labels_hold(events, labels)

    normal = [e for e, label in zip(events, labels, strict=True) if label == NORMAL]
    old_names, old_ips, old_hosts = _people(staff)
    now_names, now_ips, now_hosts = _people(normal)
    names, ips, hosts = now_names - old_names, now_ips - old_ips, now_hosts - old_hosts
    assert len(names) == len(ips) == len(hosts) == 6  # six new people, each with an IP and a workstation
    assert all(host.startswith("ws-") for host in hosts)
    # the staff are still there, and the first hires of six are the hires of three
    assert len(now_names & old_names) >= 45
    fewer = _people(generate_events(3_000, seed=3, anomaly_rate=0.05, new_hires=3)[0])[0] - old_names
    assert len(fewer) == 3
    assert fewer < names


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="anomaly_rate"):
        generate_events(10, seed=1, anomaly_rate=1.5)
    with pytest.raises(ValueError, match="n must be"):
        generate_events(-1, seed=1)
    with pytest.raises(ValueError, match="seed"):
        generate_events(10, seed=-2)
    with pytest.raises(ValueError, match="new_hires"):
        generate_events(10, seed=1, new_hires=-1)
    with pytest.raises(ValueError, match="new_hires"):
        generate_events(10, seed=1, new_hires=MAX_NEW_HIRES + 1)


def test_write_demo_files(demo_files: DemoFiles) -> None:
    assert demo_files.train.name == "train.jsonl"
    assert demo_files.demo.name == "demo.jsonl"
    assert demo_files.labels.name == "demo.labels.csv"
    for path in (demo_files.train, demo_files.demo, demo_files.labels):
        assert path.is_file()
        assert path.read_bytes().endswith(b"\n")

    train = _read_jsonl(demo_files.train)
    demo = _read_jsonl(demo_files.demo)
    assert len(train) == 3_000
    assert len(demo) == 1_000

    lines = demo_files.labels.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "line,label,attack"
    rows = list(csv.DictReader(lines))
    assert len(rows) == len(demo)
    assert [int(r["line"]) for r in rows] == list(range(1, len(demo) + 1))
    assert all((r["label"] == "0") == (r["attack"] == NORMAL) for r in rows)
    assert {r["attack"] for r in rows} <= {NORMAL, *ANOMALY_KINDS}
    assert sum(r["label"] == "1" for r in rows) == round(1_000 * 0.02)

    # the demo file is new events after the training period, uids unique across both files
    assert demo[0]["time"] > train[-1]["time"]
    assert all(a["time"] < b["time"] for a, b in itertools.pairwise(demo))
    uids = [e["metadata"]["uid"] for e in train + demo]
    assert len(set(uids)) == len(uids)
    train_keys = {orjson.dumps({k: v for k, v in e.items() if k not in ("time", "metadata")}) for e in train}
    assert sum(orjson.dumps({k: v for k, v in e.items() if k not in ("time", "metadata")}) in train_keys
               for e in demo) < 100  # fmt: skip


def test_train_file_is_the_anomaly_free_stream(demo_files: DemoFiles) -> None:
    train = _read_jsonl(demo_files.train)
    events, labels = generate_events(3_000, seed=7)
    assert set(labels) == {NORMAL}
    assert train == events
    # no event of the training file looks like an injected anomaly
    assert not any(
        e["class_uid"] == 6003 and e["api"]["operation"] in ("DeleteTrail", "StopLogging") for e in train
    )
    assert not any(e["class_uid"] == 4001 and e["dst_endpoint"]["port"] in (4444, 31337) for e in train)
    assert not any(e["class_uid"] == 1007 and "mimikatz" in e["process"]["cmd_line"] for e in train)
    assert not any(e["class_uid"] == 4003 and len(e["query"]["hostname"]) > 60 for e in train)
    assert not any(e["class_uid"] == 3002 and not e["src_endpoint"]["ip"].startswith("10.") for e in train)


def test_demo_files_are_byte_identical_for_a_seed(tmp_path: Path, demo_files: DemoFiles) -> None:
    again = write_demo_files(tmp_path, n_train=3_000, n_demo=1_000)
    for first, second in zip(
        (demo_files.train, demo_files.demo, demo_files.labels),
        (again.train, again.demo, again.labels),
        strict=True,
    ):
        assert first.read_bytes() == second.read_bytes()
    other = write_demo_files(tmp_path / "other", seed=8, n_train=3_000, n_demo=1_000)
    assert other.demo.read_bytes() != demo_files.demo.read_bytes()


def test_generate_later_continues_the_earlier_period_with_its_new_hires() -> None:
    earlier, _ = generate_events(600, seed=4)
    later, labels = generate_later(earlier, 300, seed=4, anomaly_rate=0.1, new_hires=5)
    assert len(later) == len(labels) == 300
    assert later[0]["time"] > earlier[-1]["time"]  # right after, in order
    assert [e["metadata"]["uid"] for e in later[:2]] == ["demo-4-600", "demo-4-601"]  # uids go on
    assert sum(label != NORMAL for label in labels) == 30
    without, _ = generate_later(earlier, 300, seed=4, anomaly_rate=0.1)
    staff = _user_names(earlier)
    assert _user_names(later) - staff  # the new hires act in the later period
    assert not _user_names(without) - staff


def _user_names(events: list[Event]) -> set[str]:
    names = set()
    for event in events:
        for holder in (event.get("actor"), event):
            user = holder.get("user") if isinstance(holder, dict) else None
            if isinstance(user, dict) and isinstance(user.get("name"), str):
                names.add(user["name"])
    return names
