"""The aiohttp app: factory, one cleanup context per resource, thin handlers over the engine."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from scorer import bundle
from scorer.detector import Prepared
from scorer.features.encoder import compile_getter, stable_bucket
from scorer.registry import RegistryError, configure_mlflow
from scorer.service.batcher import MicroBatcher
from scorer.service.cache import EmbeddingCache
from scorer.service.errors import ApiError, Handler, error_middleware
from scorer.service.keys import (
    BATCHER,
    CACHE,
    EXECUTOR,
    METRICS,
    PARSING,
    RELOADING,
    SERVING,
    SETTINGS,
    SOURCE,
    Serving,
)
from scorer.service.metrics import CONTENT_TYPE, Metrics
from scorer.service.models import Loaded, ModelRef, source_for
from scorer.service.requests import ENCODINGS, Batch, Item, dumps, inflate, parse_body
from scorer.service.schema import openapi
from scorer.settings import Settings, masked
from scorer.threads import set_threads

log = logging.getLogger("ocsf_anomaly.service")
T = TypeVar("T")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
ADMIN_PATHS = frozenset({"/v1/models/reload"})
SHADOW_BACKLOG = 4  # shadow batches allowed to wait; beyond it shadowing skips, never slowing answers
LARGE_BODY = 1024 * 1024  # bytes; a body this large takes the loop milliseconds to parse
FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def create_app(settings: Settings) -> web.Application:
    """The service for ``settings``; resources start with the app and stop with it."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware, auth_middleware],
        # bodies arrive as sent: _read inflates them off the loop, within the body limit (aiohttp
        # would inflate on the loop, and inflate what nobody reads before closing the connection)
        handler_args={"auto_decompress": False, "access_log_class": AccessLog},
    )
    app[SETTINGS] = settings
    if settings.model_dir is None:
        configure_mlflow()
    app[METRICS] = Metrics()
    app[PARSING] = asyncio.Lock()
    app[METRICS].alpha.set(settings.alpha)
    app.cleanup_ctx.extend([executor_ctx, model_ctx, cache_ctx, batcher_ctx, watch_ctx])
    app.router.add_post("/v1/score", score)
    app.router.add_post("/v1/enrich", enrich)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_document)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/models/reload", reload_model)
    if not settings.admin_token and not is_loopback(settings.host):
        log.warning(
            "no OCSF_ANOMALY_ADMIN_TOKEN and listening on %s: admin calls (model reload) will be refused; "
            "set an admin token to allow them",
            settings.host,
        )
    return app


