"""Typed keys of the app's state, all in one place."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from scorer.detector import Detector
from scorer.service.batcher import MicroBatcher
from scorer.service.cache import EmbeddingCache
from scorer.service.metrics import Metrics
from scorer.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)


@dataclass
class Serving:
    """What serves now; replaced as a whole on reload (the app's own state is frozen once started)."""

    detector: Detector
    challenger: Detector | None = None


SERVING = web.AppKey("serving", Serving)
BATCHER = web.AppKey("batcher", MicroBatcher)
METRICS = web.AppKey("metrics", Metrics)
CACHE = web.AppKey("cache", EmbeddingCache)
