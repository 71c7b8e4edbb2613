"""``ocsf-anomaly stream --source redis`` run as a user runs it (a subprocess), against a real
redis-server on a free port: every event scored and written, anomalies apart, what is no event to
the dead letters; SIGTERM finishes and acknowledges; SIGKILL mid-stream loses nothing; a dead
consumer's pending entries are claimed by another."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
from certificates import make_certificate
from loopback import free_port
from redis_server import RedisServer
from waiting import eventually, eventually_async

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
    server: RedisServer,
    bundle: Path,
    log: Path,
    name: str,
    *extra: str,
    env: dict[str, str] | None = None,
    url_flag: bool = True,
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "scorer.cli", "stream", "--source", "redis"]
    command += ["--redis-url", server.url] if url_flag else []
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


def _blocked_reading(client: redis.Redis) -> bool:
    """Whether a client (the consumer) waits in a blocking XREADGROUP now."""
    return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in client.client_list())


def _freeze(process: subprocess.Popen[bytes]) -> None:
    """SIGSTOP: wait until ``process`` is stopped, so that from then on it does nothing at all
    (whatever a busy host lets the test see in time), until SIGCONT or SIGKILL."""
    process.send_signal(signal.SIGSTOP)

    def stopped() -> bool:
        stat = Path(f"/proc/{process.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "T"  # the state, after the command's name

    _wait_for(stopped, "the consumer to stop (SIGSTOP)")


def _metric(port: int, sample: str) -> str | None:
    """The value of one sample line of the consumer's /metrics, as written (None when absent)."""
    for line in _metrics(port).splitlines():
        if line.startswith(sample + " "):
            return line.rsplit(" ", 1)[1]
    return None


