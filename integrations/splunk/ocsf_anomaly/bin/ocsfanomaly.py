#!/usr/bin/env python3
"""``| ocsfanomaly``: score OCSF events with the ocsf-anomaly service and add its verdict to each record.

A splunklib ``StreamingCommand`` (search command protocol v2, ``chunked = true``) that runs on the
search head only (``distributed=False``), so only that host needs to reach the scorer. Each record's
``field`` (``_raw`` by default) must hold one OCSF event as a JSON object; the command sends the
events of a chunk to the scorer's ``POST /v1/score`` as JSON arrays of at most ``batch_size``
events, in order, over one keep-alive HTTP connection per search (from a background thread, so that
the command reads the next batch and writes the one before while the scorer scores one), and adds
to every record::

    <prefix>score  <prefix>p_value  <prefix>is_anomaly  <prefix>model_version  <prefix>reasons  <prefix>error

All six are set on every record (empty where they do not apply), because splunklib takes each
output chunk's columns from its first record. A record whose field is not a JSON object passes
through with ``<prefix>error``; when the scorer cannot answer, ``onerror=fail`` stops the search
with an ERROR in the job inspector and ``onerror=tag`` passes the records through with
``<prefix>error``.

Standard library and the vendored splunklib (``bin/lib``) only: Splunk runs this file with its own
Python 3.9+ and no site-packages. It never imports the ocsf-anomaly package; it speaks HTTP to it.
"""

from __future__ import annotations

import builtins
import configparser
import os
import queue
import socket
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from io import StringIO
from typing import Any, NamedTuple
from urllib.parse import urlsplit

APP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(APP_DIR, "bin", "lib"))
if not hasattr(builtins, "exit"):
    # splunklib ends a failed run with the exit() builtin, which only the site module defines: without
    # it (python -S) a rejected option or a failed search would end in a NameError traceback.
    builtins.exit = sys.exit  # type: ignore[assignment]

# ruff: noqa: E402  (imports after the sys.path line above)
from ocsf_anomaly_scorer import (
    MAX_BATCH_BYTES,
    MAX_BATCH_SIZE,
    TOKEN_NAME,
    TOKEN_REALM,
    ScorerClient,
    ScorerError,
    Unscorable,
    event_body,
    reason_text,
)
from splunklib.searchcommands import Configuration, Option, StreamingCommand, dispatch, validators

APP_NAME = "ocsf_anomaly"
CONF_FILE = "ocsf_anomaly.conf"
CONF_STANZA = "scorer"
ADDED = ("score", "p_value", "is_anomaly", "model_version", "reasons", "error")


# ---------------------------------------------------------------- option validators
class ScorerUrl(validators.Validator):
    """An http(s) URL with a host: the scorer's base URL (``/v1/score`` is appended), as http.client
    can send it."""

    def __call__(self, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).strip()
        parts = urlsplit(text)
        try:
            port = parts.port  # raises ValueError for a port that is not a number in range
        except ValueError:
            port = 0
        if port == 0:  # 0 is in urlsplit's range, but nothing listens there
            raise ValueError(f"Expected an http(s) URL with a valid port, not {text!r}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Expected an http:// or https:// URL with a host, not {text!r}")
        try:  # as the resolver will: an empty label ("a..b") or one over 63 characters cannot be
            parts.hostname.encode("idna")
        except UnicodeError:
            raise ValueError(
                f"Expected a host name of labels of 1 to 63 characters between dots, not {parts.hostname!r}"
            ) from None
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"Expected a URL without query, fragment or credentials, not {text!r}")
        if any(character <= " " or character == "\x7f" for character in text) or not parts.path.isascii():
            # http.client refuses them only when it connects (a space in the host: a traceback)
            raise ValueError(
                f"Expected a URL without spaces or control characters, its path in ASCII "
                f"(percent-encoded), not {text!r}"
            )
        return text.rstrip("/")

    def format(self, value: Any) -> str | None:
        return None if value is None else str(value)


class OpenUnitInterval(validators.Float):
    """A false-positive rate: a number strictly between 0 and 1."""

    def __init__(self) -> None:
        super().__init__(minimum=0.0, maximum=1.0)

    def __call__(self, value: Any) -> float | None:
        number: float | None = super().__call__(value)
        if number is not None and not 0.0 < number < 1.0:
            raise ValueError(f"Expected a number strictly between 0 and 1, not {number}")
        return number


