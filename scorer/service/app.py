"""The aiohttp app: the factory, its middlewares and resources, and the routes.

app.py          create_app: middlewares, resources (cleanup contexts), routes
lifecycle.py    the resources: scoring threads, served models (load, reload, poll), cache, batcher
scoring.py      Scorer (one model's pipeline around the cache) and Router (champion/challenger)
middlewares.py  request metrics, bearer tokens, the access log
handlers.py     the request handlers and body reading
integrations.py endpoints shaped for one host each (OpenSearch's ingest pipeline, the Vector hop)
vector.py       the Vector hop's downstream session and its memory of forwarded batches
errors.py       the JSON error shape (and its middleware)
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from scorer.registry import configure_mlflow
from scorer.service.errors import error_middleware
from scorer.service.handlers import (
    enrich,
    healthz,
    metrics,
    models,
    openapi_document,
    readyz,
    reload_model,
    score,
)
from scorer.service.integrations import opensearch, vector, vector_health
from scorer.service.keys import BODIES, METRICS, PARSING, SETTINGS
from scorer.service.lifecycle import alerts_ctx, batcher_ctx, cache_ctx, executor_ctx, model_ctx, watch_ctx
from scorer.service.metrics import Metrics
from scorer.service.middlewares import (
    AccessLog,
    auth_middleware,
    bodies_middleware,
    expect_continue,
    metrics_middleware,
)
from scorer.service.requests import BodyBudget
from scorer.service.vector import vector_ctx
from scorer.settings import Settings

log = logging.getLogger("ocsf_anomaly.service")


def create_app(settings: Settings) -> web.Application:
    """The service for ``settings``; resources start with the app and stop with it."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware, auth_middleware, bodies_middleware],
        # bodies arrive as sent: _read inflates them off the loop, within the body limit (aiohttp
        # would inflate on the loop, and inflate what nobody reads before closing the connection)
        handler_args={"auto_decompress": False, "access_log_class": AccessLog},
    )
    app[SETTINGS] = settings
    if settings.model_dir is None:
        configure_mlflow()
    app[METRICS] = Metrics(alpha=settings.alpha)
    app[PARSING] = asyncio.Lock()
    app[BODIES] = BodyBudget(settings.max_pending_body_bytes, app[METRICS].body_bytes_held)
    app.cleanup_ctx.extend(
        [executor_ctx, model_ctx, cache_ctx, alerts_ctx, batcher_ctx, watch_ctx, vector_ctx]
    )
    app.router.add_post("/v1/score", score, expect_handler=expect_continue)
    app.router.add_post("/v1/enrich", enrich, expect_handler=expect_continue)
    app.router.add_post("/v1/integrations/opensearch", opensearch, expect_handler=expect_continue)
    app.router.add_post("/v1/integrations/vector", vector, expect_handler=expect_continue)
    # every route answers an Expect header in the JSON error shape (aiohttp's default: text/plain 417)
    app.router.add_route("HEAD", "/v1/integrations/vector", vector_health, expect_handler=expect_continue)
    app.router.add_get("/healthz", healthz, expect_handler=expect_continue)
    app.router.add_get("/readyz", readyz, expect_handler=expect_continue)
    app.router.add_get("/metrics", metrics, expect_handler=expect_continue)
    app.router.add_get("/openapi.json", openapi_document, expect_handler=expect_continue)
    app.router.add_get("/v1/models", models, expect_handler=expect_continue)
    app.router.add_post("/v1/models/reload", reload_model, expect_handler=expect_continue)
    if not settings.admin_token and not settings.loopback_only:
        log.warning(
            "no OCSF_ANOMALY_ADMIN_TOKEN and listening on %s: admin calls (model reload) will be refused; "
            "set an admin token to allow them",
            settings.host,
        )
    if not settings.api_token and not settings.loopback_only:  # the security review: said nowhere
        log.warning(
            "no OCSF_ANOMALY_API_TOKEN and listening on %s: whoever reaches the port can score events and "
            "read the model routes; set a token unless a network or a proxy stands guard",
            settings.host,
        )
    return app
