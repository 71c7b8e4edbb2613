"""What splunkd does to an external search command, for tests where no Splunk server can run.

splunkd runs a ``chunked = true`` command as a subprocess with its own Python and speaks the search
command protocol v2 on the command's stdin and stdout. Every message, both ways, is one frame::

    chunked 1.0,<metadata bytes>,<body bytes>\\n<JSON metadata><body>

(lengths in UTF-8 bytes). splunkd sends ``{"action": "getinfo", "searchinfo": {...}}`` with an empty
body; the command answers with its configuration (``{"type": "stateful"}`` for a streaming command
that runs on the search head) or, for bad arguments, with ERROR messages in ``inspector.messages``
and exits 1. Then ``{"action": "execute", "finished": false|true}`` frames carry CSV bodies: a header
row, ``\\r\\n`` line ends, a multivalue field ``f`` as ``$a$;$b$`` in an ``__mv_f`` column. The command
answers each with exactly one frame, ``{"finished": <the same>}`` and its records as CSV, and ends
when splunkd closes its stdin. This module plays splunkd's side (the layout of the frames follows
Splunk's documentation and the sessions with Splunk 6.3 and 8.2 that splunk-sdk-python recorded),
and fakes the only part of splunkd's REST API the command calls: ``storage/passwords``. Around
the search: search results as splunkd holds them (``splunk_records``). The real scorer service the
command calls is tests/live_scorer.py's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "integrations" / "splunk" / "ocsf_anomaly"
COMMAND = Path("bin") / "ocsfanomaly.py"
ADDED = ("score", "p_value", "is_anomaly", "model_version", "reasons", "error")  # after the prefix

Value = str | list[str]
# The largest CSV field read back: splunklib's own limit (10 MiB), not the csv module's 128 KiB.
csv.field_size_limit(10 * 1024 * 1024)
Record = dict[str, Value]


def splunk_python() -> list[str]:
    """The interpreter and flags the command runs under: a Python that is not this test's virtualenv
    (the system's, where there is one), without site-packages (``-S``), as Splunk's own Python has
    none of this project's dependencies."""
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    return [python, "-S"]


def python_version(version: str) -> list[str] | None:
    """Python ``version`` (e.g. "3.9") as the command runs under it, without site-packages; None when
    this machine has none (on PATH, or installed by pyenv)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    installed = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    found = str(installed[-1]) if installed else shutil.which(f"python{version}")
    if found is None or "/shims/" in found:  # pyenv's shims answer only for the version selected
        return None
    return [found, "-S"]


def command_environment(splunk_home: Path) -> dict[str, str]:
    """What the command's process sees: no PYTHONPATH (which ``-S`` would not remove), no bytecode
    written into the app, and SPLUNK_HOME as splunkd sets it."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SPLUNK_HOME": str(splunk_home),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


# ---------------------------------------------------------------- frames and CSV
def frame(metadata: Mapping[str, Any], body: bytes = b"") -> bytes:
    encoded = json.dumps(metadata).encode("utf-8")
    return b"chunked 1.0,%d,%d\n" % (len(encoded), len(body)) + encoded + body


def csv_body(
    records: Sequence[Mapping[str, Value]], *, fields: Sequence[str] = (), newline: str = "\r\n"
) -> bytes:
    """Records as splunkd sends them: every field, then an ``__mv_`` column for each (filled for
    multivalue fields only). ``fields`` gives the header when there are no records."""
    names = list(fields)
    for record in records:
        names += [name for name in record if name not in names]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(names + [f"__mv_{name}" for name in names])
    for record in records:
        single: list[str] = []
        multi: list[str] = []
        for name in names:
            value = record.get(name, "")
            if isinstance(value, list):
                single.append("\n".join(value))
                multi.append(";".join("$" + item.replace("$", "$$") + "$" for item in value))
            else:
                single.append(value)
                multi.append("")
        writer.writerow(single + multi)
    return out.getvalue().encode("utf-8")


def _decode_multivalue(text: str) -> list[str]:
    values, current, i = [], "", 0
    assert text.startswith("$"), text
    assert text.endswith("$"), text
    body = text[1:-1]
    while i < len(body):
        if body.startswith("$$", i):
            current, i = current + "$", i + 2
        elif body.startswith("$;$", i):
            values.append(current)
            current, i = "", i + 3
        else:
            current, i = current + body[i], i + 1
    values.append(current)
    return values


def parse_records(body: bytes) -> tuple[list[str], list[Record]]:
    """The command's CSV: the header's field names (without ``__mv_`` columns) and the records, a
    multivalue field as a list."""
    if not body:
        return [], []
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    header = rows[0]
    names = [name for name in header if not name.startswith("__mv_")]
    records: list[Record] = []
    for row in rows[1:]:
        cells = dict(zip(header, row, strict=True))
        record: Record = {}
        for name in names:
            multi = cells.get(f"__mv_{name}", "")
            record[name] = _decode_multivalue(multi) if multi else cells[name]
        records.append(record)
    return names, records


@dataclass
class Reply:
    """One frame of the command's output; its CSV body parsed when first asked for (so a benchmark's
    clock stops when the answer's bytes are in, as splunkd's would: it parses in C++, apart)."""

    metadata: dict[str, Any]
    body: bytes

    @cached_property
    def _parsed(self) -> tuple[list[str], list[Record]]:
        return parse_records(self.body)

    @property
    def header(self) -> list[str]:
        return self._parsed[0]

    @property
    def records(self) -> list[Record]:
        return self._parsed[1]

    @property
    def messages(self) -> list[tuple[str, str]]:
        return [tuple(m) for m in self.metadata.get("inspector", {}).get("messages", [])]  # type: ignore[misc]

    def errors(self) -> list[str]:
        return [text for level, text in self.messages if level in ("ERROR", "FATAL")]


def searchinfo(
    args: Sequence[str],
    *,
    dispatch_dir: str,
    splunkd_uri: str,
    session_key: str = "s3ss10n-k3y^Ab_c",
    app: str = "search",
    username: str = "admin",
    maxresultrows: int = 50_000,
) -> dict[str, Any]:
    """getinfo's ``searchinfo`` with every key real splunkd sends (times and the search as strings,
    the search percent-encoded)."""
    search = "search index=ocsf sourcetype=ocsf:json | ocsfanomaly " + " ".join(args)
    return {
        "args": list(args),
        "raw_args": list(args),
        "dispatch_dir": dispatch_dir,
        "sid": "1764745200.42",
        "splunkd_uri": splunkd_uri,
        "session_key": session_key,
        "app": app,
        "owner": username,
        "username": username,
        "splunk_version": "9.3.2",
        "maxresultrows": maxresultrows,
        "earliest_time": "1764658800.000000000",
        "latest_time": "1764745200.000000000",
        "search": quote(search, safe=""),
        "command": "ocsfanomaly",
        "streaming_command_will_restart": False,
    }


# ---------------------------------------------------------------- the command's process
class CommandProcess:
    """The command run as splunkd runs it: a subprocess in the search's dispatch directory, frames
    on its stdin and stdout, its stderr (the search.log lines) kept in a file."""

    def __init__(self, app_dir: Path, work: Path, python: Sequence[str] | None = None) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.stderr_path = work / "stderr.log"
        self.splunk_home = work / "splunk_home"
        self.splunk_home.mkdir(exist_ok=True)
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*(python or splunk_python()), str(app_dir / COMMAND)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=work,
                env=command_environment(self.splunk_home),
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def send(self, metadata: Mapping[str, Any], body: bytes = b"") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(frame(metadata, body))
        self.process.stdin.flush()

    def read(self) -> Reply | None:
        """The next frame the command writes, or None at the end of its output."""
        stdout = self.process.stdout
        assert stdout is not None
        start = stdout.readline()
        if not start:
            return None
        assert start.startswith(b"chunked 1.0,"), f"not a frame: {start[:200]!r}"
        assert start.endswith(b"\n"), f"not a frame: {start[:200]!r}"
        metadata_length, body_length = (int(n) for n in start[len(b"chunked 1.0,") : -1].split(b","))
        metadata = json.loads(stdout.read(metadata_length))
        body = stdout.read(body_length)
        assert len(body) == body_length, "the command's output ended inside a frame"
        return Reply(metadata, body)

    def getinfo(self, info: Mapping[str, Any]) -> Reply:
        self.send({"action": "getinfo", "preview": False, "searchinfo": dict(info)})
        reply = self.read()
        assert reply is not None, f"no answer to getinfo; stderr:\n{self.stderr}"
        return reply

    def execute(self, body: bytes, *, finished: bool) -> Reply:
        self.send({"action": "execute", "finished": finished}, body)
        reply = self.read()
        assert reply is not None, f"no answer to execute; stderr:\n{self.stderr}"
        return reply

    def close(self, timeout: float = 60) -> int:
        """Close stdin as splunkd does once the search is done; the exit code."""
        assert self.process.stdin is not None
        with suppress(BrokenPipeError):  # it may have exited already (a refused option)
            self.process.stdin.close()
        return self.process.wait(timeout)

    def rest_of_output(self) -> bytes:
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@dataclass
class Search:
    """One search through the command: getinfo's answer, one answer per execute frame, the exit code."""

    getinfo: Reply
    replies: list[Reply]
    exit_code: int
    stderr: str

    @property
    def records(self) -> list[Record]:
        return [record for reply in self.replies for record in reply.records]

    def errors(self) -> list[str]:
        return [text for reply in [self.getinfo, *self.replies] for text in reply.errors()]


def run_search(
    args: Sequence[str],
    chunks: Sequence[tuple[bytes, bool]],
    *,
    work: Path,
    splunkd_uri: str,
    app_dir: Path = APP_DIR,
    maxresultrows: int = 50_000,
    python: Sequence[str] | None = None,
) -> Search:
    """getinfo with ``args``, then each ``(CSV body, finished)`` chunk in turn, waiting for each answer
    (as splunkd does); stops sending when the command has failed (an answer that says finished before
    splunkd did, or an ERROR). Then closes stdin and waits for the exit. The command runs under
    ``python`` (default: splunk_python())."""
    dispatch_dir = work / "dispatch"
    dispatch_dir.mkdir(parents=True, exist_ok=True)
    command = CommandProcess(app_dir, work, python)
    try:
        info = searchinfo(
            args, dispatch_dir=str(dispatch_dir), splunkd_uri=splunkd_uri, maxresultrows=maxresultrows
        )
        first = command.getinfo(info)
        replies: list[Reply] = []
        if not first.errors():
            for body, finished in chunks:
                reply = command.execute(body, finished=finished)
                replies.append(reply)
                if reply.errors() or (reply.metadata.get("finished") and not finished):
                    break
        exit_code = command.close()
        assert command.rest_of_output() == b"", "the command wrote more than one answer per frame"
        return Search(first, replies, exit_code, command.stderr)
    finally:
        command.kill()


def copy_app(destination: Path) -> Path:
    """A copy of the app (to give it a local/ directory), named as Splunk names it."""
    target = destination / APP_DIR.name
    shutil.copytree(APP_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "local"))
    return target


