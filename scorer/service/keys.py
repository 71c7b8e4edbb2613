"""Typed keys of the app's state, all in one place."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from scorer.alerts import Alerter
from scorer.service.batcher import MicroBatcher
from scorer.service.cache import EmbeddingCache
from scorer.service.metrics import Metrics
from scorer.service.models import Loaded, ModelRef, ModelSource
from scorer.service.requests import BodyBudget
from scorer.settings import Settings

if TYPE_CHECKING:  # vector.py imports these keys
    from scorer.service.vector import VectorHop

SETTINGS = web.AppKey("settings", Settings)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)


@dataclass
class Serving:
    """What serves now; its fields are replaced together on reload (the app's state is frozen once
    started, so this holder is what changes)."""

    champion: Loaded
    challenger: Loaded | None = None

    def loaded(self) -> dict[str, Loaded]:
        """The serving models by alias: champion, and challenger when there is one."""
        out = {"champion": self.champion}
        if self.challenger is not None:
            out["challenger"] = self.challenger
        return out

    def refs(self) -> dict[str, ModelRef]:
        return {alias: loaded.ref for alias, loaded in self.loaded().items()}

    def smallest_alpha(self, *, challenger_answers: bool) -> float:
        """The smallest alpha at which every model that answers can flag an event (1 / (n + 1) of
        its calibration): below it, every verdict would be "normal". The challenger's counts only
        where it answers (a split, not shadow): a candidate scored in shadow, or set as challenger
        with no split, refused every client's ?alpha= below its floor."""
        answering = [self.champion] + ([self.challenger] if self.challenger and challenger_answers else [])
        return max(loaded.detector.calibration.smallest_alpha for loaded in answering)

    def versions(self) -> dict[str, str | None]:
        challenger = self.challenger.ref.version if self.challenger is not None else None
        return {"champion": self.champion.ref.version, "challenger": challenger}


@dataclass
class Refreshes:
    """What the refreshes nobody waits for (the poll, a signal) last failed with, until one succeeds:
    a failure is logged when it starts or changes, not at every poll. And the models that could not
    be loaded, with why and when (``time.monotonic``): the poll does not fetch one of them again for
    a while (a registry version's bundle can be hundreds of megabytes), a reload asked for does."""

    failing: str | None = None
    refused: dict[ModelRef, tuple[str, float]] = field(default_factory=dict)


SERVING = web.AppKey("serving", Serving)
REFRESHES = web.AppKey("refreshes", Refreshes)
SOURCE = web.AppKey("source", ModelSource)
RELOADING = web.AppKey("reloading", asyncio.Lock)
PARSING = web.AppKey("parsing", asyncio.Lock)
BODIES = web.AppKey("bodies", BodyBudget)
BATCHER = web.AppKey("batcher", MicroBatcher)
METRICS = web.AppKey("metrics", Metrics)
CACHE = web.AppKey("cache", EmbeddingCache)
VECTOR: web.AppKey[VectorHop] = web.AppKey("vector")
ALERTER: web.AppKey[Alerter | None] = web.AppKey("alerter")
# set in a serving process under a supervisor: tells it that this process reloaded, so that the others do
ANNOUNCE_RELOAD: web.AppKey[Callable[[], None]] = web.AppKey("announce_reload")
# … and, for POST /v1/models/reload, tells them and waits until they have asked the source again
# (at most workers.RELOAD_WAIT_SECONDS): how many processes serve, and how many of them what this one does
SYNC_RELOAD: web.AppKey[Callable[[], Awaitable[tuple[int, int]]]] = web.AppKey("sync_reload")
