"""Kafka topics as the consumer loop's source (aiokafka, the extra ``[kafka]``).

A message's value is the OCSF event as JSON, and so is every message written (the enriched event;
a dead letter keeps the value as it came and says why in its header ``error``). The consumer is a
member of a consumer group with automatic commits off: offsets are committed only after the
batch's outputs were acknowledged by the brokers (``acks=all``), so a crash loses nothing. On a
rebalance the partitions being taken away wait for the batch in hand (REVOKE_WAIT_SECONDS at most)
and get it committed before they move: their next owner does not write its events again. Outputs are keyed by
the event's entity (``OCSF_ANOMALY_ENTITY_KEY``, e.g. the source IP), so an entity's events stay in
order on one partition downstream. Compressed input (gzip, snappy, lz4, zstd) is read: the extra
brings aiokafka's codecs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scorer.alerts import label_value
from scorer.features.encoder import compile_getter
from scorer.io import UTF8_BOM, loads
from scorer.stream.loop import STOP_GRACE_SECONDS, Entry, Output, StartFailed, describe

log = logging.getLogger("ocsf_anomaly.stream")
# How long a fetch waits on the broker for data: aiokafka's 500 ms default is what a lightly loaded
# topic's events then wait before they are scored; 50 ms costs the broker a few more fetches.
FETCH_MAX_WAIT_MS = 50
# The largest message the producer sends (aiokafka's default; Apache Kafka's message.max.bytes is
# about the same): an enriched event beyond it is a dead letter, a dead letter's value beyond it is left out.
MAX_REQUEST_SIZE = 1_048_576
# How long a request (a connection at start too) waits for the brokers' answer: aiokafka's default,
# named so that a start that timed out can say after how long (aiokafka's timeout has no text).
REQUEST_TIMEOUT_MS = 40_000
# How long a rebalance waits for the batch in hand to be written and committed before the partitions
# it came from move on without it (its events then written again by their next owner), as the Java
# client finishes a batch before its listener runs: a batch takes well under a second, one held
# longer is held by brokers away. The group waits for a member to rejoin for REBALANCE_TIMEOUT_MS
# (aiokafka's default, the 10 s session timeout, is what its documentation says to raise for a
# listener that delays the rebalance); Java's is its max.poll.interval.ms, 5 minutes.
REVOKE_WAIT_SECONDS = 20.0
REBALANCE_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class KafkaSecurity:
    """How to reach the brokers: Kafka's own ``security.protocol`` and ``sasl.mechanism`` names.

    Without a protocol it follows from what is given: a SASL mechanism means SASL_SSL, a CA or a
    client certificate means SSL, nothing means PLAINTEXT. TLS verifies the brokers' certificates
    and host names against ``ca_file`` (default: the system's CAs).
    """

    protocol: str | None = None
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def resolved_protocol(self) -> str:
        if self.protocol:
            return self.protocol
        if self.mechanism:
            return "SASL_SSL"
        return "SSL" if self.ca_file or self.cert_file else "PLAINTEXT"

    def problems(self) -> list[str]:
        """What is missing or contradictory, as a user would fix it (empty: usable)."""
        protocol, found = self.resolved_protocol, []
        sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
        if sasl and not self.mechanism:
            found.append(f"--security-protocol {protocol} needs --sasl-mechanism")
        if self.mechanism and not sasl:
            found.append(
                f"--sasl-mechanism needs --security-protocol SASL_SSL or SASL_PLAINTEXT, not {protocol}"
            )
        if self.mechanism and not self.username:
            found.append("--sasl-mechanism needs --sasl-username")
        if self.mechanism and not self.password:
            found.append("--sasl-mechanism needs the password in OCSF_ANOMALY_KAFKA_PASSWORD")
        if (self.ca_file or self.cert_file or self.key_file) and not tls:
            found.append(f"--ssl-* files need --security-protocol SSL or SASL_SSL, not {protocol}")
        if bool(self.cert_file) != bool(self.key_file):
            found.append("a client certificate needs both --ssl-certfile and --ssl-keyfile")
        if self.username and not self.mechanism:
            found.append("--sasl-username needs --sasl-mechanism")
        for path in (self.ca_file, self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                found.append(f"no such file: {path}")
        if not found and tls and (unusable := self._unusable_files()) is not None:
            found.append(unusable)
        return found

    def _unusable_files(self) -> str | None:
        """Why the TLS files cannot be used, read as the client will read them (None: they can), so
        that a wrong file is said at start, not as a raw SSL error after the model has loaded."""
        import ssl

        context = ssl.create_default_context()
        try:
            if self.ca_file:
                context.load_verify_locations(cafile=self.ca_file)
        except OSError as exc:
            return f"--ssl-cafile {self.ca_file}: no PEM certificate read from it ({getattr(exc, 'reason', None) or exc})"
        try:
            if self.cert_file:
                # a key that asks for a password is refused, never prompted for (there is no terminal)
                context.load_cert_chain(self.cert_file, self.key_file, password=lambda: b"")
        except OSError:  # OpenSSL says only "PEM lib"
            return (
                f"--ssl-certfile {self.cert_file} with --ssl-keyfile {self.key_file}: not a PEM "
                "certificate and its unencrypted key"
            )
        return None

    def client_options(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for this security."""
        protocol = self.resolved_protocol
        options: dict[str, Any] = {"security_protocol": protocol}
        if protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=str(self.ca_file) if self.ca_file else None,
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
            )
        if protocol.startswith("SASL_"):
            options.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return options