# ---------------------------------------------------------------- splunkd's REST API, the part the command uses
@dataclass
class Credential:
    realm: str
    username: str
    password: str
    app: str = "ocsf_anomaly"


class FakeSplunkd:
    """``GET /servicesNS/<owner>/<app>/storage/passwords`` as splunkd answers it (an Atom feed of
    ``s:dict`` entries), for the session key of the search; every request recorded. Over HTTPS with a
    self-signed certificate made for the occasion, as splunkd's management port answers (the
    command's splunklib does not verify it, as against splunkd's own)."""

    def __init__(self, session_key: str, credentials: Sequence[Credential]) -> None:
        self.session_key = session_key
        self.credentials = list(credentials)
        self.requests: list[tuple[str, str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, self.headers.get("Authorization")))
                status, body = fake.answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if self.close_connection:  # the client sent Connection: close (splunklib does)
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        with tempfile.TemporaryDirectory(prefix="fake-splunkd-") as keys:
            key, cert = Path(keys) / "key.pem", Path(keys) / "cert.pem"
            subprocess.run(
                [
                    *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                    *("-subj", "/CN=SplunkServerDefaultCert", "-keyout", str(key), "-out", str(cert)),
                ],
                check=True,
                capture_output=True,
            )
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.uri = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        if authorization != f"Splunk {self.session_key}":
            return 401, _messages("WARN", "call not properly authenticated")
        route = path.split("?", 1)[0].strip("/").split("/")
        if len(route) != 5 or route[0] != "servicesNS" or route[3:] != ["storage", "passwords"]:
            return 404, _messages("ERROR", f"Not Found: {path}")
        app = route[2]
        visible = [c for c in self.credentials if c.app == app]
        return 200, _password_feed(route[1], app, visible)

    def __enter__(self) -> FakeSplunkd:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _messages(level: str, text: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<response>\n  <messages>\n'
        f'    <msg type="{level}">{escape(text)}</msg>\n  </messages>\n</response>\n'
    ).encode()