# ---------------------------------------------------------------------- resources
async def executor_ctx(app: web.Application) -> AsyncIterator[None]:
    """The threads that run the model and the index (torch and faiss release the GIL)."""
    set_threads(1)  # one thread per call: parallelism comes from the pool, not from fighting OpenMP teams
    # OpenMP's thread count is per thread: each worker sets its own, or faiss starts a team per call
    executor = ThreadPoolExecutor(
        app[SETTINGS].workers, thread_name_prefix="scorer", initializer=set_threads, initargs=(1,)
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
    app[SERVING] = await _load(app, await _resolve(app), None)
    _announce(app)
    yield


async def _resolve(app: web.Application) -> dict[str, ModelRef]:
    """What should serve, asked off the event loop (the registry may be a server)."""
    refs = await asyncio.get_running_loop().run_in_executor(None, app[SOURCE].resolve)
    if refs.get("challenger") == refs["champion"]:
        del refs["challenger"]  # a version compared with itself tells nothing
    return refs


async def _load(app: web.Application, refs: dict[str, ModelRef], current: Serving | None) -> Serving:
    """Load what ``refs`` names beside what serves; a model that did not change is kept, not reloaded."""
    loop = asyncio.get_running_loop()
    serving = [current.champion, current.challenger] if current is not None else []
    kept = {model.ref: model for model in serving if model is not None}
    loaded: dict[str, Loaded] = {}
    for alias, ref in refs.items():
        if ref in kept:
            loaded[alias] = kept[ref]
        else:
            loaded[alias] = await loop.run_in_executor(None, app[SOURCE].load, ref)
    return Serving(loaded["champion"], loaded.get("challenger"))


async def refresh_models(app: web.Application) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Ask the source what should serve; if that changed, load it beside the serving models and
    swap atomically (a request is scored wholly by the old models or wholly by the new). Returns
    the versions before and after; raises BundleError or RegistryError and keeps serving."""
    async with app[RELOADING]:
        serving = app[SERVING]
        before = _versions(serving)
        try:
            refs = await _resolve(app)
            if refs == serving.refs():
                app[METRICS].model_reloads.labels("unchanged").inc()
                return before, before
            new = await _load(app, refs, serving)
        except (bundle.BundleError, RegistryError):
            app[METRICS].model_reloads.labels("failed").inc()
            raise
        serving.champion, serving.challenger = new.champion, new.challenger
        app[BATCHER].swap(_router(app))
        app[METRICS].model_reloads.labels("swapped").inc()
        _announce(app)
        after = _versions(serving)
        log.info("models swapped: %s → %s", before, after)
        return before, after


def _versions(serving: Serving) -> dict[str, str | None]:
    challenger = serving.challenger.ref.version if serving.challenger is not None else None
    return {"champion": serving.champion.ref.version, "challenger": challenger}


def _announce(app: web.Application) -> None:
    refs = app[SERVING].refs()
    app[METRICS].set_models({alias: ref.info() for alias, ref in refs.items()})
    for alias, ref in refs.items():
        log.info("serving %s: %s (bundle %s)", alias, ref.source, ref.bundle_version)


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
        try:
            await refresh_models(app)
        except (bundle.BundleError, RegistryError) as exc:
            log.warning("kept serving %s: %s", _versions(app[SERVING]), exc)
        except Exception:  # the poll must outlive any one failure
            log.exception("model poll failed")


async def cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The embedding cache: in-process, plus Redis when a URL is configured (never one found by chance)."""
    settings = app[SETTINGS]
    client = None
    if settings.redis_url:
        import redis.asyncio

        timeout = settings.redis_timeout_ms / 1000
        client = redis.asyncio.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    cache = EmbeddingCache(
        local_items=settings.cache_items,
        metrics=app[METRICS],
        redis=client,
        ttl_seconds=settings.cache_ttl_seconds,
        timeout_seconds=settings.redis_timeout_ms / 1000,
    )
    await cache.get_many(["ocsf-anomaly:probe"])  # learn at start whether Redis answers
    app[CACHE] = cache
    yield
    await cache.close()


async def batcher_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    batcher = MicroBatcher(
        _router(app),
        max_size=settings.batch_max_size,
        max_wait_us=settings.batch_max_wait_us,
        concurrency=settings.workers,
        max_pending=settings.max_pending_events,
    )
    await batcher.start()
    app[BATCHER] = batcher
    yield
    await batcher.stop()
    await batcher.run_closing()


def _router(app: web.Application) -> Router:
    settings, serving = app[SETTINGS], app[SERVING]
    resources = (app[METRICS], app[CACHE], app[EXECUTOR])
    challenger = Scorer(serving.challenger, *resources, variant="challenger") if serving.challenger else None
    return Router(
        Scorer(serving.champion, *resources, variant="champion"),
        challenger,
        split=settings.challenger_split,
        shadow=settings.shadow,
        entity_key=settings.entity_key,
        metrics=app[METRICS],
    )


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
    ) -> None:
        self.champion = champion
        self.challenger = challenger
        self.split = split if challenger is not None and not shadow else 0.0
        self.shadow = shadow and challenger is not None
        self.entity = compile_getter(entity_key)
        self.metrics = metrics
        self._shadows: set[asyncio.Task[None]] = set()

    def variant(self, event: dict[str, Any]) -> str:
        if self.split <= 0:
            return "champion"
        value = self.entity(event)
        key = (
            value
            if isinstance(value, str)
            else orjson.dumps(value if value is not None else event, option=orjson.OPT_SORT_KEYS).decode()
        )
        return "challenger" if stable_bucket(key, 10_000) < self.split * 10_000 else "champion"

    async def __call__(self, events: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
        if self.challenger is None:
            return await self.champion(events, alpha)
        if self.shadow:
            answers = await self.champion(events, alpha)
            if len(self._shadows) < SHADOW_BACKLOG:
                task = asyncio.get_running_loop().create_task(self._compare(events, alpha, answers))
                self._shadows.add(task)
                task.add_done_callback(self._shadows.discard)
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
            shadow = await self.challenger(events, alpha)
        except Exception:  # a failing challenger must not disturb the champion's service
            log.exception("shadow scoring failed")
            return
        agree = sum(a.get("is_anomaly") == b.get("is_anomaly") for a, b in zip(answers, shadow, strict=True))
        self.metrics.shadow_verdicts.labels("agree").inc(agree)
        self.metrics.shadow_verdicts.labels("disagree").inc(len(events) - agree)

    async def close(self) -> None:
        if self._shadows:
            await asyncio.gather(*self._shadows, return_exceptions=True)


class Scorer:
    """One batch through the engine's pipeline: prepare, look the embeddings up in the cache, finish.

    The engine's two calls run in the executor; only the cache I/O runs on the event loop. The
    time a call waits for a free executor thread is measured on its own (queue_wait).
    """

    def __init__(
        self,
        loaded: Loaded,
        metrics: Metrics,
        cache: EmbeddingCache,
        executor: ThreadPoolExecutor,
        *,
        variant: str,
    ) -> None:
        self.detector = loaded.detector
        self.metrics = metrics
        self.cache = cache
        self.executor = executor
        self.variant = variant
        self.model = {"name": loaded.ref.name, "version": loaded.ref.version, "variant": variant}

    async def __call__(self, events: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
        prepared = await self._run(self.detector.prepare, events, keys=True)
        cached = None
        if prepared.keys:
            started = time.perf_counter()
            cached = await self.cache.get_many(prepared.keys)
            prepared.seconds["cache"] = time.perf_counter() - started
        anomalies, fresh = await self._run(self._finish, prepared, cached, alpha)
        self.cache.put_many(fresh)
        return anomalies

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function`` in the executor; the wait for a thread is observed as queue_wait."""
        submitted = time.perf_counter()

        def timed() -> T:
            self.metrics.queue_wait.observe(time.perf_counter() - submitted)
            return function(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self.executor, timed)

    def _finish(
        self, prepared: Prepared, cached: list[bytes | None] | None, alpha: float
    ) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        result, fresh = self.detector.finish(prepared, cached, alpha=alpha)
        self.metrics.observe_batch(result, self.variant)
        return [result.anomaly(i, self.model) for i in range(len(result))], fresh


# ---------------------------------------------------------------------- middlewares
@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency of every request by route (its pattern, never the raw path) and status; a handler
    cancelled because the client went away counts as 499, not as a server error."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as http:
        status = http.status
        raise
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[METRICS].request_seconds.labels(name, request.method, str(status)).observe(
            time.perf_counter() - started
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer tokens, compared in constant time: the API token on scoring calls when set; the admin
    token on admin calls, which without one are accepted only while the service listens on loopback,
    and then need the API token when one is set (an admin call is never easier than a scoring call).
    A path or method that does not exist is answered 404 or 405 whatever the token."""
    settings = request.app[SETTINGS]
    if request.match_info.http_exception is not None:  # no such path or method: nothing to guard
        return await handler(request)
    if request.path in ADMIN_PATHS:
        if settings.admin_token:
            _check_bearer(request, settings.admin_token)
        elif not is_loopback(settings.host):
            raise ApiError(
                403,
                "forbidden",
                "admin calls need OCSF_ANOMALY_ADMIN_TOKEN when the service listens beyond loopback",
            )
        elif settings.api_token:
            _check_bearer(request, settings.api_token)
    elif settings.api_token and request.path not in OPEN_PATHS:
        _check_bearer(request, settings.api_token)
    return await handler(request)


def _check_bearer(request: web.Request, token: str) -> None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented or not presented.isascii():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token> (printable ASCII)")
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise ApiError(403, "forbidden", "the bearer token is not valid for this call")


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log line without the query string (a token sent as ``?token=`` must never
    reach a log) and without the Referer; ``access_log_format`` is not read."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
        version = request.version
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.6f "%s"',
            request.remote or "-",
            request.method,
            request.rel_url.raw_path,
            version.major,
            version.minor,
            response.status,
            response.body_length,
            seconds,
            request.headers.get("User-Agent", "-"),
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------- handlers
async def _read(request: web.Request) -> tuple[Batch, float]:
    settings = request.app[SETTINGS]
    alpha = settings.alpha
    if "alpha" in request.query:
        try:
            alpha = float(request.query["alpha"])
        except ValueError:
            alpha = -1.0
        if not 0 < alpha < 1:
            raise ApiError(
                400, "bad_alpha", "alpha is a false-positive rate between 0 and 1, e.g. ?alpha=0.01"
            )
    strict = FLAGS.get(request.query.get("strict", "false").lower())
    if strict is None:
        raise ApiError(400, "bad_strict", "strict is true or false, e.g. ?strict=true")
    encoding = request.headers.get("Content-Encoding", "").strip().lower() or "identity"
    if encoding != "identity" and encoding not in ENCODINGS:
        raise ApiError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding!r} is not accepted: send gzip, deflate or an uncompressed body",
            headers={"Accept-Encoding": "gzip, deflate"},
        )
    try:
        body = await request.read()  # as sent: compressed bodies count against the limit too
    except ConnectionResetError:
        log.info(
            "%s %s: the client closed the connection before its body ended", request.method, request.path
        )
        raise ApiError(499, "client_closed_request", "the client closed the connection") from None
    if encoding in ENCODINGS:
        body = await asyncio.get_running_loop().run_in_executor(
            None, inflate, body, encoding, settings.max_body_bytes
        )
    async with _turn_to_parse(request, len(body)):
        started = time.perf_counter()
        batch = parse_body(
            body, request.headers.get("Content-Type", ""), max_events=settings.max_events, strict=strict
        )
    request.app[METRICS].stage_seconds.labels("parse").observe(time.perf_counter() - started)
    return batch, alpha