class _LastError(logging.Handler):
    """The last ERROR a logger wrote, a timeout that has no text of its own said as one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and args and isinstance(args[-1], TimeoutError) and not str(args[-1]):
            # aiokafka logs 'Unable connect to "host:port": %s' with a bare TimeoutError: nothing
            said = f"connection timed out after {REQUEST_TIMEOUT_MS / 1000:g} s"
            self.message = str(record.msg) % (*args[:-1], said)
        else:
            self.message = record.getMessage()


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
        security: KafkaSecurity | None = None,
    ) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self.security = security or KafkaSecurity()
        connection = {"bootstrap_servers": bootstrap_servers, "client_id": client_id}
        connection.update(self.security.client_options())
        self.where = f"Kafka at {bootstrap_servers}"
        self.input, self.output, self.alerts, self.dead_letter = input, output, alerts, dead_letter
        self.consumer = AIOKafkaConsumer(
            **connection,
            group_id=group,
            enable_auto_commit=False,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        self.producer = AIOKafkaProducer(
            **connection,
            acks="all",
            max_request_size=MAX_REQUEST_SIZE,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        self.entity = compile_getter(entity_key)
        self._done: dict[Any, int] = {}  # partition → the next offset to commit (what is written)
        self._in_hand: dict[Any, int] = {}  # partition → the next offset after what was read, not committed
        self._committed = asyncio.Event()  # set by each commit, for a rebalance that waits for one
        self._unacknowledged = False  # a batch's messages were handed to the producer, not all acknowledged

    async def start(self) -> None:
        from aiokafka.abc import ConsumerRebalanceListener

        source = self

        class CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await source._settle(set(revoked))
                await source._commit_done(set(revoked))

            async def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))

        # aiokafka's last ERROR while starting goes into the one line that says why it failed, not
        # beside it with a timestamp (and, when it starts after all, into one warning of ours); what
        # else it logs while starting (its INFO lines, a metadata request's WARNING) is not shown
        last = _LastError()
        library = logging.getLogger("aiokafka")
        library.addHandler(last)
        propagate, library.propagate = library.propagate, False
        try:
            await self.producer.start()
            await self.consumer.start()
        except Exception as exc:
            raise StartFailed(self._why(exc, last.message)) from exc
        except asyncio.CancelledError:  # a stop while it starts: what it met so far is still said
            if last.message:
                log.warning(
                    "stopped while starting on %s, after the Kafka client logged: %s",
                    self.where,
                    last.message,
                )
            raise
        finally:
            library.removeHandler(last)
            library.propagate = propagate
        if last.message:  # one of several brokers away, say
            log.warning("started on %s, after the Kafka client logged: %s", self.where, last.message)
        self.consumer.subscribe([self.input], listener=CommitOnRevoke())

    def _why(self, exc: Exception, last: str | None) -> str:
        """What went wrong at start, with what aiokafka logged but did not raise (a certificate
        refused, a connection reset), and a SASL login's failure named as one: a broker that
        refuses SCRAM in the final message (RFC 5802's ``e=``) makes aiokafka's parser raise
        a bare KeyError."""
        text = describe(exc)
        if self._login_failed(exc):
            return (
                f"{text} during the {self.security.mechanism} login as {self.security.username!r}: "
                "check --sasl-username and OCSF_ANOMALY_KAFKA_PASSWORD"
            )
        return f"{text} ({last})" if last else text

    def advice(self, exc: BaseException) -> str:
        if self._login_failed(exc):
            return ""  # its message says what to check
        return "are the brokers running, and are --bootstrap-servers and the security settings right?"

    def _login_failed(self, exc: BaseException) -> bool:
        cause = exc.__cause__ if isinstance(exc, StartFailed) and exc.__cause__ is not None else exc
        frames = {frame.name for frame in traceback.extract_tb(cause.__traceback__)}
        return bool(self.security.mechanism) and any(
            "sasl" in name or "authenticator" in name for name in frames
        )

    async def close(self) -> None:
        """Leave the group and close the connections, in STOP_GRACE_SECONDS at most (a stop's
        grace: README). The messages of a batch not all acknowledged are dropped, not sent: the
        loop gave that batch up uncommitted (a write is acknowledged before its commit is asked
        for), so it is read again and written then. aiokafka's producer would otherwise wait for
        them while the brokers are away, until they expire (its request timeout, 40 s)."""

        # a batch in hand now is one the loop gave up: nothing will commit it, so a rebalance that
        # waits for it (its listener holds the consumer's stop) goes on without it at once
        self._in_hand.clear()
        self._committed.set()

        async def within_grace(name: str, step: Callable[[], Awaitable[None]]) -> None:
            try:
                await asyncio.wait_for(step(), STOP_GRACE_SECONDS)
            except TimeoutError:  # the brokers hold a request without answering
                log.warning("closing the Kafka %s: not done after %g s, left open", name, STOP_GRACE_SECONDS)

        # side by side: what the consumer commits as it leaves was acknowledged before
        await asyncio.gather(
            within_grace("consumer", functools.partial(self._stop, self.consumer)),
            within_grace("producer", self._close_producer),
        )

    @staticmethod
    async def _stop(client: Any) -> None:
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

    async def _close_producer(self) -> None:
        if self._unacknowledged:
            try:
                # half the grace, so that the connections are closed even when the brokers hold
                # the attempt under way without answering (it is then given up too)
                await asyncio.wait_for(self._drop_unacknowledged(), STOP_GRACE_SECONDS / 2)
            except TimeoutError:
                pass
            except Exception as exc:  # then stop() waits for them as it would have
                log.warning("closing the Kafka producer: its messages could not be dropped: %s", exc)
        await self._stop(self.producer)

    async def _drop_unacknowledged(self) -> None:
        """aiokafka has no public way to drop what its producer holds: its sender (the task that
        sends the batches) is stopped, after the attempt under way, and stop() then closes the
        connections without waiting for the messages left."""
        sender = getattr(self.producer, "_sender", None)
        if sender is None or not hasattr(sender, "close"):
            return  # an aiokafka that works otherwise: stop() waits for them
        await sender.close()
        log.info("closing: the unacknowledged batch's messages are dropped (the batch is read again)")

    def transient(self, exc: BaseException) -> bool:
        from aiokafka.errors import KafkaError, KafkaTimeoutError

        if isinstance(exc, KafkaError):  # a broker down, no leader yet, a request timed out
            return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
        return isinstance(exc, OSError | TimeoutError)

    async def read(self, count: int) -> list[Entry]:
        batches = await self.consumer.getmany(timeout_ms=1000, max_records=count)
        for tp, records in batches.items():
            if records:
                self._in_hand[tp] = max(self._in_hand.get(tp, 0), records[-1].offset + 1)
        return [self._entry(record) for records in batches.values() for record in records]

    @staticmethod
    def _entry(record: Any) -> Entry:
        raw = record.value or b""
        where = (record.topic, record.partition, record.offset)
        try:
            event = loads(raw.removeprefix(UTF8_BOM))  # a producer's byte order mark, as files
        except orjson.JSONDecodeError as exc:
            return Entry(where, raw, None, f"the value is not valid JSON: {exc}")
        if not isinstance(event, dict):
            return Entry(where, raw, None, "the value is JSON but not an object")
        return Entry(where, raw, event)

    def _key(self, event: dict[str, Any] | None) -> bytes | None:
        """The entity as an alert's label says it (true, 7, 1.5: JSON's text, not Python's); no key
        for an entity that is absent, empty, an object or an array."""
        text = label_value(self.entity(event)) if event is not None else None
        return None if text is None else text.encode()

    @staticmethod
    def _size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
        """The size aiokafka gives the message, which it refuses to send beyond MAX_REQUEST_SIZE."""
        from aiokafka.record.default_records import DefaultRecordBatchBuilder

        return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))

    def refuses(self, entry: Entry, body: bytes) -> str | None:
        size = self._size(self._key(entry.event), body, [])
        if size <= MAX_REQUEST_SIZE:
            return None
        return f"the enriched event is a message of {size:,} bytes, over the {MAX_REQUEST_SIZE:,} the producer sends"

    def _dead_letter(self, entry: Entry, error: str) -> tuple[bytes, list[tuple[str, bytes]]]:
        """A dead letter's value and headers: the value as it came, unless that is too large to send."""
        headers = [("error", error.encode())]
        if self._size(None, entry.raw, headers) <= MAX_REQUEST_SIZE:
            return entry.raw, headers
        topic, partition, offset = entry.id
        error += (
            f"; the value ({len(entry.raw):,} bytes, over the {MAX_REQUEST_SIZE:,} the producer sends) "
            f"is left out: it is at offset {offset} of {topic} partition {partition}"
        )
        return b"", [("error", error.encode())]

    async def deliver(self, output: Output) -> None:
        self._unacknowledged = True
        sends: list[asyncio.Future[Any]] = []
        for entry, body in output.enriched:
            sends.append(await self.producer.send(self.output, body, key=self._key(entry.event)))
        for entry, body in output.alerts:
            sends.append(await self.producer.send(self.alerts, body, key=self._key(entry.event)))
        for entry, error in output.dead:
            value, headers = self._dead_letter(entry, error)
            sends.append(await self.producer.send(self.dead_letter, value, headers=headers))
        await asyncio.gather(*sends)  # every message acknowledged by the brokers
        self._unacknowledged = False

    async def commit(self, entries: Sequence[Entry]) -> None:
        from aiokafka import TopicPartition

        for entry in entries:
            topic, partition, offset = entry.id
            where = TopicPartition(topic, partition)
            self._done[where] = max(self._done.get(where, 0), offset + 1)
            if self._in_hand.get(where, 0) <= offset + 1:
                self._in_hand.pop(where, None)
        await self._commit_done(None)
        self._committed.set()

    async def _settle(self, revoked: set[Any]) -> None:
        """Wait until what was read from the ``revoked`` partitions is written and committed, as the
        loop does it, for REVOKE_WAIT_SECONDS at most. aiokafka keeps the member alive meanwhile
        (it heartbeats through the listener), and the brokers take commits of the generation
        that is ending."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REVOKE_WAIT_SECONDS
        while held := sorted(tp.partition for tp in revoked if tp in self._in_hand):
            self._committed.clear()
            try:
                await asyncio.wait_for(self._committed.wait(), deadline - loop.time())
            except TimeoutError:
                log.warning(
                    "the group rebalanced while partitions %s had a batch in hand, not committed after "
                    "%g s: its events are read and written again by the partitions' next owner",
                    held,
                    REVOKE_WAIT_SECONDS,
                )
                return

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
