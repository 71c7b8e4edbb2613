"""The ocsf-anomaly scorer as the ``ocsfanomaly`` search command uses it: which records hold an
OCSF event, ``POST /v1/score`` over one keep-alive connection, and the service's reasons as text.

Standard library only (Splunk's Python 3.9+, no site-packages) and nothing of splunklib, so that it
reads on its own. The command (ocsfanomaly.py) decides what a failure means (``onerror``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

READ_AS_LINE = frozenset(' ()",\\')  # a value holding one of these is quoted in a reason line
# Where the scorer's bearer token is kept: Splunk's storage/passwords, in this app's namespace.
TOKEN_REALM = "ocsf_anomaly"  # noqa: S105  (a name, not a secret)
TOKEN_NAME = "scorer_token"  # noqa: S105  (a name, not a secret)
# The service refuses bodies over 16 MiB (OCSF_ANOMALY_MAX_BODY_BYTES): batches stay well below it.
# (splunklib reads no field over 10 MiB, so one event always fits in a request.)
MAX_BATCH_BYTES = 8 * 1024 * 1024
# The service admits at most 10,000 events a request (OCSF_ANOMALY_MAX_EVENTS).
MAX_BATCH_SIZE = 10_000
# A 503 (the service is full) is answered with Retry-After, as is a 429 (a rate limit in front of it): try
# again this often, waiting at most this long.
BUSY = (429, 503)
RETRIES_WHEN_BUSY = 3
MAX_RETRY_WAIT_SECONDS = 2.0
# A socket timeout: socket.timeout, which is TimeoutError only from Python 3.10 on.
TIMED_OUT = (socket.timeout, TimeoutError)
# The server closed the connection (an idle keep-alive one is reopened once).
CLOSED = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


class Unscorable(ValueError):
    """Why a record's event cannot be sent to the scorer; its message is the record's error field."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # JSON allows 1e999; the scorer's parser refuses it
        raise ValueError(f"the number {text} is too large")
    return number


