"""The service's middlewares (beside ``errors.error_middleware``): request metrics, bearer-token
authentication, and the access log that never writes a query string."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from urllib.parse import urlsplit

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from scorer.service.errors import ApiError, Handler, answer_and_close
from scorer.service.keys import BODIES, METRICS, SETTINGS
from scorer.service.requests import HELD
from scorer.settings import PRINTABLE_ASCII

log = logging.getLogger("ocsf_anomaly.service")
UNREAD = web.RequestKey("answer_unread", bool)  # its client left, or did not read its answer in time

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
OPEN_HEADS = frozenset({"/v1/integrations/vector"})  # a host's health check: HEAD says only "up"
ADMIN_PATHS = frozenset({"/v1/models/reload"})
# A client may send any token as its method: the metrics name the standard ones and count the rest as one.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency of every request by route (its pattern, never the raw path), method (a standard one,
    else ``other``) and status; a handler cancelled because the client went away, or an answer the
    client did not read, counts as 499, not as a server error nor as answered."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = 499 if request.get(UNREAD) else response.status
        return response
    except web.HTTPException as http:
        status = http.status
        raise
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        _observe(request, status, started)


def _observe(request: web.Request, status: int, started: float) -> None:
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    method = request.method if request.method in METHODS else "other"
    metrics = request.app[METRICS]
    metrics.labelled(metrics.request_seconds, name, method, str(status)).observe(
        time.perf_counter() - started
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer tokens (:func:`authorize`); a path or method that does not exist is answered 404 or
    405 whatever the token."""
    if request.match_info.http_exception is None:  # no such path or method: nothing to guard
        refuse_web_pages(request)
        authorize(request)
    return await handler(request)


@web.middleware
async def bodies_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What a request's body held of the BodyBudget (``handlers.read_body``) is given back once its
    answer is written, or it failed or was abandoned by its client. The answer is written here
    while the body is held (an enriched answer is as large as its body): a client that does not
    read its answer holds its share for ``body_timeout_seconds`` at most, then its connection is
    closed. aiohttp would write it after the middlewares, outside the budget and with no time
    limit: 20 clients that sent 16 KB of gzip each and read nothing held 580 MiB until they left."""
    try:
        response = await handler(request)
        if request.get(HELD) and isinstance(response, web.Response) and not response.prepared:
            await _send(request, response)
        return response
    finally:
        request.app[BODIES].release(request)


async def _send(request: web.Request, response: web.Response) -> None:
    seconds = request.app[SETTINGS].body_timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            await response.prepare(request)
            await response.write_eof()
    except TimeoutError:
        log.info(
            "%s %s: the client did not read its answer within %g s: connection closed",
            request.method,
            request.path,
            seconds,
        )
        request[UNREAD] = True
        if request.transport is not None:
            request.transport.abort()  # what it buffered of the answer goes with it
    except ConnectionError:  # the client left: aiohttp's own write would say nothing either
        request[UNREAD] = True


def refuse_web_pages(request: web.Request) -> None:
    """A web page that the operator opens cannot call the service (403). Browsers send an Origin
    header with every request a page makes to another origin, and with every POST: a request whose
    Origin is not the origin it asks for is refused. A page could still make its own name resolve
    to 127.0.0.1 (DNS rebinding) and so be of the service's origin: while the service listens on
    loopback only, a request naming another Host than loopback's (or ``allowed_hosts``) is refused
    too. Without them, with no token on loopback (as `make run` serves), any page could score,
    reload the models and read the model routes. Programs send no Origin and name the address they
    connect to: Splunk, Vector, OpenSearch, Prometheus and curl are answered as before."""
    host = request.headers.get("Host")
    origin = request.headers.get("Origin")
    if origin is not None and (host is None or _authority(origin) != host.strip().lower()):
        raise ApiError(
            403,
            "cross_origin",
            f"a request from a web page of another origin ({origin[:100]}) is refused: the API is for "
            "programs, which send no Origin header",
        )
    if host is not None and not request.app[SETTINGS].answers_to(host):
        raise ApiError(
            403,
            "unknown_host",
            f"Host {host[:100]!r} is not a name of this service, which listens on loopback only: a web page "
            "whose name was made to resolve to 127.0.0.1 sends its own; ask for localhost or 127.0.0.1, "
            "or set OCSF_ANOMALY_ALLOWED_HOSTS to the names a proxy on this machine passes on",
        )


def _authority(origin: str) -> str | None:
    """An Origin's host and port as a Host header gives them ("null", or no URL: None)."""
    parts = urlsplit(origin.strip())
    return parts.netloc.lower() if parts.scheme in ("http", "https") and parts.netloc else None