VALIDATORS: dict[str, validators.Validator] = {
    "url": ScorerUrl(),
    "field": validators.Fieldname(),
    "prefix": validators.Match("a field-name prefix", r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"),
    "alpha": OpenUnitInterval(),
    "batch_size": validators.Integer(minimum=1, maximum=MAX_BATCH_SIZE),
    "timeout": validators.Float(minimum=0.1, maximum=600.0),
    "onerror": validators.Set("fail", "tag"),
    "verify_tls": validators.Boolean(),
}
DEFAULTS: dict[str, Any] = {
    "url": "http://127.0.0.1:8080",
    "field": "_raw",
    "prefix": "anomaly_",
    "alpha": None,  # the scorer's own (OCSF_ANOMALY_ALPHA there, 0.01 unless set), as other callers get
    "batch_size": 500,
    "timeout": 10.0,
    "onerror": "fail",
    "verify_tls": True,
}


class Settings(NamedTuple):
    """What one run of the command uses: its options, else the app's ocsf_anomaly.conf, else DEFAULTS."""

    url: str
    field: str
    prefix: str
    alpha: float | None
    batch_size: int
    timeout: float
    onerror: str
    verify_tls: bool
    # the scorer ocsf_anomaly.conf names (or the default): the only one the stored token goes to
    trusted_url: str | None = None


def read_conf(app_dir: str = APP_DIR) -> dict[str, str]:
    """The ``[scorer]`` stanza of ``default/ocsf_anomaly.conf`` with ``local/`` on top (Splunk's precedence
    within an app), as text. A file that cannot be parsed, or is not UTF-8, raises ValueError."""
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, comment_prefixes=("#", ";"), inline_comment_prefixes=None
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # Splunk keys are case-sensitive
    paths = [os.path.join(app_dir, layer, CONF_FILE) for layer in ("default", "local")]
    for path in paths:
        # configparser skips a file it cannot open (its permissions, a directory of that name): the
        # defaults would then call 127.0.0.1:8080 without a word
        if not os.path.lexists(path):
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle, source=path)
        except (configparser.Error, UnicodeDecodeError, OSError) as error:
            raise ValueError(f"{CONF_FILE} cannot be read: {error}") from None
    return dict(parser[CONF_STANZA]) if parser.has_section(CONF_STANZA) else {}