# What json.loads(text, parse_constant=..., parse_float=...) makes anew for every call, made once.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite)
_KINDS = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def event_body(value: Any, field: str) -> bytes:
    """The field's text, as sent to the scorer, once it is known to hold one JSON object (else
    Unscorable says why).

    The text is sent as it is (not parsed and re-written), so integers beyond 64 bits and every
    other detail reach the scorer unchanged."""
    if isinstance(value, list):
        raise Unscorable(f"not an OCSF event: {field} holds {len(value)} values, not one event")
    if value is None or not str(value).strip():
        raise Unscorable(f"not an OCSF event: {field} is empty or missing")
    text = str(value)
    try:
        if text.startswith("\ufeff"):  # json.loads' own check, kept for its message
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        parsed = _DECODER.decode(text)
    except RecursionError:
        raise Unscorable(f"not an OCSF event: {field} nests too deeply") from None
    except ValueError as error:
        raise Unscorable(f"not an OCSF event: {field} is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        kind = "null" if parsed is None else _KINDS.get(type(parsed), type(parsed).__name__)
        raise Unscorable(f"not an OCSF event: {field} holds {kind}, not a JSON object")
    return text.encode("utf-8")


def _text(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return _shown(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _shown(text: str) -> str:
    """An event's text as a reason line shows it, as the service's own (scorer/explain.py): as it
    is where it cannot be read as part of the line, else as a JSON string with every character that
    is not printable escaped (a line break or "(typical …" in a value read as a reason of its own)."""
    if text and text != "missing" and text.isprintable() and not any(c in READ_AS_LINE for c in text):
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in json.dumps(text, ensure_ascii=False))


def _escaped(character: str) -> str:
    code = ord(character)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def reason_text(reason: Any) -> str:
    """A reason object of the service as one line: ``field=value (typical T, deviation D)``."""
    if not isinstance(reason, dict):
        return _text(reason)
    deviation = reason.get("deviation")
    value, typical = _text(reason.get("value")), _text(reason.get("typical"))
    if deviation is None:  # the service shows a port field's number no port can be as "not a port (70000)"
        raw = reason.get("value")
        port = isinstance(raw, str) and raw.startswith("not a port (")
        how = "not a possible port" if port else "not a possible number"
        if port:  # the service's own words, not the event's
            value = raw
            typical = "not a port" if reason.get("typical") == "not a port" else typical
    elif isinstance(deviation, (int, float)) and not isinstance(deviation, bool):
        how = f"deviation {deviation:.1f}"
    else:  # not the service's answer: written as it came
        how = f"deviation {_text(deviation)}"
    return f"{reason.get('field')}={value} (typical {typical}, {how})"


# ---------------------------------------------------------------- the scorer over HTTP
class ScorerError(Exception):
    """The scorer did not answer a batch: unreachable, timed out, refused the token or failed.

    What happens then is ``onerror``'s choice: stop the search (fail) or tag the records (tag).
    ``batch_only``: the service answered, and failed this batch alone (HTTP 500): the next batch
    may well be scored, where a scorer that cannot be reached or refuses every call fails them all."""

    def __init__(self, message: str, *, batch_only: bool = False) -> None:
        super().__init__(message)
        self.batch_only = batch_only


class ScorerClient:
    """``POST /v1/score`` over one persistent (keep-alive) connection, with timeouts.

    A connection the server closed while it sat idle is reopened once; a 503 (the service is full)
    or a 429 (too many requests) is retried after its Retry-After, a few times."""

    def __init__(
        self,
        url: str,
        *,
        alpha: float | None,
        timeout: float,
        verify_tls: bool,
        token: str | None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        parts = urlsplit(url)
        self._warn = warn
        self._too_large: int | None = None  # the smallest body answered 413, once one was
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        query = f"?{urlencode({'alpha': repr(alpha)})}" if alpha is not None else ""  # else the scorer's
        self._target = f"{parts.path.rstrip('/')}/v1/score{query}"
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        if self._https:
            self._context = ssl.create_default_context()
            if not verify_tls:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "ocsf_anomaly-splunk/ocsfanomaly",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._connection: http.client.HTTPConnection | None = None
        self._watchdog = _Watchdog()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def score(self, bodies: list[bytes]) -> list[Any]:
        """One result per body, in order: the service's anomaly object (a dict), or the reason it
        gave for not scoring that event (a str). Raises ScorerError when it does not answer."""
        body = b"[" + b",".join(bodies) + b"]"
        if len(bodies) > 1 and self._too_large is not None and len(body) >= self._too_large:
            return self._halves(bodies)  # as large as one refused before: not asked again
        status, data = self._post(body)
        if status == 200:
            return self._results(data, len(bodies))
        if status == 400 and _error_code(data) == "bad_alpha":  # the search's alpha, not an event
            raise ScorerError(
                f"the scorer at {self.url} refused the alpha option ({_error_message(status, data)})"
            )
        if status == 413:
            self._refused_as_large(len(body))
        if status in (400, 413, 422):
            # Something in the batch the service will not take (an event its JSON parser refuses,
            # a body over a proxy's limit): each half is sent on its own, down to the events
            # refused alone, which get the error (a bad event among 500 costs 18 more requests,
            # not 500; a limit of an eighth of the batch, 12-16 requests a batch, not 501)
            if len(bodies) > 1:
                return self._halves(bodies)
            return [f"the scorer refused this event: {_error_message(status, data)}"]
        if status in (401, 403):
            raise ScorerError(
                f"the scorer at {self.url} refused the request ({_error_message(status, data)}): "
                f"store its API token in storage/passwords, realm {TOKEN_REALM!r}, name {TOKEN_NAME!r} "
                "(see the app's README); the token goes only to the url ocsf_anomaly.conf names"
            )
        if status == 404:
            raise ScorerError(f"no scoring endpoint at {self.url}/v1/score (HTTP 404): check url")
        raise ScorerError(
            f"the scorer at {self.url} failed: {_error_message(status, data)}", batch_only=status == 500
        )

    def _halves(self, bodies: list[bytes]) -> list[Any]:
        middle = len(bodies) // 2
        return self.score(bodies[:middle]) + self.score(bodies[middle:])

    def _refused_as_large(self, size: int) -> None:
        """Remember the smallest body refused as too large: larger batches are halved before they
        are sent, not refused again; said once."""
        if self._too_large is None and self._warn is not None:
            self._warn(
                f"the scorer at {self.url} refused a request of {size:,} bytes as too large (HTTP 413: a "
                "proxy in front of it, or its OCSF_ANOMALY_MAX_BODY_BYTES): sending smaller ones; raise "
                "that limit, or lower batch_size, to save the extra requests"
            )
        self._too_large = size if self._too_large is None else min(self._too_large, size)

    def _results(self, data: bytes, expected: int) -> list[Any]:
        try:
            results = json.loads(data)["results"]
        except (ValueError, KeyError, TypeError) as error:
            raise ScorerError(
                f"the scorer at {self.url} sent an answer that is not its JSON: {error}"
            ) from None
        if not isinstance(results, list) or len(results) != expected:
            raise ScorerError(
                f"the scorer at {self.url} answered {len(results) if isinstance(results, list) else 'no'} "
                f"results for {expected} events"
            )
        out: list[Any] = []
        for result in results:
            refused = result.get("error") if isinstance(result, dict) else None
            if isinstance(refused, dict):
                out.append(f"the scorer refused this event: {refused.get('message', refused)}")
            elif isinstance(result, dict):
                out.append(result)
            else:
                out.append(f"the scorer sent {result!r} for this event")
        return out

    def _post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in range(RETRIES_WHEN_BUSY + 1):
            status, retry_after, data = self._exchange(body)
            if status not in BUSY or attempt == RETRIES_WHEN_BUSY:
                return status, data
            time.sleep(_retry_wait(retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, body: bytes) -> tuple[int, str | None, bytes]:
        for attempt in (1, 2):
            reused = self._connection is not None
            connection = self._connection if self._connection is not None else self._open()
            # ``timeout`` bounds the whole exchange, not each socket operation: a server (or a proxy)
            # sending its answer a few bytes at a time held the search for as long as it went on
            deadline = time.monotonic() + self._timeout
            armed = False
            try:
                if connection.sock is None:
                    connection.connect()  # its own timeout: the socket's, within the deadline
                # the socket itself: http.client lets go of it (sock = None) once an answer that closes
                # the connection is read, and reads the body through a handle of its own
                self._watchdog.arm(connection.sock, deadline)
                armed = True
                connection.request("POST", self._target, body=body, headers=self._headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                self.close()
                if (armed and self._watchdog.disarm()) or isinstance(error, TIMED_OUT):
                    raise self._timed_out() from None
                if isinstance(error, http.client.IncompleteRead):  # reached: it broke off its answer
                    read = len(error.partial)
                    of = "" if error.expected is None else f" of {read + error.expected}"  # None: chunked
                    raise ScorerError(
                        f"the scorer at {self.url} closed the connection mid-answer ({read}{of} bytes read)"
                    ) from None
                if isinstance(error, CLOSED):
                    if reused and attempt == 1:  # the server closed an idle keep-alive connection
                        continue
                    raise ScorerError(f"the scorer at {self.url} closed the connection: {error!r}") from None
                raise ScorerError(f"the scorer at {self.url} is unreachable: {error}") from None
            if self._watchdog.disarm():  # cut short: a socket shut down mid-headers reads as their end
                self.close()
                raise self._timed_out()
            if response.will_close:
                self.close()
            else:
                self._connection = connection
            return response.status, response.getheader("Retry-After"), data
        raise AssertionError("unreachable")  # pragma: no cover

    def _timed_out(self) -> ScorerError:
        return ScorerError(f"the scorer at {self.url} did not answer within {self._timeout:g} s (timeout)")

    def _open(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)


class _Watchdog:
    """One daemon thread per client that shuts the armed socket down once its deadline passes, so
    that a call blocked on it returns at once (a thread started per exchange cost about a millisecond
    each). ``disarm()`` ends the watch and says whether it had expired."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sock: socket.socket | None = None
        self._deadline: float | None = None
        self._expired = False
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket | None, deadline: float) -> None:
        with self._changed:
            self._sock, self._deadline, self._expired = sock, deadline, False
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="ocsfanomaly-deadline", daemon=True)
                self._thread.start()
            self._changed.notify()

    def disarm(self) -> bool:
        with self._changed:
            expired = self._expired
            self._sock, self._deadline, self._expired = None, None, False
            return expired

    def _watch(self) -> None:
        with self._changed:
            while True:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                self._expired, self._deadline = True, None
                if self._sock is not None:
                    # the plain socket's shutdown: an SSL socket's own would unwrap it under a reader
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


def _retry_wait(retry_after: str | None) -> float:
    try:
        seconds = float(retry_after) if retry_after else 1.0
    except ValueError:
        seconds = 1.0
    if not math.isfinite(seconds):  # "NaN": time.sleep refused it, and the search failed
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_WAIT_SECONDS)


def _error_code(data: bytes) -> str | None:
    """The ``code`` of the service's JSON error shape, if the body is one."""
    try:
        code = json.loads(data)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _error_message(status: int, data: bytes) -> str:
    """The service's own message from its JSON error shape, else the start of the body."""
    try:
        error = json.loads(data)["error"]
        return f"HTTP {status} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = data[:200].decode("utf-8", "replace").strip()
        return f"HTTP {status}" + (f": {text}" if text else "")
