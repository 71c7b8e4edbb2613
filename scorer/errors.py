"""The base of every error a user can mend (a file, a setting, a model, a port): the command line
prints its message as one line and exits with status 2. Light on purpose: the CLI imports it
before it knows which command runs, and the service's supervisor should not load the engine."""

from __future__ import annotations

import logging
import re
import traceback
from urllib.parse import urlsplit

# a URL's user information: from after the scheme to its last "@" before the path
_USER_INFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s]*@", re.IGNORECASE)


class UserError(Exception):
    """An error whose message says what is wrong and what to do; never a traceback. Its message never
    shows the user or password of a URL, nor does a client's error quoted in it."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(without_credentials(arg) if isinstance(arg, str) else arg for arg in args))


def without_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it shown as ``***`` (for messages and
    logs: a registry or Redis URL may carry them, and so may the errors of the clients that use it)."""
    return _USER_INFO.sub(r"\1***@", text)


def origin(url: str) -> str:
    """``url`` as its scheme, host and port, the rest shown as ``/…``: for logs of a receiver's URL,
    whose path or query may be its secret (Slack, Teams and Discord webhooks, ``?token=``)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address, bracketed again
        host = f"[{host}]"
    rest = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def log_unexpected(log: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """An error no one expected (a bug), logged at ERROR with where it happened (the type and the
    traceback's frames of it and of each exception it was raised from or during) but not its text,
    which may quote the event that caused it (event payloads stay out of logs above DEBUG); the whole,
    text and all, at DEBUG."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__)).rstrip()
        parts.append(f"{type(current).__name__}" + (f"\n{frames}" if frames else ""))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    where = "\n  which was raised while handling, or from, ".join(parts)
    log.error(message + " (its message at DEBUG): %s", *args, where)
    log.debug(message, *args, exc_info=exc)