def _password_feed(owner: str, app: str, credentials: Sequence[Credential]) -> bytes:
    base = f"/servicesNS/{owner}/{app}/storage/passwords"
    entries = "".join(
        f"""
  <entry>
    <title>{escape(c.realm)}:{escape(c.username)}:</title>
    <id>https://127.0.0.1:8089{base}/{quote(c.realm + ":" + c.username + ":", safe="")}</id>
    <updated>2026-12-03T07:00:00+00:00</updated>
    <link href="{base}/{quote(c.realm + ":" + c.username + ":", safe="")}" rel="alternate"/>
    <author><name>nobody</name></author>
    <link href="{base}/{quote(c.realm + ":" + c.username + ":", safe="")}" rel="list"/>
    <content type="text/xml">
      <s:dict>
        <s:key name="clear_password">{escape(c.password)}</s:key>
        <s:key name="eai:acl">
          <s:dict>
            <s:key name="app">{escape(c.app)}</s:key>
            <s:key name="can_change_perms">1</s:key>
            <s:key name="owner">nobody</s:key>
            <s:key name="sharing">app</s:key>
          </s:dict>
        </s:key>
        <s:key name="encr_password">$7$c2VjcmV0</s:key>
        <s:key name="password">********</s:key>
        <s:key name="realm">{escape(c.realm)}</s:key>
        <s:key name="username">{escape(c.username)}</s:key>
      </s:dict>
    </content>
  </entry>"""
        for c in credentials
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:s="http://dev.splunk.com/ns/rest" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">
  <title>passwords</title>
  <id>https://127.0.0.1:8089{base}</id>
  <updated>2026-12-03T07:00:00+00:00</updated>
  <generator build="b6436b649711" version="9.3.2"/>
  <author><name>Splunk</name></author>
  <opensearch:totalResults>{len(credentials)}</opensearch:totalResults>
  <opensearch:itemsPerPage>30</opensearch:itemsPerPage>
  <opensearch:startIndex>0</opensearch:startIndex>
  <s:messages/>{entries}
</feed>
""".encode()


# ---------------------------------------------------------------- search results as splunkd holds them
def splunk_records(texts: Sequence[str], start: int = 0) -> list[Record]:
    """Search results as splunkd hands them to a streaming command: the event in _raw beside the
    fields every event has, a multivalue field on some."""
    records: list[Record] = []
    for i, text in enumerate(texts, start=start):
        record: Record = {
            "_serial": str(i),
            "_time": str(1764658800 + i),
            "_raw": text,
            "host": "collector-01",
            "index": "ocsf",
            "source": "/var/log/ocsf/events.json",
            "sourcetype": "ocsf:json",
            "splunk_server": "sh-01",
            "_chunked_idx": str(i - start),
        }
        record["tag"] = ["ocsf", "security", f"batch-{i % 7}"] if i % 3 == 0 else "ocsf"
        records.append(record)
    return records


def as_list(value: Value) -> list[str]:
    """A field as a list: a multivalue field is a list, one value is a string, none is ''."""
    if isinstance(value, list):
        return value
    return [value] if value else []
