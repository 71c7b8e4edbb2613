"""One JSON error shape for every 4xx and 5xx: ``{"error": {"status", "code", "message", ...}}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from scorer.errors import log_unexpected

log = logging.getLogger("ocsf_anomaly.service")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error that knows its HTTP status; ``extra`` fields (``line``, ``index``) say where, and
    ``headers`` go with the answer (``Retry-After``, ``Accept-Encoding``). ``close``: the connection
    is closed after the answer (a body left unread cannot be told from the next request); aiohttp
    first reads what comes of the body, for up to 10 s, so that a client still sending it reads the
    answer (not a reset)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.close = close
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "code": self.code, "message": self.message, **self.extra}}


_AIOHTTP_CODES = {
    404: ("not_found", "no such endpoint: GET /openapi.json lists them"),
    405: ("method_not_allowed", "method not allowed on this endpoint"),
    413: ("body_too_large", "request body too large"),
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into the JSON shape; never a traceback to the client."""
    try:
        return await handler(request)
    except ApiError as error:
        response = web.json_response(error.body(), status=error.status, headers=error.headers)
        if error.close:
            response.force_close()
        return response
    except web.HTTPException as http:
        if http.status < 400:
            raise
        code, message = _AIOHTTP_CODES.get(http.status, ("http_error", http.reason))
        if http.status == 413:
            from scorer.service.keys import SETTINGS

            message = f"request body too large: at most {request.app[SETTINGS].max_body_bytes:,} bytes"
        elif http.status == 405 and http.headers.get("Allow"):
            allowed = sorted(method.strip() for method in http.headers["Allow"].split(","))
            message = f"{message}: use {' or '.join(allowed)}"
        return web.json_response(
            ApiError(http.status, code, message).body(), status=http.status, headers=_allow(http)
        )
    except Exception as exc:
        log_unexpected(log, exc, "internal error on %s %s", request.method, request.path)
        return web.json_response(
            ApiError(500, "internal", "internal error; see the service log").body(), status=500
        )


def _allow(http: web.HTTPException) -> dict[str, str]:
    allow = http.headers.get("Allow")
    return {"Allow": allow} if allow else {}


async def answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """``response`` written, then its connection closed at once, for a request whose body was never
    asked for (a refused ``Expect: 100-continue``): aiohttp closed it only after lingering 10 s for
    that body (a descriptor held per refused request). A client gone first is no error to log."""
    response.force_close()
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:  # reset before the answer: nothing to answer, as aiohttp's own write
        pass
    if request.protocol is not None:
        request.protocol.force_close()  # the answer, buffered, is still sent before the socket closes
    return response
