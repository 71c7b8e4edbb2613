"""Scoring a batch for the service: :class:`Scorer` runs one model's pipeline (the engine's two calls
in the scoring threads, the embedding cache between them); :class:`Router` sends each event to the
champion or the challenger, or shadows the champion with the challenger."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from scorer.alerts import Alerter
from scorer.detector import Prepared
from scorer.errors import log_unexpected
from scorer.features.encoder import compile_getter, stable_bucket
from scorer.service.cache import EmbeddingCache
from scorer.service.metrics import Metrics
from scorer.service.models import Loaded

log = logging.getLogger("ocsf_anomaly.service")
T = TypeVar("T")
# Shadow scoring takes what capacity is left over: a batch is shadowed only while no other
# request's events wait or are being scored and no shadow batch runs, in a thread of its own (never
# on the event loop, nor in the scoring threads, where the next answer would wait behind it); the
# others are counted (ocsf_anomaly_shadow_verdicts_total{agreement="skipped"}). A request that comes
# while a shadow batch runs still shares the CPU with it (Python threads have no priorities):
# BENCHMARKS.md measures what that costs a client that sends one request at a time.


class Router:
    """Champion and challenger: an entity always meets the same variant (a stable hash of its key
    against the split), or, in shadow mode, the champion answers and the challenger's verdicts are
    only compared with it, in the background."""

    def __init__(
        self,
        champion: Scorer,
        challenger: Scorer | None,
        *,
        split: float,
        shadow: bool,
        entity_key: str,
        metrics: Metrics,
        alerter: Alerter | None = None,
        busy: Callable[[int], bool] = lambda answered: False,
    ) -> None:
        """``busy(n)``: whether events other than the ``n`` being answered wait or are being scored."""
        self.champion = champion
        self.challenger = challenger
        self.split = split if challenger is not None and not shadow else 0.0
        self.shadow = shadow and challenger is not None
        self.entity = compile_getter(entity_key)
        self.metrics = metrics
        self.alerter = alerter
        self.busy = busy
        self._shadows: set[asyncio.Task[None]] = set()
        self._closed = False

    def variant(self, event: dict[str, Any]) -> str:
        if self.split <= 0:
            return "champion"
        value = self.entity(event)
        key = value if isinstance(value, str) else _entity_text(value if value is not None else event)
        return "challenger" if stable_bucket(key, 10_000) < self.split * 10_000 else "champion"

    async def __call__(self, events: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
        """The answers for ``events`` (each the variant's that answers for it); the alerter, if any,
        is offered each event with its answer (it queues and returns at once)."""
        answers = await self._answers(events, alpha)
        if self.alerter is not None:
            self.alerter.offer_many(events, answers)
        return answers

    async def _answers(self, events: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
        if self.challenger is None:
            return await self.champion(events, alpha)
        if self.shadow:
            answers = await self.champion(events, alpha)
            if not self._shadows and not self._closed and not self.busy(len(events)):
                task = asyncio.get_running_loop().create_task(self._compare(events, alpha, answers))
                self._shadows.add(task)
                task.add_done_callback(self._shadows.discard)
            else:
                self.metrics.shadow_verdicts.labels("skipped").inc(len(events))
            return answers
        routes = [self.variant(e) for e in events]
        picked = {name: [i for i, r in enumerate(routes) if r == name] for name in ("champion", "challenger")}
        scorers = {"champion": self.champion, "challenger": self.challenger}
        names = [name for name, rows in picked.items() if rows]
        parts = await asyncio.gather(*[scorers[n]([events[i] for i in picked[n]], alpha) for n in names])
        out: list[dict[str, Any]] = [{} for _ in events]
        for name, part in zip(names, parts, strict=True):
            for i, answer in zip(picked[name], part, strict=True):
                out[i] = answer
        return out

    async def _compare(
        self, events: list[dict[str, Any]], alpha: float, answers: list[dict[str, Any]]
    ) -> None:
        assert self.challenger is not None
        try:
            shadow = await self.challenger(events, alpha, inline=False)
        except Exception as exc:  # a failing challenger must not disturb the champion's service
            log_unexpected(log, exc, "shadow scoring failed")
            return
        agree = sum(a.get("is_anomaly") == b.get("is_anomaly") for a, b in zip(answers, shadow, strict=True))
        self.metrics.shadow_verdicts.labels("agree").inc(agree)
        self.metrics.shadow_verdicts.labels("disagree").inc(len(events) - agree)

    async def close(self) -> None:
        self._closed = True  # a batch still in flight on this router starts no shadow now
        if self._shadows:
            await asyncio.gather(*self._shadows, return_exceptions=True)
        if self.challenger is not None and self.shadow:
            self.challenger.executor.shutdown(wait=False)  # its own thread (lifecycle._router): idle now


def _entity_text(value: Any) -> str:
    """A JSON value as text that is the same in every process: with sorted keys; an integer beyond
    64 bits (which orjson refuses) through the standard library; a value nested deeper than either
    writes, as one shared key. Never raises: routing one event must not fail the batch it joined."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        try:
            return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        except (RecursionError, ValueError, TypeError):
            return "\x00unwritable"


class Scorer:
    """One batch through the engine's pipeline: prepare, look the embeddings up in the cache, finish.

    The engine's two calls run in the executor, and the cache's Redis I/O on the event loop
    between them; without Redis to ask (none configured, or degraded) the whole pipeline, the local
    cache tier included, is one executor call (the micro-batcher runs at most as many batches as
    there are threads: none waits for one). A batch of one event is scored on the event loop itself: about
    half a millisecond, less than waking a scoring thread and the loop again costs on this kind of
    host (BENCHMARKS.md → "Service").
    """

    def __init__(
        self,
        loaded: Loaded,
        metrics: Metrics,
        cache: EmbeddingCache,
        executor: ThreadPoolExecutor,
        *,
        variant: str,
        shadow: bool = False,
    ) -> None:
        """``shadow``: its answers are compared, never returned (the challenger in shadow mode)."""
        self.detector = loaded.detector
        self.metrics = metrics
        self.cache = cache
        self.executor = executor
        self.variant = variant
        self.shadow = shadow
        self.identity = loaded.ref.info()  # name, version, bundle_version: what the metrics' windows follow
        self.model = {"name": loaded.ref.name, "version": loaded.ref.version, "variant": variant}
        self.foreign = loaded.foreign

    async def __call__(
        self, events: list[dict[str, Any]], alpha: float, *, inline: bool | None = None
    ) -> list[dict[str, Any]]:
        """The anomaly objects of ``events``; a batch of one on the event loop unless ``inline`` says."""
        inline = len(events) == 1 if inline is None else inline
        if not self.cache.remote:  # nothing to ask over the network: one trip to a scoring thread
            return await self._run(self._whole, events, alpha, inline=inline)
        prepared = await self._run(self.detector.prepare, events, keys=True, inline=inline)
        cached = None
        if prepared.keys:
            started = time.perf_counter()
            cached = await self.cache.get_many(prepared.keys)
            prepared.seconds["cache"] = time.perf_counter() - started
        anomalies, fresh = await self._run(self._finish, prepared, cached, alpha, inline=inline)
        self.cache.put_many(fresh)
        return anomalies

    async def _run(self, function: Callable[..., T], *args: Any, inline: bool = False, **kwargs: Any) -> T:
        """``function`` in the executor (or here, ``inline``)."""
        if inline:
            return function(*args, **kwargs)
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _whole(self, events: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
        """The pipeline with the local cache tier alone, in one call."""
        prepared = self.detector.prepare(events, keys=True)
        cached = None
        if prepared.keys:
            started = time.perf_counter()
            cached = self.cache.get_local(prepared.keys)
            prepared.seconds["cache"] = time.perf_counter() - started
        anomalies, fresh = self._finish(prepared, cached, alpha)
        self.cache.put_local(fresh)
        return anomalies

    def _finish(
        self, prepared: Prepared, cached: list[bytes | None] | None, alpha: float
    ) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        result, fresh = self.detector.finish(prepared, cached, alpha=alpha)
        if not self.shadow:
            self.foreign.look(prepared, result)
        self.metrics.observe_batch(
            result, self.variant, self.detector.calibration, answered=not self.shadow, model=self.identity
        )
        return [result.anomaly(i, self.model) for i in range(len(result))], fresh
