"""Two-tier embedding cache: an in-process LRU in front of Redis.

Keys are the model version and a digest of the whole encoded feature row, so two events that
differ in any input (bytes, duration …) never share an embedding, and a new model never reads an
old model's embeddings. Redis is optional and never in the way: when it fails or is slow, the
cache answers from the local tier, reports itself degraded, and a background probe tries Redis
again every second until it answers; no request fails because of Redis.

A request's Redis call is held to the per-call budget (``OCSF_ANOMALY_REDIS_TIMEOUT_MS``). Opening
a connection (TCP, TLS, the client's handshake) is not a request's to pay: it happens at start and
in the probe, within ``connection_seconds``, so a TLS handshake on a busy host cannot make a healthy
Redis look degraded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from scorer.errors import without_credentials
from scorer.service.metrics import Metrics

log = logging.getLogger("ocsf_anomaly.cache")
RETRY_SECONDS = 1.0  # after a Redis failure, local tier only until a probe this often succeeds
CONNECT_SECONDS = 2.0  # for the start-up connection and each probe: connect, TLS, handshake, PING


def connection_seconds(per_call: float) -> float:
    """How long opening a connection (and the client's socket) may take: CONNECT_SECONDS, or the
    per-call budget when that is longer."""
    return max(CONNECT_SECONDS, per_call)


def refusal(exc: BaseException) -> str:
    """A Redis error reply as its class and Redis's text, without the command: redis-py's message
    for a pipeline quotes it ("Command # 1 (SET key <the embedding's bytes>) of pipeline caused
    error: ...")."""
    text = str(exc)
    _, quoted, reply = text.partition(" of pipeline caused error: ")
    return f"{type(exc).__name__}: {reply if quoted else text}"


class EmbeddingCache:
    """``get_many`` / ``put_many`` of embeddings (bytes) by key, on the event loop; the local tier
    alone (``get_local`` / ``put_local``) from any thread."""

    def __init__(
        self,
        *,
        local_items: int,
        metrics: Metrics,
        redis: Any = None,
        ttl_seconds: int = 86_400,
        timeout_seconds: float = 0.05,
    ) -> None:
        self._local: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()  # the local tier: the loop and the scoring threads use it
        self._local_items = local_items
        self._redis = redis
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._metrics = metrics
        self.degraded = False
        self._refusing = False  # the last write was refused by Redis (an error reply)
        self._probe: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        metrics.redis_degraded.set(0)

    @property
    def redis(self) -> Any:
        """The Redis client (None without a URL), for other state the serving processes share."""
        return self._redis

    @property
    def status(self) -> str:
        if self._redis is None:
            return "disabled"
        return "degraded" if self.degraded else "ok"

    @property
    def remote(self) -> bool:
        """Whether a lookup asks Redis (configured and not degraded) or only the local tier."""
        return self._redis is not None and not self.degraded

    def put_local(self, items: dict[str, bytes]) -> None:
        """Store in the local tier."""
        with self._lock:
            for key, value in items.items():
                self._local[key] = value
                self._local.move_to_end(key)
            while len(self._local) > self._local_items:
                self._local.popitem(last=False)

    def get_local(self, keys: Sequence[str]) -> list[bytes | None]:
        """What the local tier holds for each key (None where it holds nothing)."""
        found: list[bytes | None] = []
        with self._lock:
            for key in keys:
                value = self._local.get(key)
                if value is not None:
                    self._local.move_to_end(key)
                found.append(value)
        hits = sum(v is not None for v in found)
        self._metrics.labelled(self._metrics.cache_lookups, "local", "hit").inc(hits)
        self._metrics.labelled(self._metrics.cache_lookups, "local", "miss").inc(len(keys) - hits)
        return found

    async def connect(self) -> None:
        """Open the first connection at start, with time for the handshake: degraded if it fails."""
        if self._redis is None:
            return
        try:
            await self._ping()
        except Exception as exc:  # Redis down at start: serve from the local tier, probe for it
            self._failed(exc)

    async def _ping(self) -> None:
        """A PING, given the time to open a connection if none is open."""
        async with asyncio.timeout(connection_seconds(self._timeout)):
            await self._redis.ping()

    def _failed(self, exc: BaseException, budget: float | None = None) -> None:
        """Degraded: said once (with the ``budget`` in seconds the call missed, for a timeout)."""
        if not self.degraded:
            # the cause too: a wrong CA file, a host that does not resolve and a database out of
            # range all read "ConnectionError" alone
            said = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if _timed_out(exc) and budget is not None:  # a busy host, or a slow Redis
                said += (
                    f"; no answer within {budget * 1000:g} ms (OCSF_ANOMALY_REDIS_TIMEOUT_MS, 4 times it for "
                    "a write): a busy host can take that long, raise it if this comes and goes under load"
                )
            log.warning(
                "redis unavailable (%s): scoring from the local cache tier", without_credentials(said)
            )
        self.degraded = True
        self._metrics.redis_degraded.set(1)
        self._metrics.redis_errors.inc()
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._until_back())

    async def _until_back(self) -> None:
        while True:
            await asyncio.sleep(RETRY_SECONDS)
            try:
                await self._ping()
            except Exception:  # still away: keep serving from the local tier
                self._metrics.redis_errors.inc()
                continue
            self._probe = None
            self._recovered()
            return

    def _recovered(self) -> None:
        if self.degraded:
            log.warning("redis is back")
        self.degraded = False
        self._metrics.redis_degraded.set(0)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = self.get_local(keys)
        missing = [i for i, v in enumerate(found) if v is None]
        if not missing or not self.remote:
            return found
        try:
            async with asyncio.timeout(self._timeout):
                values = await self._redis.mget([keys[i] for i in missing])
        except Exception as exc:  # any Redis failure (connection, timeout, protocol) degrades, never fails
            self._failed(exc, self._timeout)
            return found
        fetched: dict[str, bytes] = {}
        for i, value in zip(missing, values, strict=True):
            if value is not None:
                found[i] = fetched[keys[i]] = value
        self.put_local(fetched)
        redis_hits = len(fetched)
        self._metrics.labelled(self._metrics.cache_lookups, "redis", "hit").inc(redis_hits)
        self._metrics.labelled(self._metrics.cache_lookups, "redis", "miss").inc(len(missing) - redis_hits)
        return found

    def put_many(self, items: dict[str, bytes]) -> None:
        """Store locally now and in Redis in the background (pipelined SET … EX), never blocking."""
        self.put_local(items)
        if items and self.remote:
            task = asyncio.get_running_loop().create_task(self._write(items))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, items: dict[str, bytes]) -> None:
        from redis.exceptions import ResponseError

        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(key, value, ex=self._ttl)
            async with asyncio.timeout(self._timeout * 4):
                await pipe.execute()
        except ResponseError as exc:
            # Redis answered, and refused to store (full under noeviction, a read-only replica after
            # a failover): lookups go on. Degrading for it made the probe's PING succeed and the next
            # write fail again, two warnings a second and lookups skipped half the time.
            self._metrics.redis_errors.inc()
            if not self._refusing:
                log.warning(
                    "redis refuses to store embeddings (%s): lookups go on, embeddings are not stored "
                    "there until it takes them",
                    refusal(exc),
                )
            self._refusing = True
        except Exception as exc:  # a failed write only costs a future hit
            self._failed(exc, self._timeout * 4)
        else:
            if self._refusing:
                log.warning("redis stores embeddings again")
            self._refusing = False

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()


def _timed_out(exc: BaseException) -> bool:
    """A timeout, asyncio's (the per-call budget) or redis-py's own (its socket's)."""
    from redis.exceptions import TimeoutError as RedisTimeout

    return isinstance(exc, TimeoutError | RedisTimeout)