# ---------------------------------------------------------------- the command
@Configuration(distributed=False)
class OcsfAnomalyCommand(StreamingCommand):
    """**Syntax:** ``ocsfanomaly [url=<url>] [field=<field>] [prefix=<string>] [alpha=<number>]
    [batch_size=<int>] [timeout=<seconds>] [onerror=fail|tag]``

    **Description:** Scores each record's OCSF event (the JSON object in ``field``) with the
    ocsf-anomaly service and adds ``<prefix>score``, ``<prefix>p_value``, ``<prefix>is_anomaly``,
    ``<prefix>model_version``, ``<prefix>reasons`` and ``<prefix>error``. Options left out take the
    values of ``ocsf_anomaly.conf`` ``[scorer]``.
    """

    url = Option(doc="Scorer base URL, e.g. http://scorer:8080", validate=VALIDATORS["url"])
    field = Option(doc="Field holding the OCSF JSON event", validate=VALIDATORS["field"])
    prefix = Option(doc="Prefix of the fields added", validate=VALIDATORS["prefix"])
    alpha = Option(doc="False-positive rate for is_anomaly, in (0, 1)", validate=VALIDATORS["alpha"])
    batch_size = Option(doc="Events per request to the scorer", validate=VALIDATORS["batch_size"])
    timeout = Option(doc="Seconds to wait for the scorer", validate=VALIDATORS["timeout"])
    onerror = Option(
        doc="fail: stop the search when the scorer fails; tag: tag the records",
        validate=VALIDATORS["onerror"],
    )

    def __init__(self) -> None:
        super().__init__()
        self._settings: Settings | None = None
        self._scorer: ScorerClient | None = None
        self._sender = _Sender()
        self._down: str | None = None  # onerror=tag: why the scorer failed in this chunk

    # splunklib formats every message (str.format), arguments or none: a brace in one (a gateway's
    # JSON answer quoted, a conf value, an option's value) raised while the error was being reported,
    # and the command died without answering splunkd, the reason lost. Without arguments, literal.
    def write_debug(self, message: str, *args: Any) -> None:
        super().write_debug(*_literal(message, args))

    def write_error(self, message: str, *args: Any) -> None:
        super().write_error(*_literal(message, args))

    def write_fatal(self, message: str, *args: Any) -> None:
        super().write_fatal(*_literal(message, args))

    def write_info(self, message: str, *args: Any) -> None:
        super().write_info(*_literal(message, args))

    def write_warning(self, message: str, *args: Any) -> None:
        super().write_warning(*_literal(message, args))

    def prepare(self) -> None:
        """Runs at getinfo, also in processes splunkd starts only to ask for the configuration:
        reads the settings (a local file) and nothing more: no HTTP here."""
        if self.fieldnames:
            self.write_error(
                f"ocsfanomaly takes options only, not {' '.join(self.fieldnames)!r}: "
                "name the field that holds the event with field=<field>"
            )
            sys.exit(1)
        try:
            self._settings = self._resolve(read_conf())
        except ValueError as error:
            self.write_error(str(error))
            sys.exit(1)

    def _resolve(self, conf: dict[str, str]) -> Settings:
        values: dict[str, Any] = {}
        for name, validate in VALIDATORS.items():
            option = self.options.get(name)
            if option is not None and option.is_set:
                values[name] = option.value
            elif conf.get(name, "").strip():
                try:
                    values[name] = validate(conf[name].strip())
                except ValueError as error:
                    raise ValueError(f"{CONF_FILE} [{CONF_STANZA}] {name} = {conf[name]}: {error}") from None
            else:
                values[name] = DEFAULTS[name]
        try:
            trusted = VALIDATORS["url"](conf["url"].strip()) if conf.get("url", "").strip() else DEFAULTS["url"]
        except ValueError:  # unused while url= is given: then no scorer is trusted with the token
            trusted = None
        return Settings(**values, trusted_url=trusted)

    def stream(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """One chunk's records, each with the added fields, in order, scored in bounded batches.

        The scorer's requests go through one background thread (``_Sender``), strictly in order:
        while it waits for the scorer to score a batch, this thread has the next batch read and
        checked, and the batch before written out. At most two batches are handed over (one
        being scored, the next waiting behind it)."""
        settings = self._settings
        assert settings is not None  # set by prepare()
        self._down = None
        names = tuple(settings.prefix + name for name in ADDED)
        self._record_writer.custom_fields.update(names)  # what splunklib's add_field does for each field
        chunk = _Chunk(keep_going=settings.onerror == "tag")
        pending: deque[tuple[list[tuple[dict[str, Any], bytes | Unscorable]], Future[Any] | None]] = deque()
        try:
            for batch in _batches(records, settings):
                pending.append((batch, self._send(batch, chunk)))
                if len(pending) > 1:
                    yield from self._scored(*pending.popleft(), names)
            while pending:
                yield from self._scored(*pending.popleft(), names)
        finally:
            chunk.stopped = True  # what is still waiting to be sent for this chunk never is

    def _send(
        self, batch: list[tuple[dict[str, Any], bytes | Unscorable]], chunk: _Chunk
    ) -> Future[Any] | None:
        """Hand the batch's events to the scorer's thread; None when there is nothing to send."""
        bodies = [body for _, body in batch if isinstance(body, bytes)]
        if not bodies or self._down is not None:
            return None
        return self._sender.submit(self._client(), bodies, chunk)

    def _scored(
        self,
        batch: list[tuple[dict[str, Any], bytes | Unscorable]],
        sent: Future[Any] | None,
        names: tuple[str, ...],
    ) -> Iterator[dict[str, Any]]:
        """The batch's records with the added fields (``names``), once the scorer has answered."""
        settings = self._settings
        assert settings is not None
        results: list[Any] = []
        failed: str | None = None  # onerror=tag: why the scorer failed this batch alone
        if sent is not None:
            try:
                answer = sent.result()
            except ScorerError as error:
                if settings.onerror == "fail":
                    self.logger.error("%s (onerror=fail: the search stops)", error)
                    raise
                if error.batch_only:
                    failed = str(error)
                    self.logger.warning("%s (onerror=tag: this batch's records pass through, tagged)", error)
                else:
                    self._down = str(error)
                    self.logger.warning("%s (onerror=tag: the records pass through, tagged)", error)
            else:
                if answer is not NOT_SENT:
                    results = answer
        # onerror=tag: why the scorer failed this batch, or in this chunk (then not asked again)
        down = failed if failed is not None else self._down
        answers = iter(results)
        for record, body in batch:
            if isinstance(body, Unscorable):
                self._add(record, names, error=str(body))
            elif down is not None:
                self._add(record, names, error=f"not scored: {down}")
            else:
                self._add(record, names, result=next(answers))
            yield record

    def _execute_chunk_v2(self, process: Any, chunk: Any) -> None:
        """splunklib's (2.1.1), except that each record is written as ``stream`` yields it, where
        splunklib would first make a list of the whole chunk's: so the records of one batch are
        written while the scorer scores the next, and a chunk's records are not all in memory at
        once. When ``stream`` fails, the records of the chunk written so far are dropped, so that
        the answer to the chunk carries none, as with splunklib's own."""
        body = chunk[1]  # (metadata, body)
        if len(body) <= 0 and not self._allow_empty_input:
            raise ValueError(
                "No records found to process. Set allow_empty_input=True in dispatch function to move "
                "forward with empty records."
            )
        writer = self._record_writer
        write = writer.write_record
        if "\0" in body and sys.version_info < (3, 11):
            # the csv module of Python 3.9 (Splunk 9's) refuses a NUL ("line contains NUL"), and the
            # whole chunk failed with it; a UTF-16 log read as UTF-8 holds one between every letter
            read = _with_nul(self._read_csv_records(StringIO(body.replace("\0", NUL_STAND_IN))))
        else:
            read = self._read_csv_records(StringIO(body))
        records = process(read)
        try:
            for record in records:
                write(record)
        except BaseException:
            # Under protocol v2 splunklib's writer keeps a chunk's records in its buffer until the
            # chunk's answer (nothing is flushed before): empty it as it was when the chunk began.
            writer._buffer.seek(0)
            writer._buffer.truncate()
            writer._pending_record_count = 0
            writer._fieldnames = None
            raise
        finally:
            records.close()

    def _client(self) -> ScorerClient:
        """The scorer's client, made on first use: one per run of the command, kept across chunks."""
        if self._scorer is None:
            settings = self._settings
            assert settings is not None
            self._scorer = ScorerClient(
                settings.url,
                alpha=settings.alpha,
                timeout=settings.timeout,
                verify_tls=settings.verify_tls,
                token=self._token(settings),
                warn=self.logger.warning,
            )
        return self._scorer

    def _token(self, settings: Settings) -> str | None:
        """The stored token, for the scorer ocsf_anomaly.conf names only: a search's url= (a shared
        dashboard's, a macro's, someone else's saved search) could otherwise have it sent anywhere,
        in clear text over http://."""
        if settings.trusted_url is not None and _origin(settings.url) == _origin(settings.trusted_url):
            return self._read_token(settings.timeout)
        self.logger.warning(
            "url=%s://%s:%d is not the scorer ocsf_anomaly.conf names: calling it without the stored "
            "token, which goes only to that one",
            *_origin(settings.url),
        )
        return None

    def _read_token(self, timeout: float) -> str | None:
        """The scorer's bearer token from splunkd's storage/passwords (realm ocsf_anomaly, name
        scorer_token, in this app), through the search's own session. Without splunkd or a token
        the command goes on without one: a WARNING in the log at most, never an ERROR message
        (which would fail the search)."""
        where = f"storage/passwords (realm {TOKEN_REALM!r}, name {TOKEN_NAME!r}, app {APP_NAME!r})"
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout)  # splunklib's connection takes it: splunkd may not answer
        try:
            service = self.service
            if service is None:
                self.logger.warning("no splunkd URI in the search info: no scorer token read from %s", where)
                return None
            for credential in service.storage_passwords.list(app=APP_NAME, owner="nobody"):
                if credential.realm == TOKEN_REALM and credential.username == TOKEN_NAME:
                    token = str(credential.clear_password or "").strip()
                    if token and not _is_header_token(token):
                        # http.client would refuse the header with the token in its message
                        self.logger.warning(
                            "the scorer token in %s holds characters other than printable ASCII (a line "
                            "break, a non-ASCII letter): store it again; calling the scorer without one",
                            where,
                        )
                        return None
                    return token or None
        except Exception as error:  # splunklib raises socket, HTTP and XML errors alike
            self.logger.warning(
                "could not read the scorer token from %s: %s; calling the scorer without one", where, error
            )
            return None
        finally:
            socket.setdefaulttimeout(previous)
        self.logger.info("no scorer token in %s: calling the scorer without one", where)
        return None

    def _add(
        self, record: dict[str, Any], names: tuple[str, ...], result: Any = None, error: str = ""
    ) -> None:
        """Set all the added fields (``names``, prefixed ADDED) on ``record``: the verdict, or empty
        ones and the error. (splunklib's add_field would also note each name for its writer, for
        every record: ``stream`` does that once per chunk.)"""
        if isinstance(result, str):
            error, result = result, None
        if isinstance(result, dict):
            model = result.get("model")
            reasons = result.get("reasons") or []
            if not isinstance(reasons, list):  # not the service's answer: one reason, as it came
                reasons = [reasons]
            values: tuple[Any, ...] = (
                result.get("score"),
                result.get("p_value"),
                1 if result.get("is_anomaly") else 0,
                model.get("version", "") if isinstance(model, dict) else "",
                [reason_text(reason) for reason in reasons],
                "",
            )
        else:
            values = ("", "", "", "", [], error)
        for index, name in enumerate(names):
            record[name] = values[index]


