"""``ocsf-anomaly stream --source redis`` run as a user runs it (a subprocess), against a real
redis-server on a free port: every event scored and written, anomalies apart, what is no event to
the dead letters; SIGTERM finishes and acknowledges; SIGKILL mid-stream loses nothing; a dead
consumer's pending entries are claimed by another."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from alertmanager import SKIP_REASON, Alertmanager, available
from redis_server import RedisServer

from scorer.alerts import severity

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
Event = dict[str, Any]
STREAMS = {"input": "ocsf:in", "output": "ocsf:out", "alerts": "ocsf:alerts", "dead_letter": "ocsf:dead"}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    running = RedisServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(server.url)
    yield connection
    connection.close()


def _consumer(
    server: RedisServer, bundle: Path, log: Path, name: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "scorer.cli", "stream", "--source", "redis", "--redis-url", server.url]
    command += ["--input", STREAMS["input"], "--output", STREAMS["output"], "--alerts", STREAMS["alerts"]]
    command += ["--dead-letter", STREAMS["dead_letter"], "--group", "scorers", "--consumer", name]
    command += ["--model", str(bundle), "--batch-size", "64", *extra]
    with log.open("ab") as sink:
        return subprocess.Popen(command, stderr=sink, stdout=sink, env={**os.environ, **(env or {})})


def _produce(client: redis.Redis, events: list[Event]) -> None:
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(STREAMS["input"], {"event": json.dumps(event)})
    pipe.execute()


def _written(client: redis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in client.xrange(stream)]


def _wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _uids(entries: list[dict[bytes, bytes]]) -> list[str]:
    return [json.loads(fields[b"event"])["metadata"]["uid"] for fields in entries]


def _pending(client: redis.Redis) -> int:
    return int(client.xpending(STREAMS["input"], "scorers")["pending"])


def test_every_event_is_written_enriched_anomalies_apart_and_sigterm_acknowledges(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    events = held_out_events[:300]
    _produce(client, events[:100])
    client.xadd(STREAMS["input"], {"event": b"not json"})
    client.xadd(STREAMS["input"], {"event": b"[1, 2]"})
    client.xadd(STREAMS["input"], {"other": b"{}"})
    _produce(client, events[100:])
    log = tmp_path / "stream.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    consumer = _consumer(server, bundle_dir, log, "c1", "--metrics-port", str(metrics_port))
    try:
        _wait_for(lambda: client.xlen(STREAMS["output"]) >= len(events), "every event written")
        _wait_for(lambda: _pending(client) == 0, "every entry acknowledged")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert f"ocsf_anomaly_stream_consumed_total {len(events) + 3}.0" in metrics
        assert "ocsf_anomaly_stream_dead_lettered_total 3.0" in metrics
    finally:
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(60) == 0, log.read_text()
    written = _written(client, STREAMS["output"])
    assert _uids(written) == [e["metadata"]["uid"] for e in events]  # in order, once each
    for fields, event in zip(written, events, strict=True):
        enriched = json.loads(fields[b"event"])
        assert {k: v for k, v in enriched.items() if k != "anomaly"} == event
        assert {"score", "p_value", "is_anomaly", "reasons", "model"} <= set(enriched["anomaly"])
    flagged = [json.loads(f[b"event"]) for f in written if json.loads(f[b"event"])["anomaly"]["is_anomaly"]]
    assert [json.loads(f[b"event"]) for f in _written(client, STREAMS["alerts"])] == flagged
    dead = _written(client, STREAMS["dead_letter"])
    assert [d[b"event"] for d in dead] == [b"not json", b"[1, 2]", b""]
    assert [d[b"error"].decode() for d in dead][1] == "'event' is JSON but not an object"
    assert "stopped: every batch read was written and acknowledged" in log.read_text()


def test_a_consumer_killed_mid_stream_loses_nothing_when_it_comes_back(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    events = held_out_events[:1500]
    _produce(client, events)
    log = tmp_path / "stream.log"
    consumer = _consumer(server, bundle_dir, log, "c1")
    _wait_for(lambda: client.xlen(STREAMS["output"]) >= 64, "the first batches")
    consumer.kill()  # SIGKILL: no goodbye, whatever it held
    consumer.wait(30)
    assert client.xlen(STREAMS["output"]) < len(events), "it finished before it was killed: nothing tested"
    again = _consumer(server, bundle_dir, log, "c1")  # the same name: it re-reads its own pending first
    try:
        _wait_for(lambda: _pending(client) == 0 and client.xlen(STREAMS["output"]) >= len(events), "the rest")
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0, log.read_text()
    uids = _uids(_written(client, STREAMS["output"]))
    assert set(uids) == {e["metadata"]["uid"] for e in events}  # at least once: none missing


def test_a_dead_consumers_pending_entries_are_claimed_by_another(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    events = held_out_events[:50]
    _produce(client, events)
    client.xgroup_create(STREAMS["input"], "scorers", id="0")
    taken = client.xreadgroup(
        "scorers", "died", {STREAMS["input"]: ">"}, count=50
    )  # read, never acknowledged
    assert len(taken[0][1]) == 50
    time.sleep(1.2)
    log = tmp_path / "stream.log"
    other = _consumer(server, bundle_dir, log, "c2", "--claim-idle-seconds", "1")
    try:
        _wait_for(lambda: _pending(client) == 0 and client.xlen(STREAMS["output"]) >= len(events), "claimed")
    finally:
        other.send_signal(signal.SIGTERM)
        assert other.wait(60) == 0, log.read_text()
    assert sorted(_uids(_written(client, STREAMS["output"]))) == sorted(e["metadata"]["uid"] for e in events)


@pytest.mark.skipif(not available(), reason=SKIP_REASON)
def test_the_rarest_events_reach_alertmanager(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """With OCSF_ANOMALY_ALERTS_URL, the consumer sends what the service would: one alert per event at
    or below the alert p-value (Alertmanager holds one per label set), counted on /metrics."""
    level = 0.05  # the test model is small: its smallest p-values are a few thousandths
    events = held_out_events[:600]
    _produce(client, events)
    alertmanager = Alertmanager()
    alertmanager.start()
    log = tmp_path / "stream.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    env = {
        "OCSF_ANOMALY_ALERTS_URL": alertmanager.url,
        "OCSF_ANOMALY_ALPHA": str(level),
        "OCSF_ANOMALY_ALERTS_P_VALUE": str(level),
        "OCSF_ANOMALY_ALERTS_DEDUPE_SECONDS": "0",
    }
    consumer = _consumer(server, bundle_dir, log, "c1", "--metrics-port", str(metrics_port), env=env)
    try:
        _wait_for(lambda: client.xlen(STREAMS["output"]) >= len(events), "the events")
        _wait_for(lambda: _pending(client) == 0, "every entry acknowledged")
        written = [json.loads(fields[b"event"]) for fields in _written(client, STREAMS["output"])]
        rare = [e for e in written if e["anomaly"]["p_value"] <= level]
        expected = {
            (
                e.get("src_endpoint", {}).get("ip"),
                str(e["class_uid"]),
                severity(e["anomaly"]["p_value"], level),
            )
            for e in rare
        }
        assert len(expected) >= 3, "the test needs events at or below the alert p-value"

        def held() -> set[tuple[str | None, str, str]]:
            return {
                (a["labels"].get("entity"), a["labels"]["class_uid"], a["labels"]["severity"])
                for a in alertmanager.alerts()
            }

        _wait_for(lambda: held() == expected, "the alerts in Alertmanager", timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert f'ocsf_anomaly_alerts_total{{outcome="sent"}} {len(rare)}.0' in metrics
    finally:
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(60) == 0, log.read_text()
        alertmanager.close()