@contextlib.asynccontextmanager
async def _turn_to_parse(request: web.Request, size: int) -> AsyncIterator[None]:
    """Parsing a large body holds the event loop for a while, so large bodies are parsed one at a
    time, each after the loop has polled its sockets (a health check never waits behind a row of
    them), and only while there is room for more events (else 503 at once, unparsed)."""
    if size <= LARGE_BODY:
        yield
        return
    async with request.app[PARSING]:
        await asyncio.sleep(0)
        request.app[BATCHER].check(1)
        yield


async def _anomalies(request: web.Request, batch: Batch, alpha: float) -> list[dict[str, Any]]:
    """The anomaly object (or the error) of every item, in order."""
    events = [item.event for item in batch.items if item.event is not None]
    scored = iter(await request.app[BATCHER].score(events, alpha))
    return [next(scored) if item.event is not None else {"error": item.error} for item in batch.items]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def score(request: web.Request) -> web.Response:
    """One event, a JSON array or NDJSON → ``{"results": [...]}``, one per event, in order."""
    batch, alpha = await _read(request)
    return _json({"results": await _anomalies(request, batch, alpha)})


async def enrich(request: web.Request) -> web.Response:
    """The same events, in the same shape, each with the anomaly object added."""
    batch, alpha = await _read(request)
    field = request.app[SETTINGS].anomaly_field
    anomalies = await _anomalies(request, batch, alpha)
    strict = FLAGS[request.query.get("strict", "false").lower()]  # _read has refused any other value
    parts = [
        _enriched(item, anomaly, field, batch.shape, index, strict)
        for index, (item, anomaly) in enumerate(zip(batch.items, anomalies, strict=True))
    ]
    if batch.shape == "ndjson":
        return web.Response(body=b"".join(p + b"\n" for p in parts), content_type="application/x-ndjson")
    body = parts[0] if batch.shape == "object" else b"[" + b",".join(parts) + b"]"
    return web.Response(body=body, content_type="application/json")


