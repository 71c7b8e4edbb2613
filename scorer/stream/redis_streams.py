"""Redis Streams as the consumer loop's source: the embedded default, as it needs only the Redis
already in the stack.

An entry carries the OCSF event as JSON in its field ``event``, and so does every entry written
(the enriched event; a dead letter adds ``error``). The consumer reads as a member of a consumer
group: on start it first reads its own pending entries (ID 0: read before a crash, never
acknowledged), then new ones (``>``); now and then it claims the entries another consumer of the
group left pending longer than the claim idle time (``XAUTOCLAIM``: that consumer died). Outputs
are written in one pipeline, trimmed with ``MAXLEN ~``, and only then are the inputs acknowledged
(``XACK``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

from scorer.io import loads
from scorer.stream.loop import Entry, Output

log = logging.getLogger("ocsf_anomaly.stream")
# Errors Redis answers while it cannot serve for now: out of memory under `maxmemory` with no
# eviction, a script holding it, a replica without its primary, a cluster resharding
PASSING = ("OOM", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


class RedisStreams:
    """One consumer of ``group`` on stream ``input``."""

    def __init__(
        self,
        client: Any,  # redis.asyncio.Redis
        *,
        where: str = "Redis",
        input: str,
        output: str,
        alerts: str,
        dead_letter: str,
        group: str,
        consumer: str,
        claim_idle_seconds: float = 60.0,
        max_len: int = 1_000_000,
        block_ms: int = 1000,
    ) -> None:
        self.client = client
        self.where = where
        self.input, self.output, self.alerts, self.dead_letter = input, output, alerts, dead_letter
        self.group, self.consumer = group, consumer
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.max_len = max_len
        self.block_ms = block_ms
        self._own_pending = True  # read what this consumer holds from before, first
        self._next_claim = 0.0

    async def start(self) -> None:
        """The consumer group, made (with the stream) if it is not there: from the stream's start."""
        import redis.exceptions

        try:
            await self.client.xgroup_create(self.input, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def advice(self, exc: BaseException) -> str:
        import redis.exceptions

        if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError) or (
            isinstance(exc, redis.exceptions.ResponseError)
            and str(exc).startswith(("NOAUTH", "NOPERM", "WRONGPASS"))
        ):
            return "check the user and password in --redis-url, and what that user may do (ACL)"
        if isinstance(exc, redis.exceptions.ResponseError) and "WRONGTYPE" in str(exc):
            return f"the key {self.input!r} holds no stream: name another --input, or delete it"
        return "is Redis running there, and is --redis-url right?"

    async def close(self) -> None:
        await self.client.aclose()

    def transient(self, exc: BaseException) -> bool:
        import redis.exceptions

        if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
            return False  # a refused password stays refused
        if isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(PASSING):
            return True
        return isinstance(
            exc,
            redis.exceptions.ConnectionError  # refused, reset, still loading its data after a restart
            | redis.exceptions.TimeoutError
            | redis.exceptions.ReadOnlyError  # a replica during a failover
            | OSError,
        )

    async def read(self, count: int) -> list[Entry]:
        import redis.exceptions

        try:
            return await self._read(count)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        except Exception:
            # the answer may have been lost on the way with entries Redis now counts as this
            # consumer's: the next read starts with them (else they wait for a claim)
            self._own_pending = True
            raise
        # Redis came back without its data (no persistence): the stream and the group are made
        # again, and the consumer goes on with what is written from now on
        log.warning(
            "the consumer group %s of %s is gone from %s: made again", self.group, self.input, self.where
        )
        await self.start()
        return []

    async def _read(self, count: int) -> list[Entry]:
        while self._own_pending:
            answer = await self.client.xreadgroup(self.group, self.consumer, {self.input: "0"}, count=count)
            gone = [entry_id for _, messages in answer or [] for entry_id, fields in messages if not fields]
            if gone:  # held from before and trimmed or deleted since: nothing left to score or lose
                await self.client.xack(self.input, self.group, *gone)
            entries = self._entries(answer)
            if entries:
                return entries
            if not gone:
                self._own_pending = False
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + max(1.0, self.claim_idle_ms / 2000)
            claimed = await self.client.xautoclaim(
                self.input, self.group, self.consumer, self.claim_idle_ms, start_id="0-0", count=count
            )
            entries = [self._entry(entry_id, fields) for entry_id, fields in claimed[1] if fields is not None]
            if entries:
                return entries
        answer = await self.client.xreadgroup(
            self.group, self.consumer, {self.input: ">"}, count=count, block=self.block_ms
        )
        return self._entries(answer)

    def _entries(self, answer: Any) -> list[Entry]:
        out: list[Entry] = []
        for _stream, messages in answer or []:
            for entry_id, fields in messages:
                # a pending entry trimmed away since reads back without fields (_read acknowledges it)
                if fields:
                    out.append(self._entry(entry_id, fields))
        return out

    @staticmethod
    def _entry(entry_id: Any, fields: dict[bytes, bytes]) -> Entry:
        raw = fields.get(b"event")
        if raw is None:
            return Entry(entry_id, b"", None, "the entry has no field 'event'")
        try:
            event = loads(raw)
        except orjson.JSONDecodeError as exc:
            return Entry(entry_id, raw, None, f"'event' is not valid JSON: {exc}")
        if not isinstance(event, dict):
            return Entry(entry_id, raw, None, "'event' is JSON but not an object")
        return Entry(entry_id, raw, event)

    def refuses(self, entry: Entry, body: bytes) -> str | None:
        return None  # a field may hold 512 MB (proto-max-bulk-len): no enriched event comes near it

    async def deliver(self, output: Output) -> None:
        pipe = self.client.pipeline(transaction=False)
        for _, body in output.enriched:
            pipe.xadd(self.output, {"event": body}, maxlen=self.max_len, approximate=True)
        for _, body in output.alerts:
            pipe.xadd(self.alerts, {"event": body}, maxlen=self.max_len, approximate=True)
        for entry, error in output.dead:
            fields = {"event": entry.raw, "error": error, "source_id": entry.id}
            pipe.xadd(self.dead_letter, fields, maxlen=self.max_len, approximate=True)
        try:
            await pipe.execute()
        except Exception as exc:
            # redis-py quotes the failing command in its error, an event's JSON among the arguments:
            # never an event in a log
            _command, marker, reason = str(exc).partition(" of pipeline caused error: ")
            if marker:
                exc.args = (f"XADD: {reason}",)
            raise

    async def commit(self, entries: Sequence[Entry]) -> None:
        await self.client.xack(self.input, self.group, *[entry.id for entry in entries])

    async def lag(self) -> int | None:
        for group in await self.client.xinfo_groups(self.input):
            if group.get("name") in (self.group, self.group.encode()):
                lag = group.get("lag")
                return int(lag) if lag is not None else None
        return None