NUL_STAND_IN = "\ufdd0"  # a noncharacter: never in text for interchange


def _with_nul(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The records, with NUL_STAND_IN turned back into the NUL it stood in for."""
    for record in records:
        for name, value in record.items():
            if isinstance(value, str) and NUL_STAND_IN in value:
                record[name] = value.replace(NUL_STAND_IN, "\0")
            elif isinstance(value, list):
                record[name] = [v.replace(NUL_STAND_IN, "\0") if isinstance(v, str) else v for v in value]
        yield record


def _origin(url: str) -> tuple[str, str, int]:
    """A scorer URL's scheme, host and port (the port its scheme implies when it names none)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _literal(message: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A message and its arguments for splunklib's writer, which formats them: a message without
    arguments is taken as it is, its braces doubled."""
    if args:
        return (message, *args)
    return (str(message).replace("{", "{{").replace("}", "}}"),)


def _is_header_token(token: str) -> bool:
    """Whether ``token`` can be sent as ``Authorization: Bearer <token>`` as the service takes it:
    printable ASCII (no line break, which http.client refuses quoting the header, token and all)."""
    return all(" " <= character <= "~" for character in token)


# ---------------------------------------------------------------- the scorer's thread
NOT_SENT = object()  # what the scorer's thread answers for a batch it did not send
SWITCH_INTERVAL_SECONDS = 0.001


class _Chunk:
    """What the batches of one chunk share: once one of them failed (or the chunk is over), the
    scorer's thread sends none of the others; except, with ``keep_going`` (onerror=tag), after a
    batch the service failed alone (ScorerError.batch_only)."""

    __slots__ = ("keep_going", "stopped")

    def __init__(self, keep_going: bool = False) -> None:
        self.stopped = False
        self.keep_going = keep_going


class _Sender:
    """One background thread that sends batches to the scorer one at a time, in the order they
    were handed over, over the client's one keep-alive connection; each batch's answer (its results,
    NOT_SENT, or the exception) comes back through a Future.

    A batch whose chunk has stopped is not sent: after a failure, no further request goes out for
    that chunk (but for a batch the service failed alone, under onerror=tag), as when the batches
    were sent one after the other."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[ScorerClient, list[bytes], _Chunk, Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def submit(self, client: ScorerClient, bodies: list[bytes], chunk: _Chunk) -> Future[Any]:
        if self._thread is None:
            # This thread needs the GIL back after each blocking call (a send, each part of an
            # answer) while the command's thread keeps it busy: by default it waits up to 5 ms each
            # time, the scorer idle meanwhile. 1 ms keeps such waits short.
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
            self._thread = threading.Thread(target=self._run, name="ocsfanomaly-scorer", daemon=True)
            self._thread.start()
        sent: Future[Any] = Future()
        self._jobs.put((client, bodies, chunk, sent))
        return sent

    def _run(self) -> None:
        while True:
            self._answer(*self._jobs.get())

    @staticmethod
    def _answer(client: ScorerClient, bodies: list[bytes], chunk: _Chunk, sent: Future[Any]) -> None:
        if chunk.stopped:
            sent.set_result(NOT_SENT)
            return
        try:
            results = client.score(bodies)
        except BaseException as error:  # handed to the command's thread, which raises it there
            if not (chunk.keep_going and isinstance(error, ScorerError) and error.batch_only):
                chunk.stopped = True
            sent.set_exception(error)
        else:
            sent.set_result(results)


def _batches(
    records: Iterable[dict[str, Any]], settings: Settings
) -> Iterator[list[tuple[dict[str, Any], bytes | Unscorable]]]:
    """The records in order, in batches of at most ``batch_size`` records whose events add up to at
    most MAX_BATCH_BYTES (an event larger than that goes alone), each record with its event's text,
    or why it has none."""
    batch: list[tuple[dict[str, Any], bytes | Unscorable]] = []
    size = 0
    for record in records:
        item: tuple[dict[str, Any], bytes | Unscorable]
        try:
            text = event_body(record.get(settings.field), settings.field)
        except Unscorable as error:
            item, grow = (record, error), 0
        else:
            item, grow = (record, text), len(text) + 1
        if batch and (len(batch) >= settings.batch_size or size + grow > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += grow
    if batch:
        yield batch


if __name__ == "__main__":
    dispatch(OcsfAnomalyCommand, sys.argv, sys.stdin, sys.stdout, __name__)
