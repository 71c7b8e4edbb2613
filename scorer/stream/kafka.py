"""Kafka topics as the consumer loop's source (aiokafka, the extra ``[kafka]``).

A message's value is the OCSF event as JSON, and so is every message written (the enriched event;
a dead letter keeps the value as it came and says why in its header ``error``). The consumer is a
member of a consumer group with automatic commits off: offsets are committed only after the
batch's outputs were acknowledged by the brokers (``acks=all``), so a crash loses nothing. On a
rebalance the partitions being taken away get what is done committed first. Outputs are keyed by
the event's entity (``OCSF_ANOMALY_ENTITY_KEY``, e.g. the source IP), so an entity's events stay in
order on one partition downstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

from scorer.features.encoder import compile_getter
from scorer.service.requests import loads
from scorer.stream.loop import Entry, Output

log = logging.getLogger("ocsf_anomaly.stream")
# How long a fetch waits on the broker for data: aiokafka's 500 ms default is what a lightly loaded
# topic's events then wait before they are scored; 50 ms costs the broker a few more fetches.
FETCH_MAX_WAIT_MS = 50


class OncePer(logging.Filter):
    """Lets a message through at most once per ``seconds`` (by its logger and template): while a
    broker is away aiokafka logs the same failure tens of times a second."""

    def __init__(self, seconds: float, prefix: str = "aiokafka") -> None:
        super().__init__()
        self.seconds, self.prefix = seconds, prefix
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key, now = (record.name, record.msg), time.monotonic()
        if now - self._last.get(key, -self.seconds) < self.seconds:
            return False
        self._last[key] = now
        return True


class KafkaTopics:
    """One member of ``group`` consuming ``input``."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        input: str,
        output: str,
        alerts: str,
        dead_letter: str,
        group: str,
        entity_key: str,
        client_id: str,
    ) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self.where = f"Kafka at {bootstrap_servers}"
        self.input, self.output, self.alerts, self.dead_letter = input, output, alerts, dead_letter
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, client_id=client_id, acks="all")
        self.entity = compile_getter(entity_key)
        self._done: dict[Any, int] = {}  # partition → the next offset to commit (what is written)

    async def start(self) -> None:
        from aiokafka.abc import ConsumerRebalanceListener

        source = self

        class CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await source._commit_done(set(revoked))

            async def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))

        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe([self.input], listener=CommitOnRevoke())

    async def close(self) -> None:
        for client in (self.consumer, self.producer):
            try:
                await client.stop()
            except asyncio.CancelledError:
                # aiokafka's fetcher raises its own cancellation when stopped while it waits to
                # retry a broker that is away; a cancellation of this task itself goes on up
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
            except Exception as exc:
                log.warning("closing the Kafka %s: %s", type(client).__name__, exc)

    def transient(self, exc: BaseException) -> bool:
        from aiokafka.errors import KafkaError, KafkaTimeoutError

        if isinstance(exc, KafkaError):  # a broker down, no leader yet, a request timed out
            return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
        return isinstance(exc, OSError | TimeoutError)

    async def read(self, count: int) -> list[Entry]:
        batches = await self.consumer.getmany(timeout_ms=1000, max_records=count)
        return [self._entry(record) for records in batches.values() for record in records]

    @staticmethod
    def _entry(record: Any) -> Entry:
        raw = record.value or b""
        where = (record.topic, record.partition, record.offset)
        try:
            event = loads(raw)
        except orjson.JSONDecodeError as exc:
            return Entry(where, raw, None, f"the value is not valid JSON: {exc}")
        if not isinstance(event, dict):
            return Entry(where, raw, None, "the value is JSON but not an object")
        return Entry(where, raw, event)

    def _key(self, event: dict[str, Any] | None) -> bytes | None:
        value = self.entity(event) if event is not None else None
        return None if value is None else str(value).encode()

    async def deliver(self, output: Output) -> None:
        sends = [
            await self.producer.send(self.output, body, key=self._key(entry.event))
            for entry, body in output.enriched
        ]
        sends += [
            await self.producer.send(self.alerts, body, key=self._key(entry.event))
            for entry, body in output.alerts
        ]
        sends += [
            await self.producer.send(self.dead_letter, entry.raw, headers=[("error", error.encode())])
            for entry, error in output.dead
        ]
        await asyncio.gather(*sends)  # every message acknowledged by the brokers

    async def commit(self, entries: Sequence[Entry]) -> None:
        from aiokafka import TopicPartition

        for entry in entries:
            topic, partition, offset = entry.id
            where = TopicPartition(topic, partition)
            self._done[where] = max(self._done.get(where, 0), offset + 1)
        await self._commit_done(None)

    async def _commit_done(self, only: set[Any] | None) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError
        from aiokafka.structs import OffsetAndMetadata

        offsets = {
            tp: OffsetAndMetadata(offset, "")
            for tp, offset in self._done.items()
            if only is None or tp in only
        }
        for tp in offsets:
            del self._done[tp]
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the partitions moved to another member mid-batch: it reads them again from the last
            # commit (their events written twice, none lost)
            log.warning("offsets not committed, the group rebalanced: %s", exc)

    async def lag(self) -> int | None:
        total = 0
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                return None
            total += max(0, highwater - await self.consumer.position(tp))
        return total