def authorize(request: web.Request) -> None:
    """Bearer tokens, compared in constant time: the API token on scoring calls when set; the admin
    token on admin calls, which without one are accepted only while the service listens on loopback,
    and then need the API token when one is set (an admin call is never easier than a scoring call).
    Raises ApiError (401, 403) when the request may not go on."""
    settings = request.app[SETTINGS]
    if request.path in ADMIN_PATHS:
        if settings.admin_token:
            _check_bearer(request, settings.admin_token)
        elif not settings.loopback_only:
            raise ApiError(
                403,
                "forbidden",
                "admin calls need OCSF_ANOMALY_ADMIN_TOKEN when the service listens beyond loopback",
            )
        elif settings.api_token:
            _check_bearer(request, settings.api_token)
    elif settings.api_token and request.path not in OPEN_PATHS and not _open_head(request):
        _check_bearer(request, settings.api_token)


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` (curl sends it before a body over 1 MiB): a request that would be
    refused for its token or its declared size is answered at once, in the JSON error shape, and
    its body never asked for (aiohttp's default asked for the body first and refused after it);
    another expectation is 417."""
    if request.version != HttpVersion11:
        return None  # HTTP/1.0 has no 100 Continue: the client sends its body anyway
    started = time.perf_counter()
    try:
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            raise ApiError(
                417, "expectation_failed", f"Expect {expect!r} is not supported: send 100-continue or none"
            )
        refuse_web_pages(request)
        authorize(request)
        refuse_declared_oversize(request)
        request.app[BODIES].check(declared_size(request))
    except ApiError as error:
        # its body was never asked for: the connection cannot carry another request
        response = web.json_response(error.body(), status=error.status, headers=error.headers)
        _observe(request, error.status, started)
        return await answer_and_close(request, response)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer proper has not started
    return None


def declared_size(request: web.Request) -> int:
    """The body's declared length, or the body limit when it is not declared (chunked)."""
    length = request.content_length
    return length if length is not None else request.app[SETTINGS].max_body_bytes


def refuse_declared_oversize(request: web.Request) -> None:
    """A body declared larger than the limit is refused (413) before any of it is read; its
    connection is closed, since the unread body cannot be told from a next request."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body too large: at most {limit:,} bytes", close=True)


def _open_head(request: web.Request) -> bool:
    return request.method == "HEAD" and request.path in OPEN_HEADS


def _check_bearer(request: web.Request, token: str) -> None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    # a space or tab inside is ASCII but no token holds one (settings refuse it): malformed, not wrong
    if scheme.lower() != "bearer" or not presented or not re.match(PRINTABLE_ASCII, presented):
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
            499 if request.get(UNREAD) else response.status,  # as the metrics count it
            response.body_length,
            seconds,
            request.headers.get("User-Agent", "-"),
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class BrokenHttpFilter(logging.Filter):
    """For aiohttp's server log: a request that is not well-formed HTTP (a bad request line, header
    or chunk; aiohttp answers it 400 before the app sees it) is the client's fault, so it is logged
    as one warning line, not as an error with a traceback that any client could make fill the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            # the reason only: what follows it quotes the request (a query string, a header), which
            # may hold a token or event data
            lines = str(error.message).strip().splitlines() if error.message else []
            first = re.split(r"[:'\"]", lines[0], maxsplit=1)[0].strip().removesuffix(" b") if lines else ""
            first = first or type(error).__name__
            record.msg, record.args = (
                "malformed HTTP from %s answered %d: %s",
                (
                    record.args[0] if isinstance(record.args, tuple) and record.args else "-",
                    error.code,
                    first,
                ),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