def _enriched(item: Item, anomaly: dict[str, Any], field: str, shape: str, index: int, strict: bool) -> bytes:
    """One enriched event as JSON, every original field as it came. An event nested deeper than
    JSON can be written back (it is read 1,024 levels deep) is answered by an error in its place,
    or fails a strict request."""
    if item.event is None:
        return orjson.dumps({field: anomaly})
    try:
        return dumps({**item.event, field: anomaly})
    except RecursionError as exc:
        where: dict[str, Any] = {}
        if shape == "array":
            where = {"index": index}
        elif item.line is not None:
            where = {"line": item.line}
        place = f"line {item.line}" if "line" in where else f"element {index}" if where else "the event"
        message = f"{place} nests too deeply to be written back as JSON ({exc})"
        if strict:
            raise ApiError(422, "too_deep", message, headers=None, **where) from None
        return orjson.dumps({field: {"error": {"code": "too_deep", "message": message, **where}}})


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    serving = request.app.get(SERVING)
    if serving is None:
        return _json({"status": "not ready", "model": None}, status=503)
    return _json(
        {"status": "ready", "model": serving.champion.ref.info(), "redis": request.app[CACHE].status}
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi_document(request: web.Request) -> web.Response:
    return _json(openapi(request.app[SETTINGS]))


async def models(request: web.Request) -> web.Response:
    """What serves: champion, challenger, split and shadow, and where they come from."""
    settings, serving, source = request.app[SETTINGS], request.app[SERVING], request.app[SOURCE]
    refs = {alias: {**ref.info(), "source": ref.source} for alias, ref in serving.refs().items()}
    challenger = refs.get("challenger")
    return _json(
        {
            "champion": refs["champion"],
            "challenger": challenger,
            "split": settings.challenger_split if challenger and not settings.shadow else 0.0,
            "shadow": bool(challenger and settings.shadow),
            "source": source.kind,
            "registry": masked(settings)["registry_uri"] if source.kind == "registry" else None,
            "poll_seconds": settings.model_poll_seconds,
        }
    )


async def reload_model(request: web.Request) -> web.Response:
    """Ask the registry (or the directories) again and swap in what changed: no failed or mixed request."""
    app = request.app
    try:
        before, after = await refresh_models(app)
    except (bundle.BundleError, RegistryError) as exc:
        kept = _versions(app[SERVING])
        raise ApiError(409, "reload_failed", f"kept serving {kept}: {exc}") from None
    return _json({"reloaded": after != before, "from": before, "to": after})
