"""The service's resources, each a cleanup context that starts with the app and stops with it: the
scoring threads, the served models (loaded, refreshed on reload and by polling, swapped atomically),
the embedding cache and the micro-batcher that feeds the champion/challenger router."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from scorer import bundle
from scorer.alerts import Alerter, config_from
from scorer.errors import origin
from scorer.registry import RegistryError
from scorer.service.batcher import MicroBatcher
from scorer.service.cache import EmbeddingCache, connection_seconds
from scorer.service.keys import (
    ALERTER,
    ANNOUNCE_RELOAD,
    BATCHER,
    CACHE,
    EXECUTOR,
    METRICS,
    REFRESHES,
    RELOADING,
    SERVING,
    SETTINGS,
    SOURCE,
    Refreshes,
    Serving,
)
from scorer.service.models import Loaded, ModelRef, source_for
from scorer.service.scoring import Router, Scorer
from scorer.threads import set_threads

log = logging.getLogger("ocsf_anomaly.service")
REFUSED_KEPT = 16  # models remembered as not loadable (the oldest forgotten first) …
REFUSED_SECONDS = 600.0  # … and not fetched again by the poll for this long (a failed download may pass)


class ChallengerRefused(bundle.BundleError):
    """The champion loaded and the challenger did not: ``serving`` is the champion alone, which
    serves (a broken candidate must never hold back a promotion or a rollback of the champion)."""

    def __init__(self, message: str, serving: Serving) -> None:
        super().__init__(message)
        self.serving = serving


async def executor_ctx(app: web.Application) -> AsyncIterator[None]:
    """The threads that run the model and the index (numpy and faiss release the GIL)."""
    set_threads(1)  # one thread per call: parallelism comes from the pool, not from fighting OpenMP teams
    # OpenMP's thread count is per thread: each worker sets its own, or faiss starts a team per call
    executor = ThreadPoolExecutor(
        app[SETTINGS].threads, thread_name_prefix="scorer", initializer=set_threads, initargs=(1,)
    )
    app[EXECUTOR] = executor
    yield
    executor.shutdown(wait=True, cancel_futures=True)


async def model_ctx(app: web.Application) -> AsyncIterator[None]:
    """The model source (the registry, or bundle directories) and what it says serves."""
    # registry calls and bundle loads run on the loop's default executor, never on the scoring
    # threads: a registry that is slow to answer must not take a scoring thread with it
    app[SOURCE] = await asyncio.get_running_loop().run_in_executor(None, source_for, app[SETTINGS])
    app[RELOADING] = asyncio.Lock()
    app[REFRESHES] = Refreshes()
    refs = await _resolve(app)
    _freeze_imports()
    try:
        app[SERVING] = await _load(app, refs, None)
    except ChallengerRefused as refused:
        log.warning("%s", refused)
        app[SERVING] = refused.serving
    _announce(app)
    yield


def _freeze_imports() -> None:
    """Put every object alive now out of the cyclic collector's reach (gc.freeze): the imported
    modules, about 290,000 objects, whose full collection took 0.34 s, a pause for every request in
    flight, whenever it came. Called before the first model loads, so that models stay collectable
    (one swapped out is freed); they are about 1,000 objects."""
    gc.collect()
    gc.freeze()


async def _resolve(app: web.Application) -> dict[str, ModelRef]:
    """What should serve, asked off the event loop (the registry may be a server)."""
    refs = await asyncio.get_running_loop().run_in_executor(None, app[SOURCE].resolve)
    if refs.get("challenger") == refs["champion"]:
        del refs["challenger"]  # a version compared with itself tells nothing
    return refs


async def _load(
    app: web.Application, refs: dict[str, ModelRef], current: Serving | None, *, again: bool = True
) -> Serving:
    """Load what ``refs`` names beside what serves; a model that did not change is kept, not reloaded.
    A model that could not be loaded lately is not fetched again unless ``again``: its error is.
    Raises ChallengerRefused, holding the champion alone, when only the challenger fails."""
    serving = [current.champion, current.challenger] if current is not None else []
    kept = {model.ref: model for model in serving if model is not None}
    champion = await _load_one(app, refs["champion"], kept, again)
    challenger = refs.get("challenger")
    if challenger is None:
        return Serving(champion)
    try:
        return Serving(champion, await _load_one(app, challenger, kept, again))
    except (bundle.BundleError, RegistryError) as exc:
        raise ChallengerRefused(
            f"the challenger {challenger.source} was not loaded, so the champion serves alone: {exc}",
            Serving(champion),
        ) from None


async def _load_one(app: web.Application, ref: ModelRef, kept: dict[ModelRef, Loaded], again: bool) -> Loaded:
    """The model ``ref`` names: kept if it serves, else loaded (or refused, as lately, unless ``again``)."""
    if ref in kept:
        return kept[ref]
    refused = app[REFRESHES].refused
    known = refused.get(ref)
    if not again and known is not None and time.monotonic() - known[1] < REFUSED_SECONDS:
        raise bundle.BundleError(known[0])
    try:
        loaded = await asyncio.get_running_loop().run_in_executor(None, app[SOURCE].load, ref)
    except bundle.BundleError as exc:
        refused.pop(ref, None)
        refused[ref] = (str(exc), time.monotonic())
        while len(refused) > REFUSED_KEPT:
            del refused[next(iter(refused))]
        raise
    refused.pop(ref, None)
    return loaded


async def refresh_models(
    app: web.Application, *, again: bool = True
) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Ask the source what should serve; if that changed, load it beside the serving models and
    swap atomically (a request is scored wholly by the old models or wholly by the new). Returns
    the versions before and after; raises BundleError or RegistryError and keeps serving. Only the
    challenger failing does not keep the champion out: the champion is swapped in, alone, and
    ChallengerRefused raised. Without ``again`` (the poll), a model that could not be loaded in
    the last REFUSED_SECONDS fails as it did, unfetched."""
    async with app[RELOADING]:
        serving = app[SERVING]
        before = serving.versions()
        refused: ChallengerRefused | None = None
        try:
            refs = await _resolve(app)
            if refs == serving.refs():
                app[METRICS].model_reloads.labels("unchanged").inc()
                return before, before
            try:
                new = await _load(app, refs, serving, again=again)
            except ChallengerRefused as exc:
                new, refused = exc.serving, exc
        except (bundle.BundleError, RegistryError):
            app[METRICS].model_reloads.labels("failed").inc()
            raise
        if new.refs() != serving.refs():
            serving.champion, serving.challenger = new.champion, new.challenger
            app[BATCHER].swap(_router(app))
            app[METRICS].model_reloads.labels("swapped").inc()
            _announce(app)
            log.info("models swapped: %s → %s", before, serving.versions())
        if refused is not None:
            app[METRICS].model_reloads.labels("failed").inc()
            raise refused
        return before, serving.versions()


