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

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson

from scorer.io import UTF8_BOM, loads
from scorer.stream.loop import Entry, Output

log = logging.getLogger("ocsf_anomaly.stream")
# The codes of the errors Redis answers while it cannot serve for now: out of memory under
# `maxmemory` with no eviction, a script holding it, a replica without its primary or read-only
# during a failover, still loading its data, a cluster resharding, fewer replicas than
# `min-replicas-to-write` (one lost in a failover), a snapshot that failed (a full disk) under
# `stop-writes-on-bgsave-error`. redis-py cuts most codes from the message (raising a class of its
# own), a pipeline rewords the message, and so does deliver: an error is known by its class and by
# the code redis-py keeps apart (_code), never by its text
PASSING = (
    "OOM",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "LOADING",
    "READONLY",
    "NOREPLICAS",
    "MISCONF",
)
# the user or password refused, or a command or key the user may not touch (ACL)
REFUSED = ("NOAUTH", "NOPERM", "WRONGPASS")
# the group is gone: NOGROUP, or UNBLOCKED when the stream is deleted under a blocking read
LOST = ("NOGROUP", "UNBLOCKED")
PIPELINE = " of pipeline caused error: "
WRITE = "XADD"
# A call that has not answered in this long is taken for a lost connection (a failover, a cut
# network: the socket stays open, nothing comes), and tried again on a new one. The longest call,
# the blocking read, waits BLOCK_MS; redis-py before 8 waits for ever by default.
SOCKET_SECONDS = 10.0
BLOCK_MS = 1000
LEAVE_SECONDS = 2.0  # leaving the group as the consumer stops, at most


def connect(url: str) -> Any:
    """A client (redis.asyncio.Redis) for ``url`` whose every call ends: see SOCKET_SECONDS."""
    import redis.asyncio

    # TCP keep-alive is TCP's: a unix:// socket's connection refused the option (a TypeError)
    tcp = {} if url.lower().startswith("unix:") else {"socket_keepalive": True}
    return redis.asyncio.from_url(
        url,
        socket_timeout=SOCKET_SECONDS,
        socket_connect_timeout=SOCKET_SECONDS,
        health_check_interval=30,
        **tcp,
    )


def _entry_id(value: bytes | str) -> tuple[int, int]:
    """A stream entry ID (``b"1700000000000-3"``) as numbers that compare in the stream's order."""
    text = value.decode() if isinstance(value, bytes) else value
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def _digest(event: bytes) -> bytes:
    """An entry's event, as told apart from another's."""
    return hashlib.blake2b(event, digest_size=16).digest()


def _code(exc: BaseException) -> str:
    """The code opening Redis's error answer ("OOM", "NOGROUP"), "" when there is none."""
    import redis.exceptions as errors

    code = getattr(exc, "status_code", None)  # redis-py 8 keeps it, whatever the message says
    if isinstance(code, str) and code:
        return code
    classes: tuple[tuple[type[BaseException], str], ...] = (
        (errors.OutOfMemoryError, "OOM"),
        (errors.TryAgainError, "TRYAGAIN"),
        (errors.MasterDownError, "MASTERDOWN"),
        (errors.ClusterDownError, "CLUSTERDOWN"),
        (errors.BusyLoadingError, "LOADING"),
        (errors.ReadOnlyError, "READONLY"),
        (errors.NoPermissionError, "NOPERM"),
    )
    for kind, name in classes:
        if isinstance(exc, kind):
            return name
    # an older redis-py leaves the codes it has no class for in the message (after a pipeline's
    # or deliver's preamble)
    text = str(exc)
    text = text.partition(PIPELINE)[2] or text
    word = text.removeprefix(f"{WRITE}: ").split(" ", 1)[0]
    return word if word.isalpha() and word.isupper() else ""


