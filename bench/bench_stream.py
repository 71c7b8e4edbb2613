"""Events a second and end-to-end lag through `ocsf-anomaly stream` (scorer/stream), against a
throwaway redis-server (the tests' tests/redis_server.py) or, with --source kafka, the tests'
Kafka-protocol broker (Tansu, tests/kafka_broker.py; two partitions, one consumer), serving `make run`'s demo model
(the registry's champion, as the consumer does without --model):

- throughput: N distinct demo events already in the input stream, then the consumer starts (its
  model loaded first); events/s from the first enriched entry written to the last;
- lag: the consumer running, events produced at a fixed rate; each event's lag is the time from
  its input entry to its enriched entry (Redis: both stream ids carry the server's milliseconds;
  Kafka: both messages' create timestamps, set by their producers on this machine).

    .venv/bin/python bench/bench_stream.py [--source redis|kafka] [--events 50000] [--rate 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from bench_service import demo_events
from common import CLI, ROOT, machine, require_program

sys.path.insert(0, str(ROOT / "tests"))
from redis_server import RedisServer

if TYPE_CHECKING:
    from redis.typing import StreamRangeResponse

STREAMS = ("ocsf:in", "ocsf:out", "ocsf:alerts", "ocsf:dead")


def consumer(server: RedisServer, batch_size: int, log: Path) -> subprocess.Popen[bytes]:
    command = [*CLI, "stream", "--source", "redis", "--redis-url", server.url, "--input", STREAMS[0]]
    command += ["--output", STREAMS[1], "--alerts", STREAMS[2], "--dead-letter", STREAMS[3]]
    command += ["--group", "bench", "--consumer", "c1", "--batch-size", str(batch_size)]
    with log.open("ab") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=sink)


def entries(reply: StreamRangeResponse | None) -> StreamRangeResponse:
    """An XRANGE or XREVRANGE reply: redis-py types it optional, but redis answers a list (empty when
    no entry is in range)."""
    assert reply is not None
    return reply


def millis(entry_id: bytes | str | None) -> int:
    """The server's milliseconds in a stream entry's id: bytes, as this client does not decode replies."""
    assert isinstance(entry_id, bytes)
    return int(entry_id.split(b"-")[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000, help="events for the throughput run")
    parser.add_argument("--rate", type=int, default=2_000, help="events/s produced for the lag run")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of the lag run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--source", choices=["redis", "kafka"], default="redis")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.source == "redis":
        require_program("redis-server", "redis-server")
    lines = demo_events()
    if args.source == "kafka":
        kafka(args, lines)
        return
    rates, lags = [], []
    for run in range(args.runs):
        server = RedisServer()
        server.start()
        client = redis.Redis.from_url(server.url)
        try:
            with tempfile.TemporaryDirectory() as work:
                log = Path(work) / "stream.log"
                pipe = client.pipeline(transaction=False)
                for i in range(args.events):
                    pipe.xadd(STREAMS[0], {"event": lines[i % len(lines)]})
                pipe.execute()
                process = consumer(server, args.batch_size, log)
                while client.xlen(STREAMS[1]) < args.events:
                    time.sleep(0.05)
                out = (
                    entries(client.xrange(STREAMS[1], count=1))[0][0],
                    entries(client.xrevrange(STREAMS[1], count=1))[0][0],
                )
                rate = args.events / max(1e-3, (millis(out[1]) - millis(out[0])) / 1000)
                rates.append(rate)
                # lag: produce at a fixed rate while the consumer runs
                start_len = client.xlen(STREAMS[1])
                count = int(args.rate * args.seconds)
                started = time.perf_counter()
                for i in range(count):
                    delay = started + i / args.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    client.xadd(STREAMS[0], {"event": lines[(i + args.events) % len(lines)]})
                while client.xlen(STREAMS[1]) < start_len + count:
                    time.sleep(0.05)
                produced = [millis(i) for i, _ in entries(client.xrange(STREAMS[0]))][args.events :]
                written = [millis(i) for i, _ in entries(client.xrange(STREAMS[1]))][start_len:]
                lag = sorted(w - p for p, w in zip(produced, written, strict=True))
                lags.append((lag[len(lag) // 2], lag[int(len(lag) * 0.99)]))
                process.send_signal(signal.SIGTERM)
                assert process.wait(60) == 0, log.read_text()
                print(
                    f"run {run + 1}: {rate:,.0f} events/s draining {args.events:,}; at {args.rate:,}/s "
                    f"lag p50 {lags[-1][0]} ms, p99 {lags[-1][1]} ms",
                    flush=True,
                )
        finally:
            client.close()
            server.stop()
    print(
        f"\nmedian of {args.runs}: {statistics.median(rates):,.0f} events/s; lag at {args.rate:,}/s p50 "
        f"{statistics.median(p50 for p50, _ in lags)} ms, p99 {statistics.median(p99 for _, p99 in lags)} ms"
    )


def kafka(args: argparse.Namespace, lines: list[bytes]) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from kafka_broker import KafkaBroker

    topics = ("ocsf.in", "ocsf.out", "ocsf.alerts", "ocsf.dead")

    async def setup(bootstrap: str) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(t, num_partitions=2, replication_factor=1) for t in topics])
        await admin.close()

    async def produce(bootstrap: str, values: list[bytes], rate: float | None) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        started = time.perf_counter()
        for i, value in enumerate(values):
            if rate:
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            await producer.send(topics[0], value)
        await producer.flush()
        await producer.stop()

    async def collect(bootstrap: str, topic: str, count: int) -> list[Any]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        records: list[Any] = []
        while len(records) < count:
            batch = await consumer.getmany(timeout_ms=500)
            records += [r for part in batch.values() for r in part]
        await consumer.stop()
        return records

    rates, lags = [], []
    for run in range(args.runs):
        broker = KafkaBroker()
        broker.start()
        try:
            asyncio.run(setup(broker.bootstrap))
            with tempfile.TemporaryDirectory() as work:
                log = Path(work) / "stream.log"
                asyncio.run(
                    produce(broker.bootstrap, [lines[i % len(lines)] for i in range(args.events)], None)
                )
                command = [*CLI, "stream", "--source", "kafka", "--bootstrap-servers", broker.bootstrap]
                command += ["--input", topics[0], "--output", topics[1], "--alerts", topics[2]]
                command += [
                    "--dead-letter",
                    topics[3],
                    "--group",
                    "bench",
                    "--batch-size",
                    str(args.batch_size),
                ]
                with log.open("ab") as sink:
                    process = subprocess.Popen(command, stdout=sink, stderr=sink)
                out = asyncio.run(collect(broker.bootstrap, topics[1], args.events))
                stamps = sorted(r.timestamp for r in out)
                rates.append(args.events / max(1e-3, (stamps[-1] - stamps[0]) / 1000))
                count = int(args.rate * args.seconds)
                fresh = [
                    json.dumps({**json.loads(lines[i % len(lines)]), "bench_seq": i}).encode()
                    for i in range(count)
                ]
                asyncio.run(produce(broker.bootstrap, fresh, args.rate))
                sent = {
                    json.loads(r.value)["bench_seq"]: r.timestamp
                    for r in asyncio.run(collect(broker.bootstrap, topics[0], args.events + count))
                    if b"bench_seq" in r.value
                }
                got = asyncio.run(collect(broker.bootstrap, topics[1], args.events + count))
                lag = sorted(
                    r.timestamp - sent[json.loads(r.value)["bench_seq"]]
                    for r in got
                    if b"bench_seq" in r.value
                )
                lags.append((lag[len(lag) // 2], lag[int(len(lag) * 0.99)]))
                process.send_signal(signal.SIGTERM)
                assert process.wait(60) == 0, log.read_text()
                print(
                    f"run {run + 1}: {rates[-1]:,.0f} events/s draining {args.events:,}; at {args.rate:,}/s "
                    f"lag p50 {lags[-1][0]} ms, p99 {lags[-1][1]} ms",
                    flush=True,
                )
        finally:
            broker.stop()
    print(
        f"\nmedian of {args.runs}: {statistics.median(rates):,.0f} events/s; lag at {args.rate:,}/s p50 "
        f"{statistics.median(p50 for p50, _ in lags)} ms, p99 {statistics.median(p99 for _, p99 in lags)} ms"
    )


if __name__ == "__main__":
    main()