def _announce(app: web.Application) -> None:
    serving = app[SERVING].loaded()
    app[METRICS].set_models({alias: loaded.ref.info() for alias, loaded in serving.items()})
    for alias, loaded in serving.items():
        ref = loaded.ref
        log.info("serving %s: %s (bundle %s)", alias, ref.source, ref.bundle_version)
        if (why := loaded.detector.cannot_flag(app[SETTINGS].alpha)) is not None:
            log.warning("the %s: %s", alias, why)


async def watch_ctx(app: web.Application) -> AsyncIterator[None]:
    """Poll the source every ``model_poll_seconds`` and swap in what changed (0: never)."""
    period = app[SETTINGS].model_poll_seconds
    task = asyncio.get_running_loop().create_task(_watch(app, period)) if period > 0 else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _watch(app: web.Application, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        if await refresh_logged(app, again=False) and ANNOUNCE_RELOAD in app:
            # the other serving processes poll on their own clocks: told now, they swap within
            # moments instead of serving the old version for up to a period more
            app[ANNOUNCE_RELOAD]()


async def refresh_logged(app: web.Application, *, again: bool = True) -> bool:
    """refresh_models for a caller with nobody to answer (the poll, a signal, another process's
    reload): failures are logged, once until they change or pass (a registry down for an hour is
    one warning, not one per poll; ``ocsf_anomaly_model_reloads_total{result="failed"}`` counts
    every one). True if the served models changed (a champion swapped in alone, its challenger
    refused, too)."""
    refreshes = app[REFRESHES]
    before = app[SERVING].versions()
    try:
        await refresh_models(app, again=again)
    except (bundle.BundleError, RegistryError) as exc:
        if str(exc) != refreshes.failing:
            log.warning("serving %s: %s (logged again when this changes)", app[SERVING].versions(), exc)
        refreshes.failing = str(exc)
    except Exception as exc:  # the poll must outlive any one failure
        if repr(exc) != refreshes.failing:
            log.exception("model refresh failed")
        refreshes.failing = repr(exc)
    else:
        if refreshes.failing is not None:
            log.info("the model source answers again (it failed: %s)", refreshes.failing)
            refreshes.failing = None
    return app[SERVING].versions() != before


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The embedding cache: in-process, plus Redis when a URL is configured (never one found by chance)."""
    settings = app[SETTINGS]
    client = None
    if settings.redis_url:
        import redis.asyncio

        # each call is held to the per-call budget by the cache; the socket's own limits are the
        # connection's, which a handshake must fit in (and never shorter than that budget)
        limit = connection_seconds(settings.redis_timeout_ms / 1000)
        client = redis.asyncio.from_url(
            settings.redis_url, socket_timeout=limit, socket_connect_timeout=limit
        )
    cache = EmbeddingCache(
        local_items=settings.cache_items,
        metrics=app[METRICS],
        redis=client,
        ttl_seconds=settings.cache_ttl_seconds,
        timeout_seconds=settings.redis_timeout_ms / 1000,
    )
    await cache.connect()
    app[CACHE] = cache
    yield
    await cache.close()


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """The alerter the settings ask for (``OCSF_ANOMALY_ALERTS_URL``), or none. Started before the
    batcher and closed after it, so that the last batches' alerts are still sent."""
    config = config_from(app[SETTINGS])
    if config is None:
        app[ALERTER] = None
        yield
        return
    alerter = app[ALERTER] = Alerter(config, app[METRICS].alerts)
    await alerter.start()
    log.info("alerts at p-value <= %g to %s (%s)", config.p_value, origin(config.url), config.kind)
    yield
    await alerter.close()


async def batcher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    batcher = MicroBatcher(
        _router(app),
        max_size=settings.batch_max_size,
        max_wait_us=settings.batch_max_wait_us,
        concurrency=settings.threads,
        max_pending=settings.max_pending_events,
        observe_wait=app[METRICS].queue_wait.observe,
    )
    await batcher.start()
    app[BATCHER] = batcher
    yield
    await batcher.stop()
    await batcher.run_closing()


def _router(app: web.Application) -> Router:
    settings, serving = app[SETTINGS], app[SERVING]
    resources = (app[METRICS], app[CACHE], app[EXECUTOR])
    challenger = None
    if serving.challenger is not None and settings.shadow:  # a thread of its own, shut down with the router
        shadow_thread = ThreadPoolExecutor(1, thread_name_prefix="shadow")
        challenger = Scorer(
            serving.challenger, *resources[:2], shadow_thread, variant="challenger", shadow=True
        )
    elif serving.challenger is not None:
        challenger = Scorer(serving.challenger, *resources, variant="challenger")
    return Router(
        Scorer(serving.champion, *resources, variant="champion"),
        challenger,
        split=settings.challenger_split,
        shadow=settings.shadow,
        entity_key=settings.entity_key,
        metrics=app[METRICS],
        alerter=app[ALERTER],
        busy=lambda answered: app[BATCHER].pending > answered,  # the batcher is set before a request
    )