class RedisStreams:
    """One consumer of ``group`` on stream ``input``."""

    def __init__(
        self,
        client: Any,  # redis.asyncio.Redis
        *,
        where: str = "Redis",
        url_given_as: str = "--redis-url",
        input: str,
        output: str,
        alerts: str,
        dead_letter: str,
        group: str,
        consumer: str,
        claim_idle_seconds: float = 60.0,
        max_len: int = 1_000_000,
        block_ms: int = BLOCK_MS,
    ) -> None:
        self.client = client
        self.where, self.url_given_as = where, url_given_as
        self.input, self.output, self.alerts, self.dead_letter = input, output, alerts, dead_letter
        self.group, self.consumer = group, consumer
        self.claim_idle_ms = int(claim_idle_seconds * 1000)
        self.max_len = max_len
        self.block_ms = block_ms
        self._own_pending = True  # read what this consumer holds from before, first
        self._next_claim = 0.0
        # where the next XAUTOCLAIM goes on scanning the group's pending entries: each call scans
        # at most 10 × count of them, so one that always began at 0-0 never reached idle entries
        # behind that many live ones (other consumers' batches in hand)
        self._claim_from: Any = "0-0"
        self._joined = False
        # The newest entry this consumer knows the group has been given, by its ID and a digest of
        # its event: the group's last-delivered entry when the consumer joined, then each it read.
        # A group lost is made again after it if the stream still holds that very entry.
        self._last: tuple[tuple[int, int], bytes] | None = None

    async def start(self) -> None:
        """The consumer group, made (with the stream) if it is not there: from the stream's start."""
        await self._make_group("0")
        group = await self._own_group()
        delivered = group.get("last-delivered-id", b"0-0") if group is not None else b"0-0"
        if _entry_id(delivered) != (0, 0):
            found = await self.client.xrange(self.input, min=delivered, max=delivered, count=1)
            if found:
                self._last = (_entry_id(delivered), _digest(found[0][1].get(b"event", b"")))
        self._joined = True

    async def _make_group(self, at: str) -> None:
        """The group, made at ``at`` (with the stream) unless it is there already."""
        import redis.exceptions

        try:
            await self.client.xgroup_create(self.input, self.group, id=at, mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return
            # a Redis out of memory (or read-only) refuses XGROUP CREATE before it looks whether the
            # group is there: a group that is goes on, and its writes wait, as any write does
            if _code(exc) in PASSING and await self._own_group() is not None:
                return
            raise

    async def _own_group(self) -> dict[Any, Any] | None:
        """This consumer's group as XINFO GROUPS describes it; None when it or the stream is gone."""
        import redis.exceptions

        try:
            groups = await self.client.xinfo_groups(self.input)
        except redis.exceptions.ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            return None
        return next((g for g in groups if g.get("name") in (self.group, self.group.encode())), None)

    def advice(self, exc: BaseException) -> str:
        import redis.exceptions as errors

        refused = (
            errors.AuthenticationError
            | errors.AuthorizationError
            | errors.AuthenticationWrongNumberOfArgsError  # a user named to a Redis without ACLs
            | errors.NoPermissionError
        )
        if isinstance(exc, refused) or (isinstance(exc, errors.ResponseError) and _code(exc) in REFUSED):
            return f"check the user and password in {self.url_given_as}, and what that user may do (ACL)"
        if isinstance(exc, errors.ResponseError) and "WRONGTYPE" in str(exc):
            return f"the key {self.input!r} holds no stream: name another --input, or delete it"
        return f"is Redis running there, and is {self.url_given_as} right?"

    async def close(self) -> None:
        """Leave the group unless this consumer holds entries (a batch not acknowledged: read again
        by it, restarted under its name, or claimed by another), then close the connections. A
        consumer left behind stays in the group for good (XINFO CONSUMERS), one more for every run
        under the default name (host and process id)."""
        if self._joined:
            try:
                await asyncio.wait_for(self._leave(), LEAVE_SECONDS)
            except Exception as exc:  # Redis away: it stays listed, holding nothing
                log.debug("%s did not leave the group %s: %s", self.consumer, self.group, exc)
        await self.client.aclose()

    async def _leave(self) -> None:
        held = await self.client.xpending_range(
            self.input, self.group, min="-", max="+", count=1, consumername=self.consumer
        )
        if not held:
            await self.client.xgroup_delconsumer(self.input, self.group, self.consumer)

    def transient(self, exc: BaseException) -> bool:
        import redis.exceptions

        if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
            return False  # a refused password stays refused
        if isinstance(exc, redis.exceptions.ResponseError) and _code(exc) in PASSING:
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
            entries = await self._read(count)
        except redis.exceptions.ResponseError as exc:
            if _code(exc) not in LOST:
                raise
        except Exception:
            # the answer may have been lost on the way with entries Redis now counts as this
            # consumer's: the next read starts with them (else they wait for a claim)
            self._own_pending = True
            raise
        else:
            if entries:
                newest = max(entries, key=lambda entry: _entry_id(entry.id))
                if self._last is None or _entry_id(newest.id) > self._last[0]:
                    self._last = (_entry_id(newest.id), _digest(newest.raw))
            return entries
        # Redis came back without its data (no persistence), the stream was deleted, or the group
        # destroyed: the stream and the group are made again. Where the stream still holds the
        # newest entry the group was given (its ID and its event), after it: not again what was
        # scored. Else the stream is not the one read (written anew, its IDs from 0, or from a
        # clock behind, even the same IDs again), or that entry was trimmed: from its start, every
        # entry it holds (some, maybe, written twice; none lost). At the stream's end ($), entries
        # written between Redis's return and this read were never scored.
        at = await self._resume_at()
        await self._make_group(at)
        log.warning(
            "the consumer group %s of %s is gone from %s: made again %s",
            self.group,
            self.input,
            self.where,
            "from the stream's start" if at == "0" else f"after entry {at}",
        )
        return []

    async def _resume_at(self) -> str:
        """Where a lost group is made again: after the newest entry it was given, if the stream
        still holds that very entry; else "0"."""
        if self._last is None:
            return "0"
        (milliseconds, sequence), digest = self._last
        at = f"{milliseconds}-{sequence}"
        found = await self.client.xrange(self.input, min=at, max=at, count=1)  # [] without a stream
        return at if found and _digest(found[0][1].get(b"event", b"")) == digest else "0"

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
                self.input,
                self.group,
                self.consumer,
                self.claim_idle_ms,
                start_id=self._claim_from,
                count=count,
            )
            self._claim_from = claimed[0]  # 0-0 once the scan went round
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
            event = loads(raw.removeprefix(UTF8_BOM))  # a producer's byte order mark, as files
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
            _command, marker, reason = str(exc).partition(PIPELINE)
            if marker:
                exc.args = (f"{WRITE}: {reason}",)
            raise

    async def commit(self, entries: Sequence[Entry]) -> None:
        await self.client.xack(self.input, self.group, *[entry.id for entry in entries])

    async def lag(self) -> int | None:
        group = await self._own_group()  # None: the stream deleted since the read, made again by the next
        lag = group.get("lag") if group is not None else None
        return int(lag) if lag is not None else None