def test_every_event_is_written_enriched_anomalies_apart_and_sigterm_acknowledges(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    events = held_out_events[:300]
    _produce(client, events[:100])
    bad = [
        client.xadd(STREAMS["input"], {"event": b"not json"}),
        client.xadd(STREAMS["input"], {"event": b"[1, 2]"}),
        client.xadd(STREAMS["input"], {"other": b"{}"}),
    ]
    # a producer's UTF-8 byte order mark (RFC 8259 lets a reader ignore it; files are read so): it
    # was a dead letter, "BOM is not supported" (the consistency review)
    client.xadd(STREAMS["input"], {"event": b"\xef\xbb\xbf" + json.dumps(events[100]).encode()})
    _produce(client, events[101:])
    log = tmp_path / "stream.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    consumer = _consumer(server, bundle_dir, log, "c1", "--metrics-port", str(metrics_port))
    try:
        _wait_for(lambda: client.xlen(STREAMS["output"]) >= len(events), "every event written")
        _wait_for(lambda: _pending(client) == 0, "every entry acknowledged")
        # counted once the acknowledgement's answer is read: Redis may have it a moment before that
        _wait_for(
            lambda: _metric(metrics_port, "ocsf_anomaly_stream_consumed_total") == f"{len(events) + 3}.0",
            "every entry counted as consumed",
        )
        assert _metric(metrics_port, "ocsf_anomaly_stream_dead_lettered_total") == "3.0"
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
    # each names the entry it came from, as the README says (the mutation review)
    assert [set(d) for d in dead] == [{b"event", b"error", b"source_id"}] * 3
    assert [d[b"source_id"] for d in dead] == bad
    assert "stopped: every batch read was written and acknowledged" in log.read_text()
    # it left its group holding nothing: one consumer more for each run stayed listed for good
    assert client.xinfo_consumers(STREAMS["input"], "scorers") == []


def test_a_consumer_killed_mid_stream_loses_nothing_when_it_comes_back(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    events = held_out_events[:1500]
    _produce(client, events[:300])
    log = tmp_path / "stream.log"
    consumer = _consumer(server, bundle_dir, log, "c1")
    _wait_for(lambda: client.xlen(STREAMS["output"]) >= 64, "the first batches")
    # Stopped mid-stream, then the rest produced: it cannot have finished before it is killed,
    # however long a busy host kept the test from seeing its first batches.
    _freeze(consumer)
    _produce(client, events[300:])
    consumer.kill()  # SIGKILL: no goodbye, whatever it held
    consumer.wait(30)
    assert client.xlen(STREAMS["output"]) < len(events), "it finished before it was killed: nothing tested"
    again = _consumer(server, bundle_dir, log, "c1")  # the same name: it re-reads its own pending first
    expected = {e["metadata"]["uid"] for e in events}

    def through() -> bool:  # what the first wrote and did not acknowledge is written twice: count uids
        return _pending(client) == 0 and set(_uids(_written(client, STREAMS["output"]))) >= expected

    try:
        _wait_for(through, "the rest")
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0, log.read_text()
    uids = _uids(_written(client, STREAMS["output"]))
    assert set(uids) == expected  # at least once: none missing


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


def test_entries_trimmed_away_while_held_are_acknowledged_not_held_for_ever(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """A consumer that died holding entries that were trimmed before it came back read them back
    without fields, skipped them, and never acknowledged them: they stayed pending for good."""
    _produce(client, held_out_events[:50])
    client.xgroup_create(STREAMS["input"], "scorers", id="0")
    assert len(client.xreadgroup("scorers", "c1", {STREAMS["input"]: ">"}, count=50)[0][1]) == 50  # then died
    client.xtrim(STREAMS["input"], maxlen=0)  # a producer's MAXLEN, or an operator, removed them
    later = held_out_events[50:60]
    _produce(client, later)
    log = tmp_path / "stream.log"
    again = _consumer(server, bundle_dir, log, "c1", "--batch-size", "16")
    try:
        _wait_for(
            lambda: _pending(client) == 0 and client.xlen(STREAMS["output"]) >= len(later), "acknowledged"
        )
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0, log.read_text()
    assert sorted(_uids(_written(client, STREAMS["output"]))) == sorted(e["metadata"]["uid"] for e in later)


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

        # every alert sent (Alertmanager holds one per label set, so that alone does not say all of
        # them were), and counted once its answer was read
        sent = 'ocsf_anomaly_alerts_total{outcome="sent"}'
        _wait_for(
            lambda: _metric(metrics_port, sent) == f"{len(rare)}.0" and held() == expected,
            "the alerts sent to Alertmanager",
        )
    finally:
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(60) == 0, log.read_text()
        alertmanager.close()


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def test_redis_restarting_mid_stream_loses_nothing_and_the_consumer_carries_on(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """Redis stops (SIGTERM: it writes its data out) while the consumer works through a backlog;
    the consumer keeps trying, and once Redis is back every event is written and acknowledged."""
    server = RedisServer(data_dir=tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    client = redis.Redis.from_url(server.url)
    before, after = held_out_events[:2000], held_out_events[2000:2200]
    _produce(client, before[:300])
    log = tmp_path / "stream.log"
    metrics_port = free_port()
    consumer = _consumer(server, bundle_dir, log, "c1", "--metrics-port", str(metrics_port))
    try:
        _wait_for(lambda: client.xlen(STREAMS["output"]) >= 64, "the first batches")
        # Stopped while the backlog grows, so that Redis goes away before it is through, however
        # long a busy host kept the test from seeing its first batches; on again once Redis is down.
        _freeze(consumer)
        _produce(client, before[300:])
        server.stop(graceful=True)
        consumer.send_signal(signal.SIGCONT)
        _wait_for(lambda: log.read_text().count("trying again in") >= 2, "the consumer to try again")
        assert consumer.poll() is None, log.read_text()
        server.start()  # the same port and data
        client = redis.Redis.from_url(server.url)
        assert client.xlen(STREAMS["output"]) < len(before), (
            "it finished before Redis stopped: nothing tested"
        )
        _produce(client, after)
        events = before + after
        _wait_for(lambda: client.xlen(STREAMS["output"]) >= len(events) and _pending(client) == 0, "the rest")
        retries = [
            line
            for line in _metrics(metrics_port).splitlines()
            if line.startswith("ocsf_anomaly_stream_retries_total")
        ]
        assert sum(float(line.split()[-1]) for line in retries) >= 2, retries
        written = set(_uids(_written(client, STREAMS["output"])))
    finally:
        consumer.send_signal(signal.SIGTERM)
        code = consumer.wait(60)
        server.stop()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert "stopped: every batch read was written and acknowledged" in text
    assert written == {e["metadata"]["uid"] for e in events}


def test_a_stop_while_redis_is_away_ends_promptly_and_gives_nothing_up(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    _produce(client, held_out_events[:50])
    log = tmp_path / "stream.log"
    consumer = _consumer(server, bundle_dir, log, "c1")
    _wait_for(lambda: client.xlen(STREAMS["output"]) >= 50 and _pending(client) == 0, "the events")
    server.stop()
    _wait_for(lambda: "trying again in" in log.read_text(), "the consumer to try again")
    consumer.send_signal(signal.SIGTERM)
    code = consumer.wait(
        60
    )  # that a stop cuts the pause short: test_a_stop_cuts_the_pause_between_attempts_short
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert "stopped" in text.splitlines()[-1]


def test_a_stop_cuts_the_pause_between_attempts_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, in process, where the pause can be made long: with five minutes between attempts,
    a stop during the pause ends the wait at once and gives the batch in hand up unacknowledged (a
    consumer that slept the pause out would miss the one-minute bound by four)."""
    import redis.asyncio

    from scorer.stream import loop
    from scorer.stream.redis_streams import RedisStreams

    monkeypatch.setattr(loop, "RETRY_FIRST_SECONDS", 300.0)
    server = RedisServer()
    server.start()

    async def scenario() -> None:
        streams = RedisStreams(
            redis.asyncio.from_url(server.url), **STREAMS, group="scorers", consumer="c1", block_ms=100
        )
        await streams.start()
        server.stop()
        stop, metrics = asyncio.Event(), loop.StreamMetrics()
        patience = loop._Patience(streams, stop, metrics)
        reading = asyncio.ensure_future(patience.until_done("read", lambda: streams.read(10), holding=True))
        retries = {"operation": "read"}
        await eventually_async(
            lambda: metrics.registry.get_sample_value("ocsf_anomaly_stream_retries_total", retries),
            "a failed read, and the pause before the next",
        )
        stop.set()
        with pytest.raises(loop.Interrupted) as interrupted:
            await asyncio.wait_for(reading, 60)
        assert interrupted.value.holding
        patience.close()
        await streams.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_a_stop_while_the_write_waits_on_redis_leaves_the_batch_unacknowledged_and_says_so(
    server: RedisServer,
    client: redis.Redis,
    bundle_dir: Path,
    held_out_events: list[Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis freezes between a batch's read and its write, and the stop comes while the write
    waits: `consume` answers that a batch went unacknowledged (the CLI's last line, "stopped while
    … was out of reach", is said from that answer), and the batch stays pending, to be read again.
    An answer of True here would have the consumer say every batch read was written and
    acknowledged (the second mutation review's one untested survivor)."""
    import threading

    from scorer.stream import loop

    _produce(client, held_out_events[:5])
    monkeypatch.setattr(loop, "STOP_GRACE_SECONDS", 1.0)
    frozen = threading.Event()
    score_batch = loop.score_batch
    assert server.process is not None
    redis_process = server.process

    def scored_then_redis_frozen(*args: Any, **kwargs: Any) -> Any:
        output = score_batch(*args, **kwargs)  # in the scoring thread, after the batch was read
        _freeze(redis_process)
        frozen.set()
        return output

    monkeypatch.setattr(loop, "score_batch", scored_then_redis_frozen)

    async def scenario() -> bool:
        streams, stop, _, consuming = await _consuming(server, bundle_dir)
        await eventually_async(frozen.is_set, "the batch read and Redis frozen")
        stop.set()  # the write of the batch in hand waits on the frozen Redis
        acknowledged = await asyncio.wait_for(consuming, 60)
        redis_process.send_signal(signal.SIGCONT)
        with contextlib.suppress(Exception):
            await streams.close()
        return acknowledged

    try:
        acknowledged = asyncio.run(scenario())
    finally:
        redis_process.send_signal(signal.SIGCONT)
    assert acknowledged is False
    assert _pending(client) == 5  # read, never acknowledged: read again by whoever comes next


def _refused(
    url: str | None, bundle: Path, *flags: str, env: dict[str, str] | None = None
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """``stream --source redis`` expected to end by itself with exit status 2: its one error line
    (``url`` None: no --redis-url)."""
    command = [sys.executable, "-m", "scorer.cli", "stream", "--source", "redis"]
    command += [] if url is None else ["--redis-url", url]
    command += ["--input", STREAMS["input"], "--output", STREAMS["output"], "--alerts", STREAMS["alerts"]]
    command += ["--dead-letter", STREAMS["dead_letter"], "--group", "g", "--model", str(bundle), *flags]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(error) == 1, done.stderr
    return error[0], done


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://scorer:S3CRET@127.0.0.1:{port}/0", "redis://***@127.0.0.1:{port}/0"),
        # redis-py sends a password given in the query as AUTH too: it was shown in clear
        ("redis://127.0.0.1:{port}/0?password=S3CRET", "redis://127.0.0.1:{port}/0?…"),
    ],
)
def test_an_unreachable_redis_at_start_is_one_line_with_the_password_masked(
    url: str, shown: str, bundle_dir: Path
) -> None:
    port = free_port()
    error, done = _refused(url.format(port=port), bundle_dir)
    assert "S3CRET" not in done.stderr + done.stdout
    assert f"could not start on Redis at {shown.format(port=port)}:" in error
    assert error.endswith("(is Redis running there, and is --redis-url right?)")


def test_the_url_and_its_password_may_come_from_the_environment_not_the_command_line(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """--redis-url was the only way to name the Redis, so its password sat in the process's arguments,
    which `ps` shows every user of the host (the security review). OCSF_ANOMALY_STREAM_REDIS_URL (or
    stream_redis_url in --config) is the default now; the cache's Redis URL is not (an LRU cache's
    eviction would drop what a stream holds)."""
    client.acl_setuser("scorer", enabled=True, passwords=["+S3CRET"], commands=["+@all"], keys=["*"])
    url = f"redis://scorer:S3CRET@127.0.0.1:{server.port}/0"
    events = held_out_events[:20]
    _produce(client, events)
    log = tmp_path / "stream.log"
    consumer = _consumer(
        server, bundle_dir, log, "c1", env={"OCSF_ANOMALY_STREAM_REDIS_URL": url}, url_flag=False
    )
    try:
        _wait_for(
            lambda: client.xlen(STREAMS["output"]) == len(events) and _pending(client) == 0, "the events"
        )
        assert "S3CRET" not in Path(f"/proc/{consumer.pid}/cmdline").read_text()
    finally:
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(60) == 0, log.read_text()
    assert "S3CRET" not in log.read_text()
    assert _uids(_written(client, STREAMS["output"])) == [e["metadata"]["uid"] for e in events]
    # a wrong one: the advice names where it came from
    error, _ = _refused(
        None, bundle_dir, env={"OCSF_ANOMALY_STREAM_REDIS_URL": url.replace("S3CRET", "wrong")}
    )
    assert error.endswith(
        "(check the user and password in OCSF_ANOMALY_STREAM_REDIS_URL or --config, and what that user may do (ACL))"
    )
    # none anywhere (the cache's Redis is no stream's): one line, before the model loads
    cache = {"OCSF_ANOMALY_REDIS_URL": url, "REDIS_URL": url}
    error, done = _refused(None, bundle_dir, env=cache)
    assert error.endswith(
        "--source redis needs --redis-url, e.g. redis://127.0.0.1:6379/0 (or "
        "OCSF_ANOMALY_STREAM_REDIS_URL, or stream_redis_url in --config)"
    )
    assert "loading" not in done.stderr


def test_a_batch_the_engine_fails_on_is_scored_one_by_one_and_the_error_log_quotes_no_event(
    bundle_dir: Path,
    held_out_events: list[Event],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine never raises on an event's content; if it does all the same (a bug: here injected,
    failing as a parser's ValueError does, quoting the event), only the event at fault is a dead
    letter, and the ERROR line says where, not what (it was log.exception: the event's text at ERROR;
    the security review)."""
    from scorer.detector import Detector
    from scorer.service.models import Loaded, ModelRef
    from scorer.stream.loop import Entry, score_batch

    detector = Detector.load(bundle_dir)
    real = detector.prepare

    def failing(events: list[Event], **kwargs: Any) -> Any:  # the fault injected
        for event in events:
            if "marker" in event:
                raise ValueError(f"cannot read {event!r}")
        return real(events, **kwargs)

    monkeypatch.setattr(detector, "prepare", failing)
    events = [dict(e) for e in held_out_events[:5]]
    events[2]["marker"] = "SECRET-PAYLOAD"
    entries = [Entry(i, json.dumps(e).encode(), e) for i, e in enumerate(events)]
    loaded = Loaded(ModelRef("m", "1", "b", str(bundle_dir)), detector)
    caplog.set_level(logging.DEBUG, logger="ocsf_anomaly")
    output = score_batch(loaded, entries, 0.01, "anomaly", lambda entry, body: None)
    assert [entry.id for entry, _ in output.dead] == [2]
    assert [entry.id for entry, _ in output.enriched] == [0, 1, 3, 4]
    shown = logging.Formatter().format  # as a handler writes it: the message, and a traceback if any
    errors = [shown(r) for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "SECRET-PAYLOAD" not in errors[0]
    assert errors[0].startswith(
        "a batch of 5 events failed to score: scoring them one by one (its message at DEBUG): ValueError"
    )
    assert "in failing" in errors[0]
    debug = [shown(r) for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("SECRET-PAYLOAD" in text for text in debug)


def test_events_of_another_kind_are_said_once_in_the_consumer_s_log(
    bundle_dir: Path, held_out_events: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    """A stream of another kind of events altogether (none holds a field of the model) is each
    flagged: the service says so in its log, and the consumer said nothing (the last notes' list).
    Said once, not once a batch, and with no event's content."""
    from scorer.detector import Detector
    from scorer.service.models import Loaded, ModelRef
    from scorer.stream.loop import Entry, score_batch

    loaded = Loaded(ModelRef("m", "1", "b", str(bundle_dir)), Detector.load(bundle_dir))
    caplog.set_level(logging.WARNING, logger="ocsf_anomaly")
    ours = [Entry(i, json.dumps(e).encode(), e) for i, e in enumerate(held_out_events[:20])]
    score_batch(loaded, ours, 0.01, "anomaly", lambda entry, body: None)
    assert "held none of" not in caplog.text
    foreign = [{"user": f"u{i}", "msg": "SECRET-PAYLOAD", "bytes": i} for i in range(19)]
    batch = [Entry(i, json.dumps(e).encode(), e) for i, e in enumerate([*foreign, held_out_events[0]])]
    for _ in range(2):
        output = score_batch(loaded, batch, 0.01, "anomaly", lambda entry, body: None)
        assert len(output.alerts) >= 19
    said = [r.getMessage() for r in caplog.records if "held none of" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith("19 of 20 events in a batch held none of the m model's "), said
    assert "SECRET-PAYLOAD" not in caplog.text


def test_a_failing_check_for_events_of_another_kind_fails_no_batch(
    bundle_dir: Path, held_out_events: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    """The check is a log line: had it raised inside the scoring's try (its first place), a batch
    scored whole was said to have failed and was scored again event by event (the review of it); it
    now catches its own failure, for the service's batches too."""
    from scorer.detector import Detector
    from scorer.service.models import Loaded, ModelRef
    from scorer.stream.loop import Entry, score_batch

    loaded = Loaded(ModelRef("m", "1", "b", str(bundle_dir)), Detector.load(bundle_dir))

    def broken(*args: Any) -> None:
        raise RuntimeError("injected")

    loaded.foreign._say = broken  # type: ignore[method-assign]  # the check's own work
    caplog.set_level(logging.INFO, logger="ocsf_anomaly")
    events = [*held_out_events[:4], {"user": "u1", "msg": "of another kind"}]  # one the check looks at
    entries = [Entry(i, json.dumps(e).encode(), e) for i, e in enumerate(events)]
    output = score_batch(loaded, entries, 0.01, "anomaly", lambda entry, body: None)
    assert [entry.id for entry, _ in output.enriched] == [0, 1, 2, 3, 4]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith("the check for events of another kind failed"), errors


def test_a_metrics_port_in_use_is_one_line_naming_the_flag(bundle_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error, _ = _refused(f"redis://127.0.0.1:{free_port()}/0", bundle_dir, "--metrics-port", str(port))
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1: Address already in use" in error


def test_a_wrong_password_or_an_input_key_of_another_type_at_start_says_what_to_check(
    server: RedisServer, client: redis.Redis, bundle_dir: Path
) -> None:
    client.acl_setuser("scorer", enabled=True, passwords=["+right"], commands=["+@all"], keys=["*"])
    error, _ = _refused(f"redis://scorer:wrong@127.0.0.1:{server.port}/0", bundle_dir)
    assert "AuthenticationError" in error
    assert error.endswith("(check the user and password in --redis-url, and what that user may do (ACL))")
    client.set(STREAMS["input"], "not a stream")
    error, _ = _refused(server.url, bundle_dir)
    assert "WRONGTYPE" in error
    assert error.endswith(
        f"(the key '{STREAMS['input']}' holds no stream: name another --input, or delete it)"
    )


@pytest.mark.parametrize(
    ("url", "flags", "says"),
    [
        # redis-py itself takes a database that is no number for database 0
        (
            "redis://127.0.0.1:1/abc",
            [],
            "--redis-url: redis://127.0.0.1:1/abc: the database 'abc' is not a number",
        ),
        ("http://127.0.0.1:1/0", [], "--redis-url: http://127.0.0.1:1/0: Redis URL must specify one of"),
        # read back as it is written: 3 events made 10,821 entries in 15 s
        ("redis://127.0.0.1:1/0", ["--output", STREAMS["input"]], "--input and --output both name 'ocsf:in'"),
        ("redis://127.0.0.1:1/0", ["--dead-letter", STREAMS["input"]], "--input and --dead-letter both name"),
        ("redis://127.0.0.1:1/0", ["--sasl-username", "u"], "--sasl-username: not for --source redis"),
        # they change the shape of Redis's answers: every event went to the dead letters, emptied
        (
            "redis://127.0.0.1:1/0?decode_responses=true",
            [],
            "redis://127.0.0.1:1/0?…: remove decode_responses from the URL",
        ),
        ("redis://127.0.0.1:1/0?protocol=3", [], "redis://127.0.0.1:1/0?…: remove protocol from the URL"),
        # numbers Redis refuses were refused by Redis, after the model loaded and the stream started
        ("redis://127.0.0.1:1/0", ["--max-len", "99999999999999999999"], "more than Redis can count"),
        ("redis://127.0.0.1:1/0", ["--claim-idle-seconds", "1e17"], "more seconds than Redis can count"),
        ("redis://127.0.0.1:1/0", ["--batch-size", "100001"], "'100001' is more than 100,000 entries"),
    ],
)
def test_what_cannot_work_is_refused_before_the_model_loads(
    url: str, flags: list[str], says: str, bundle_dir: Path
) -> None:
    error, done = _refused(url, bundle_dir, *flags)
    assert says in error
    assert "loading" not in done.stderr


def test_alpha_given_as_a_flag_still_holds_alerts_to_at_most_it(bundle_dir: Path) -> None:
    """alerts_p_value ≤ alpha, with --alpha as the alpha: else every event between them alerted."""
    env = {
        "OCSF_ANOMALY_ALPHA": "0.2",
        "OCSF_ANOMALY_ALERTS_P_VALUE": "0.2",
        "OCSF_ANOMALY_ALERTS_URL": "http://127.0.0.1:9",
    }
    error, done = _refused(f"redis://127.0.0.1:{free_port()}/0", bundle_dir, "--alpha", "0.001", env=env)
    assert "alerts_p_value (0.2) must be at most alpha (0.001)" in error
    assert "loading" not in done.stderr


def test_entries_whose_answer_was_lost_are_read_again_first_after_an_outage(tmp_path: Path) -> None:
    """XREADGROUP counts entries as the consumer's as it answers; when the answer is lost with the
    connection, the consumer's next read after the outage starts with its own pending entries
    (else they would wait --claim-idle-seconds for a claim)."""
    import redis.asyncio

    from scorer.stream.redis_streams import RedisStreams

    (tmp_path / "redis").mkdir()
    server = RedisServer(data_dir=tmp_path / "redis")
    server.start()
    sync = redis.Redis.from_url(server.url)
    _produce(sync, [{"metadata": {"uid": str(i)}} for i in range(30)])

    async def scenario() -> list[str]:
        streams = RedisStreams(
            redis.asyncio.from_url(server.url), **STREAMS, group="scorers", consumer="c1", block_ms=100
        )
        await streams.start()
        first = await streams.read(10)  # its own pending (none), then the first ten new entries
        await streams.commit(first)
        # ten more are delivered to c1 while its connection breaks: they are pending, unseen
        lost = sync.xreadgroup("scorers", "c1", {STREAMS["input"]: ">"}, count=10)[0][1]
        server.stop(graceful=True)
        with pytest.raises(redis.exceptions.ConnectionError):
            await streams.read(10)
        assert streams.transient(redis.exceptions.ConnectionError())
        server.start()
        again = await streams.read(10)
        await streams.close()
        assert len(first) == len(lost) == 10
        return [entry.event["metadata"]["uid"] for entry in again if entry.event]

    try:
        # the first read took 0–9; the lost ten are 10–19; new entries would be 20–29
        assert asyncio.run(scenario()) == [str(i) for i in range(10, 20)]
    finally:
        server.stop()


def test_idle_entries_behind_many_live_ones_are_claimed(server: RedisServer, client: redis.Redis) -> None:
    """XAUTOCLAIM scans at most 10 × count pending entries a call and says where to go on: a dead
    consumer's entries behind 100 live ones (other consumers' batches in hand) were never
    claimed by a consumer reading 5 at a time, as every claim began again at 0-0."""
    import redis.asyncio

    from scorer.stream.redis_streams import RedisStreams

    _produce(client, [{"metadata": {"uid": str(i)}} for i in range(110)])
    client.xgroup_create(STREAMS["input"], "scorers", id="0")
    ids = [entry_id for entry_id, _ in client.xreadgroup("scorers", "died", {STREAMS["input"]: ">"})[0][1]]
    time.sleep(0.3)  # all 110 idle past the claim time; the first 100 are then taken by a live consumer

    def busy() -> None:  # it holds them, touched as it works on them
        client.xclaim(STREAMS["input"], "scorers", "busy", 0, ids[:100], justid=True)

    async def scenario() -> list[str]:
        streams = RedisStreams(
            redis.asyncio.from_url(server.url),
            **STREAMS,
            group="scorers",
            consumer="c1",
            claim_idle_seconds=0.2,
            block_ms=100,
        )
        await streams.start()
        claimed: list[str] = []
        deadline = time.monotonic() + 30
        while len(claimed) < 10 and time.monotonic() < deadline:
            busy()
            entries = await streams.read(5)  # claims once a second at most
            if entries:
                await streams.commit(entries)
            claimed += [entry.event["metadata"]["uid"] for entry in entries if entry.event]
        await streams.close()
        return claimed

    busy()
    assert asyncio.run(scenario()) == [str(i) for i in range(100, 110)]


def test_a_redis_that_comes_back_empty_gets_the_group_again_and_the_stream_goes_on(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """A Redis without persistence restarts with nothing: the stream and the consumer group are
    made again, and what producers write from then on is scored, what they wrote before the
    consumer came back too (the group was made again at the stream's end: those were lost)."""
    _produce(client, held_out_events[:20])
    log = tmp_path / "stream.log"
    consumer = _consumer(server, bundle_dir, log, "c1")
    try:
        _wait_for(lambda: client.xlen(STREAMS["output"]) >= 20 and _pending(client) == 0, "the first events")
        server.stop()
        server.start()  # the same port, no data
        later = held_out_events[20:40]
        _produce(client, later)  # while the consumer waits to try Redis again
        _wait_for(lambda: client.xlen(STREAMS["output"]) >= 20, "the later events")
        assert set(_uids(_written(client, STREAMS["output"]))) == {e["metadata"]["uid"] for e in later}
    finally:
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_a_rediss_url_streams_over_tls_and_a_ca_that_did_not_sign_is_refused(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """Redis with TLS only (redis-server --tls-port): `rediss://…?ssl_ca_certs=CA` verifies it."""
    cert, key = make_certificate(tmp_path, "redis")
    server = RedisServer(tls=(cert, key))
    server.start()
    client = redis.Redis.from_url(server.url)
    try:
        events = held_out_events[:30]
        _produce(client, events)
        log = tmp_path / "stream.log"
        consumer = _consumer(server, bundle_dir, log, "c1")
        try:
            _wait_for(
                lambda: client.xlen(STREAMS["output"]) >= len(events) and _pending(client) == 0, "the events"
            )
        finally:
            consumer.send_signal(signal.SIGTERM)
            assert consumer.wait(60) == 0, log.read_text()
        stranger, _ = make_certificate(tmp_path, "stranger")
        command = [sys.executable, "-m", "scorer.cli", "stream", "--source", "redis", "--redis-url"]
        command += [server.url.replace(str(cert), str(stranger)), "--input", "a", "--output", "b"]
        command += ["--alerts", "c", "--dead-letter", "d", "--group", "g", "--model", str(bundle_dir)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        client.close()
        server.stop()
    assert done.returncode == 2
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_refusal_that_waiting_cannot_mend_is_one_line_and_acknowledges_nothing(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """The output key holds a string, not a stream: XADD answers WRONGTYPE. The consumer stops
    with one line naming the write and the key's error, and the entries stay pending for later."""
    client.set(STREAMS["output"], "not a stream")
    _produce(client, held_out_events[:20])
    log = tmp_path / "stream.log"
    consumer = _consumer(server, bundle_dir, log, "c1")
    assert consumer.wait(120) == 2
    text = log.read_text()
    assert "Traceback" not in text
    error = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(error) == 1, text
    assert error[0].startswith(
        f"error: could not write on Redis at {server.url}: ResponseError: XADD: WRONGTYPE"
    )
    assert "metadata" not in text  # redis-py quotes the command, an event among its arguments
    assert error[0].endswith("the batch in hand was not acknowledged and will be read again")
    assert _pending(client) == 20


@pytest.mark.parametrize(("alpha", "warned"), [(0.001, True), (0.01, False)])
def test_a_model_that_cannot_flag_at_the_consumer_s_alpha_is_said(
    bundle_dir: Path, caplog: pytest.LogCaptureFixture, alpha: float, warned: bool
) -> None:
    """The consumer's model, like the service's: 600 calibration events flag nothing at α = 0.001."""
    import logging

    from scorer.service.models import DirectorySource
    from scorer.stream.loop import Models

    caplog.set_level(logging.WARNING)
    asyncio.run(Models(DirectorySource(bundle_dir, None), 0, alpha).current())
    said = [r.getMessage() for r in caplog.records]
    assert any("nothing can be flagged at α = 0.001" in m for m in said) == warned, said


def test_a_model_source_failing_at_each_poll_is_one_line_each_time_and_scoring_goes_on(
    bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bundle broken after the consumer loaded it: each poll says so in one warning line (it
    printed a full traceback every poll), and the model loaded before keeps scoring."""
    import logging

    from scorer.service.models import DirectorySource
    from scorer.stream.loop import Models

    served = tmp_path / "bundle"
    shutil.copytree(bundle_dir, served)
    models = Models(DirectorySource(served, None), 0.001, 0.01)

    def said() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "could not ask for the champion again" in r.getMessage()]

    async def polls() -> list[Any]:
        loaded = [await models.current()]
        (served / "metadata.json").write_text("{not json")
        deadline = time.monotonic() + 60
        while len(said()) < 2 and time.monotonic() < deadline:  # each poll asks in the background
            await asyncio.sleep(0.01)
            loaded.append(await models.current())
        return loaded

    caplog.set_level(logging.WARNING)
    first, *later = asyncio.run(polls())
    assert all(model is first for model in later)
    assert len(said()) >= 2, caplog.text
    assert all(r.exc_info is None and "metadata.json" in r.getMessage() for r in said()), caplog.text


def test_a_model_source_that_does_not_answer_holds_no_batch(bundle_dir: Path) -> None:
    """A registry that takes its connections and never answers (overloaded, a network cut without a
    reset) held every batch, and a stop, for as long as the poll waited: MLflow's client waits 120 s
    a try and tries again. Here the bundle directory's source is made to wait (the registry's part
    in this test; the consumer's own Models is what is tested): the poll asks in the background and
    the model loaded before scores on."""
    import threading

    from scorer.service.models import DirectorySource
    from scorer.stream.loop import Models

    answer = threading.Event()

    class Silent(DirectorySource):
        def resolve(self) -> Any:
            if started.is_set():
                answer.wait(60)
            return super().resolve()

    started = threading.Event()
    models = Models(Silent(bundle_dir, None), 0.001, 0.01)

    async def polls() -> None:
        first = await models.current()
        started.set()
        for _ in range(5):
            await asyncio.sleep(0.01)
            assert await asyncio.wait_for(models.current(), 30) is first

    try:
        asyncio.run(polls())
    finally:
        answer.set()


@pytest.mark.parametrize(
    ("setting", "refusing", "said"),
    [
        ("maxmemory", "1", "OutOfMemoryError"),  # below what Redis uses already: every XADD refused
        # a replica lost (in a failover, say): writes refused until it is back. It exited 2
        ("min-replicas-to-write", "1", "NOREPLICAS"),
    ],
)
def test_redis_refusing_writes_for_now_is_waited_out_and_nothing_is_lost(
    setting: str,
    refusing: str,
    said: str,
    server: RedisServer,
    client: redis.Redis,
    bundle_dir: Path,
    held_out_events: list[Event],
    tmp_path: Path,
) -> None:
    """Redis at `maxmemory` with `noeviction` refuses the writes (OOM) until memory is freed: that
    is "for now", so the consumer holds the batch and tries again. It exited 2: redis-py cuts "OOM"
    from the message (OutOfMemoryError) and the pipeline and the consumer reword it, so the prefix
    it was known by never matched. So with fewer replicas than `min-replicas-to-write`."""
    events = held_out_events[:50]
    log = tmp_path / "stream.log"
    consumer = _consumer(server, bundle_dir, log, "c1")
    try:
        _wait_for(lambda: "consuming" in log.read_text(), "the consumer to start")  # its group made
        # frozen while Redis holds its blocking read: the events land and Redis serves that read
        # (the batch pending) before the limit is set. Frozen between two reads, its next read
        # met the limit (XREADGROUP is a write to Redis: NOREPLICAS refuses it too) and nothing
        # was pending, on a busy host.
        for _ in range(20):
            _wait_for(lambda: _blocked_reading(client), "the consumer's blocking read")
            _freeze(consumer)
            if _blocked_reading(client):  # frozen inside the read, which lasts up to BLOCK_MS
                break
            consumer.send_signal(signal.SIGCONT)
        _produce(client, events)
        _wait_for(lambda: _pending(client) > 0, "the blocked read to be served")
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set(setting, refusing)
        consumer.send_signal(signal.SIGCONT)
        _wait_for(lambda: said in log.read_text() or consumer.poll() is not None, "the refused write")
        assert "trying again" in log.read_text()
        assert "unreachable" not in log.read_text()  # it is there, and refuses for now
        assert consumer.poll() is None, log.read_text()
        assert client.xlen(STREAMS["output"]) == 0
        assert _pending(client) > 0  # the batch held, unacknowledged
        client.config_set(setting, "0")
        _wait_for(lambda: client.xlen(STREAMS["output"]) >= len(events) and _pending(client) == 0, "the rest")
    finally:
        consumer.send_signal(signal.SIGCONT)
        consumer.send_signal(signal.SIGTERM)
        code = consumer.wait(60)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert "metadata" not in text  # no event in a log
    assert _uids(_written(client, STREAMS["output"])) == [e["metadata"]["uid"] for e in events]


def test_a_consumer_started_while_redis_is_out_of_memory_joins_its_group_and_waits(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """A Redis at `maxmemory` refuses XGROUP CREATE (OOM) before it looks whether the group exists:
    a consumer (re)started then exited 2, though its group was there and only writes had to wait."""
    events = held_out_events[:30]
    client.xgroup_create(STREAMS["input"], "scorers", id="0", mkstream=True)
    _produce(client, events)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    log = tmp_path / "stream.log"
    consumer = _consumer(server, bundle_dir, log, "c1")
    try:
        _wait_for(
            lambda: "OutOfMemoryError" in log.read_text() or consumer.poll() is not None, "the refused write"
        )
        assert consumer.poll() is None, log.read_text()
        client.config_set("maxmemory", "0")
        _wait_for(
            lambda: client.xlen(STREAMS["output"]) >= len(events) and _pending(client) == 0, "every event"
        )
    finally:
        client.config_set("maxmemory", "0")
        consumer.send_signal(signal.SIGTERM)
        code = consumer.wait(60)
    assert code == 0, log.read_text()
    assert _uids(_written(client, STREAMS["output"])) == [e["metadata"]["uid"] for e in events]


def test_a_replica_whose_primary_is_down_is_waited_for(server: RedisServer, client: redis.Redis) -> None:
    """MASTERDOWN (a replica with `replica-serve-stale-data no` that lost its primary, asked for
    the group's lag) is "for now" as well: it stopped the consumer, as redis-py raises it as
    MasterDownError with the code cut from the message."""
    import redis.asyncio

    from scorer.stream.redis_streams import RedisStreams

    async def scenario() -> tuple[BaseException, bool]:
        streams = RedisStreams(
            redis.asyncio.from_url(server.url), **STREAMS, group="scorers", consumer="c1", block_ms=100
        )
        await streams.start()
        client.config_set("replica-serve-stale-data", "no")
        client.replicaof("127.0.0.1", str(free_port()))  # a primary that is not there
        try:
            with pytest.raises(redis.exceptions.ResponseError) as refused:
                await streams.lag()  # a read-only command (writes answer READONLY first)
        finally:
            client.replicaof("NO", "ONE")
            await streams.close()
        return refused.value, streams.transient(refused.value)

    refusal, transient = asyncio.run(scenario())
    assert isinstance(refusal, redis.exceptions.MasterDownError), repr(refusal)
    assert transient


def test_the_input_stream_deleted_under_a_blocking_read_is_made_again_and_the_stream_goes_on(
    server: RedisServer, client: redis.Redis
) -> None:
    """Deleting the input stream while the consumer blocks in XREADGROUP makes Redis 7 answer
    UNBLOCKED (not NOGROUP): the consumer exited 2. Now the stream and the group are made again,
    as after NOGROUP, and what is written from then on is read."""
    import redis.asyncio

    from scorer.stream.redis_streams import RedisStreams

    def blocked() -> bool:
        return any("b" in c["flags"] and c["cmd"] == "xreadgroup" for c in client.client_list())

    async def scenario() -> list[str]:
        streams = RedisStreams(
            redis.asyncio.from_url(server.url), **STREAMS, group="scorers", consumer="c1", block_ms=30_000
        )
        await streams.start()
        reading = asyncio.ensure_future(streams.read(10))
        await eventually_async(blocked, "the consumer blocking in XREADGROUP")
        client.delete(STREAMS["input"])
        assert await asyncio.wait_for(reading, 60) == []
        assert [g["name"] for g in client.xinfo_groups(STREAMS["input"])] == [b"scorers"]
        _produce(client, [{"metadata": {"uid": "later"}}])
        again = await streams.read(10)
        await streams.close()
        return [entry.event["metadata"]["uid"] for entry in again if entry.event]

    assert asyncio.run(scenario()) == ["later"]


def test_a_group_lost_is_made_again_after_what_the_consumer_read_not_at_the_start_or_end(
    server: RedisServer, client: redis.Redis
) -> None:
    """The group gone while the stream stays (XGROUP DESTROY): it was made again at ID 0, so every
    entry still in the stream was scored and written once more; then at "$", so what producers
    wrote before the consumer's next read was never scored. It is made again after the last entry
    the consumer read, if the stream still holds that very entry (its ID and its event). With Redis
    back empty (the stream deleted with its group), a stream written anew is read whole, even when
    its IDs are those read before (the same millisecond) or below them (a clock behind)."""
    import redis.asyncio

    from scorer.stream.redis_streams import RedisStreams

    _produce(client, [{"metadata": {"uid": str(i)}} for i in range(30)])

    def uids(entries: list[Any]) -> list[str]:
        return [entry.event["metadata"]["uid"] for entry in entries if entry.event]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        streams = RedisStreams(
            redis.asyncio.from_url(server.url), **STREAMS, group="scorers", consumer="c1", block_ms=100
        )
        await streams.start()  # the first start: from the stream's start
        first = await streams.read(100)
        assert len(first) == 30
        await streams.commit(first)
        client.xgroup_destroy(STREAMS["input"], "scorers")
        _produce(client, [{"metadata": {"uid": "between"}}])
        assert await streams.read(100) == []  # NOGROUP: made again
        _produce(client, [{"metadata": {"uid": "later"}}])
        destroyed = await streams.read(100)
        await streams.commit(destroyed)

        # as Redis back without its data, and written anew in the same millisecond: the same ID as
        # the entry read last, another event (made again after that ID, it was skipped)
        client.delete(STREAMS["input"])
        client.xadd(
            STREAMS["input"], {"event": json.dumps({"metadata": {"uid": "anew"}})}, id=destroyed[-1].id
        )
        assert await streams.read(100) == []
        emptied = await streams.read(100)
        await streams.commit(emptied)

        client.delete(STREAMS["input"])
        for uid, entry_id in [("behind-1", "1-0"), ("behind-2", "2-0")]:
            client.xadd(STREAMS["input"], {"event": json.dumps({"metadata": {"uid": uid}})}, id=entry_id)
        assert await streams.read(100) == []
        behind = await streams.read(100)
        await streams.close()
        return uids(destroyed), uids(emptied), uids(behind)

    assert asyncio.run(scenario()) == (["between", "later"], ["anew"], ["behind-1", "behind-2"])


def test_a_redis_on_a_unix_socket_is_read_as_one_on_tcp(tmp_path: Path) -> None:
    """`--redis-url unix:///path` passed the URL's check, then every connection failed: TCP keep-alive,
    asked of every connection, is no option of a unix socket's (a TypeError, exit 2)."""
    from scorer.stream.redis_streams import RedisStreams, connect

    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(unix_socket_path=str(sock))

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:  # not listening yet
                return False

        eventually(answers, "redis-server on its socket")
        _produce(client, [{"metadata": {"uid": "over the socket"}}])

        async def scenario() -> list[str]:
            streams = RedisStreams(
                connect(f"unix://{sock}"), **STREAMS, group="g", consumer="c1", block_ms=100
            )
            await streams.start()
            entries = await streams.read(10)
            await streams.commit(entries)
            await streams.close()
            return [entry.event["metadata"]["uid"] for entry in entries if entry.event]

        assert asyncio.run(scenario()) == ["over the socket"]
        client.close()
    finally:
        server.kill()
        server.wait()


def test_a_user_the_acl_refuses_a_command_is_told_to_check_the_acl(
    server: RedisServer, client: redis.Redis, bundle_dir: Path
) -> None:
    """NOPERM at start (a user without XGROUP): redis-py cuts the code from the message
    (NoPermissionError), and the advice was to check whether Redis runs at the address."""
    client.acl_setuser(
        "scorer", enabled=True, passwords=["+right"], commands=["+@all", "-xgroup"], keys=["*"]
    )
    error, _ = _refused(f"redis://scorer:right@127.0.0.1:{server.port}/0", bundle_dir)
    assert "NoPermissionError" in error
    assert error.endswith("(check the user and password in --redis-url, and what that user may do (ACL))")


def test_the_lag_of_an_input_stream_deleted_is_unknown_not_an_error(
    server: RedisServer, client: redis.Redis
) -> None:
    """The input deleted between a read and the lag asked after it: XINFO GROUPS answers "no such
    key", which stopped the consumer; the next read makes the stream and the group again."""
    import redis.asyncio

    from scorer.stream.redis_streams import RedisStreams

    async def scenario() -> int | None:
        streams = RedisStreams(
            redis.asyncio.from_url(server.url), **STREAMS, group="scorers", consumer="c1", block_ms=100
        )
        await streams.start()
        client.delete(STREAMS["input"])
        try:
            return await streams.lag()
        finally:
            await streams.close()

    assert asyncio.run(scenario()) is None


def test_an_event_holding_a_number_beyond_a_double_is_written_back_and_blocks_nothing(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """1e400 beside nesting deeper than orjson writes: the enriched event could not be written
    ("Out of range float values are not JSON compliant"), the consumer exited 2 with its batch
    unacknowledged, and died the same way on every restart: the stream was stuck for good."""
    events = held_out_events[:40]
    poison = (
        json.dumps(events[20])[:-1]
        + ', "traffic": {"bytes_out": 1e400}, "deep": '
        + "[" * 300
        + "]" * 300
        + "}"
    )
    _produce(client, events[:20])
    client.xadd(STREAMS["input"], {"event": poison.encode()})
    _produce(client, events[21:])
    log = tmp_path / "stream.log"
    consumer = _consumer(server, bundle_dir, log, "c1")
    try:
        _wait_for(
            lambda: client.xlen(STREAMS["output"]) >= len(events) or consumer.poll() is not None,
            "every event",
        )
        _wait_for(lambda: _pending(client) == 0 or consumer.poll() is not None, "every entry acknowledged")
    finally:
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(60) == 0, log.read_text()
    written = [fields[b"event"] for fields in _written(client, STREAMS["output"])]
    assert len(written) == len(events)
    assert b'"bytes_out":1e400}' in written[20]
    assert json.loads(written[20])["anomaly"]["is_anomaly"] is True  # an impossible byte count
    assert client.xlen(STREAMS["dead_letter"]) == 0


async def _consuming(
    server: RedisServer, bundle_dir: Path
) -> tuple[Any, asyncio.Event, Any, asyncio.Future[bool]]:
    """One consumer in this process (batches of 100, group "scorers", consumer "c1"), started: its
    streams, its stop, its metrics and what `consume` will answer."""
    import redis.asyncio

    from scorer.service.models import DirectorySource
    from scorer.stream import loop
    from scorer.stream.redis_streams import RedisStreams

    streams = RedisStreams(
        redis.asyncio.from_url(server.url), **STREAMS, group="scorers", consumer="c1", block_ms=100
    )
    await streams.start()
    stop, metrics = asyncio.Event(), loop.StreamMetrics()
    models = loop.Models(DirectorySource(bundle_dir, None), 0, 0.01)
    consuming = asyncio.ensure_future(
        loop.consume(streams, models, alpha=0.01, batch_size=100, stop=stop, metrics=metrics)
    )
    return streams, stop, metrics, consuming


def _consume_a_while(server: RedisServer, bundle_dir: Path, at_least: int) -> tuple[float, float | None]:
    """One consumer in this process (batches of 100), stopped once it has consumed ``at_least``
    entries: what it consumed, and its lag gauge then."""

    async def scenario() -> tuple[float, float | None]:
        streams, stop, metrics, consuming = await _consuming(server, bundle_dir)
        value = metrics.registry.get_sample_value
        consumed = "ocsf_anomaly_stream_consumed_total"
        await eventually_async(lambda: (value(consumed) or 0) >= at_least, "batches")
        stop.set()  # the batch in hand is finished: the backlog stays mostly unread
        assert await asyncio.wait_for(consuming, 60)
        await streams.close()
        return value(consumed) or 0, value("ocsf_anomaly_stream_lag")

    return asyncio.run(scenario())


def test_the_lag_follows_a_backlog_as_it_is_read_down(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event]
) -> None:
    """ocsf_anomaly_stream_lag was set only when a read came back empty: it read 0 all the while a
    backlog of 36,000 entries was worked through, the moment it is watched for."""
    events = held_out_events[:1000]
    _produce(client, events)
    consumed, lag = _consume_a_while(server, bundle_dir, 100)
    assert consumed < len(events), "it read the whole backlog before the stop: nothing tested"
    assert lag is not None
    assert 0 < lag <= len(events) - 100


def test_a_lag_redis_cannot_count_reads_unknown_not_zero(
    server: RedisServer, client: redis.Redis, bundle_dir: Path, held_out_events: list[Event]
) -> None:
    """After an XDEL of an entry not yet read (or a producer's trim), XINFO GROUPS gives no lag
    until the group has read past it: the gauge kept its last value, 0 here with 900 entries
    unread, and an alert on the lag never fired. It reads NaN (unknown) meanwhile."""
    import math

    _produce(client, held_out_events[:1000])
    client.xdel(STREAMS["input"], client.xrevrange(STREAMS["input"], count=1)[0][0])  # the last one
    consumed, lag = _consume_a_while(server, bundle_dir, 200)
    assert consumed < 999, "it read the whole backlog before the stop: nothing tested"
    assert lag is not None
    assert math.isnan(lag), lag


def test_every_call_of_the_consumer_s_client_ends() -> None:
    """A failover or a cut network leaves the socket open with nothing coming: redis-py before 8,
    which pyproject admits, waits for ever by default (the consumer hung, silent, with its batch);
    8 waits 5 s. The client is given its own limits, above the blocking read's wait. Checked on the
    client's settings, as the redis-py installed here would end the call either way."""
    from scorer.stream.redis_streams import BLOCK_MS, SOCKET_SECONDS, connect

    settings = connect("redis://127.0.0.1:1/0").connection_pool.connection_kwargs
    assert settings["socket_timeout"] == SOCKET_SECONDS > BLOCK_MS / 1000
    assert settings["socket_connect_timeout"] == SOCKET_SECONDS
    assert settings["socket_keepalive"] is True
