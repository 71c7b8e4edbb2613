"""Reading OCSF events from JSONL, JSONL.gz and Parquet files.

Every reader yields ``(line, event, error)`` with ``line`` 1-based in file order, so callers can
report a bad line by number and still emit one output row per input line.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import gzip
import io
import itertools
import json
import math
import os
import random
import re
import secrets
import sys
import tempfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from scorer.errors import UserError

Event = dict[str, Any]
Record = tuple[int, Event | None, str | None]
T = TypeVar("T")


class Standard:
    """Standard input or standard output where a command line names ``-`` (a file named ``-`` is
    ``./-``), named in messages as ``<stdin>`` or ``<stdout>``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.head = b""  # standard input's first bytes, peeked at when it is opened
        self.first_line = b""  # the start of its first line, gunzipped if it was gzip

    def __str__(self) -> str:
        return self.name


STDIN = Standard("<stdin>")
STDOUT = Standard("<stdout>")
Source = Path | Standard


@contextlib.contextmanager
def _open_text_lines(path: Source) -> Iterator[IO[bytes]]:
    if not isinstance(path, Standard):
        gz = path.suffix.lower() == ".gz"  # .GZ too, as Windows tools name it
        with gzip.open(path, "rb") if gz else path.open("rb") as handle:
            yield handle  # type: ignore[misc]
        return
    if sys.stdin is None:  # started with standard input closed (`<&-`)
        raise UserError("standard input is closed: pipe the events in, or name a file")
    if sys.stdin.isatty():  # it would wait for events typed in, silently
        raise UserError(
            "standard input is a terminal: pipe the events in (… | ocsf-anomaly score - …), or name a file"
        )
    # gzip is known by its first bytes (a pipe has no name to go by), read whole however the
    # writer splits them (a peek may see one), then put back in front of the rest
    STDIN.head, STDIN.first_line = sys.stdin.buffer.read(4), b""
    stream = io.BufferedReader(_Prefixed(STDIN.head, sys.stdin.buffer))
    if STDIN.head.startswith(b"\x1f\x8b"):
        with gzip.GzipFile(fileobj=stream, mode="rb") as handle:  # closing it leaves stdin open
            yield handle  # type: ignore[misc]
    else:
        yield stream


class _Prefixed(io.RawIOBase):
    """``head``, then the rest of ``stream``: bytes read to look at, put back."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            taken, self.head = self.head[: len(buffer)], self.head[len(buffer) :]
        else:
            taken = self.stream.read1(len(buffer))  # type: ignore[attr-defined]
        buffer[: len(taken)] = taken
        return len(taken)


# 19 digits in a row: an integer this long may lie beyond 64 bits. Searched for in a mask of the
# body (each ASCII digit 1, every other byte 0): a regular expression took 34 µs for a 1.5 KB line
# holding hex, a third of reading such NDJSON.
DIGIT_MASK = bytes(1 if ord("0") <= byte <= ord("9") else 0 for byte in range(256))
LONG_DIGITS = b"\x01" * 19


class SlowPath(Exception):
    """Raised by :func:`loads` and :func:`dumps`, inside :func:`orjson_only`, instead of reading or
    writing with the standard library: what orjson refuses (numbers beyond a double's range,
    integers beyond 64 bits, nesting past the 254 levels orjson writes) takes that 0.3-2 µs a value,
    and 16 KB of gzip inflating to 16 MiB of it had held the service's event loop 2.5-11 s."""


_STDLIB = contextvars.ContextVar("stdlib", default=True)


@contextlib.contextmanager
def orjson_only() -> Iterator[None]:
    """Within it, :func:`loads` and :func:`dumps` raise SlowPath where they would need the standard
    library (the service then does the work again in a thread)."""
    token = _STDLIB.set(False)
    try:
        yield
    finally:
        _STDLIB.reset(token)


class OutOfRange(float):
    """A JSON number beyond a double's range (``1e400``, an integer of more than 4,300 digits): the
    infinity it rounds to, for the encoder (which flags the event that holds it, as it does any
    impossible number), with the number's text kept, so that :func:`dumps` writes it back as it came."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> OutOfRange:
        number = super().__new__(cls, "-inf" if text.startswith("-") else "inf")
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def loads(data: bytes) -> Any:
    """JSON → Python, every integer exact: orjson reads one beyond 64 bits as a float, so a body
    with such a long run of digits is read again by the standard library (valid JSON only), unless
    it also nests deeper than the standard library reads (about 1,000 levels): then as orjson read it.
    A number beyond a double's range (1e400, an integer of more than 4,300 digits), which orjson
    refuses, is read by the standard library too, as an :class:`OutOfRange`: it is valid JSON, and
    the encoder flags the event that holds it, as it does any impossible number, rather than the
    whole body failing. What orjson refuses besides (a lone UTF-16 surrogate, ``"\\ud800"``: no
    UTF-8 text) is refused in that case too."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if "infinity" not in str(error):
            raise
        if not _STDLIB.get():
            raise SlowPath from None
        try:
            value = json.loads(data, parse_constant=_not_json, parse_int=_integer, parse_float=_float)
        except (ValueError, RecursionError):
            raise error from None
        if b"\\u" in data and (lone := _lone_surrogate(value)) is not None:
            at = max(0, data.lower().find(b"\\u%04x" % ord(lone)))
            raise orjson.JSONDecodeError(
                "str is not valid UTF-8: surrogates not allowed", data.decode(errors="replace"), at
            ) from None
        return value
    if LONG_DIGITS in data.translate(DIGIT_MASK):
        if not _STDLIB.get():
            raise SlowPath
        with contextlib.suppress(RecursionError):
            value = json.loads(data, parse_int=_integer)
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _integer(text: str) -> int | float:
    """An integer exactly, or past Python's limit on converting digits (4,300) an OutOfRange."""
    limit = sys.get_int_max_str_digits()  # 0: no limit
    return int(text) if not limit or len(text.lstrip("-")) <= limit else OutOfRange(text)


def _float(text: str) -> float:
    number = float(text)
    return OutOfRange(text) if math.isinf(number) else number


def _lone_surrogate(value: Any) -> str | None:
    """A UTF-16 surrogate without its pair in a string (key or value) of ``value``, if there is one
    (the standard library reads ``"\\ud800"`` as one; no UTF-8 writer can write it back)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode()
            except UnicodeEncodeError as error:
                return item[error.start]
    return None


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words ("an array", "null"), for messages."""
    if value is None:
        return "null"
    kinds = ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"), (list, "an array"))
    # by isinstance: an OutOfRange (1e400) is a number too
    return next((name for kind, name in kinds if isinstance(value, kind)), "an object")


def parse_line(raw: bytes) -> tuple[Event | None, str | None]:
    """Parse one JSONL line into an event object, or return why it is not one (a blank line: "empty line")."""
    try:
        value = loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}" if raw.strip() else "empty line"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {json_kind(value)}"
    return value, None


# What gzip says of bytes after a whole member that do not begin another (its header check)
_NOT_A_MEMBER = ("Not a gzipped file", "Unknown compression method")


UTF8_BOM = b"\xef\xbb\xbf"


JSON_ARRAY = (
    "is a JSON array, not JSON Lines (one OCSF event, a JSON object, per line): convert it with jq -c '.[]'"
)


# A file of one line, an array longer than this, is refused unread: one of 300,000 events (368 MB)
# was parsed three times, at 2.6 GB, before it was refused as no events (the scale review)
ARRAY_LINE_MOST = 1 << 20


def _opens_an_array(first: bytes) -> bool:
    """Whether a file's first line opens a JSON array that runs over more lines (pretty-printed)."""
    if not first.lstrip().startswith(b"["):
        return False
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return True
    return False


def iter_raw_lines(path: Source) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line, bytes)`` of a JSONL or JSONL.gz file (or of standard input), blank lines included (they are bad lines).
    A UTF-8 byte order mark opening the file (Windows tools write one) is not part of its first line,
    as JSON's RFC 8259 allows a reader to ignore it and Spark's line reader does."""
    number = 0
    with _open_text_lines(path) as handle:
        try:
            lines: Iterator[bytes] = iter(handle)
            first = next(lines, None)
            if first is None:
                return
            number = 1
            first = first.removeprefix(UTF8_BOM)
            if isinstance(path, Standard):  # read once: kept for what a refusal says of it
                path.first_line = first[:64]
            if len(first) > ARRAY_LINE_MOST and first.lstrip().startswith(b"["):
                ahead = next(lines, None)
                if ahead is None:  # the file's one line: an array of events, not JSON Lines
                    raise UserError(f"{path} {JSON_ARRAY}")
                lines = itertools.chain([ahead], lines)  # lines follow it: it is a bad line
            elif _opens_an_array(first):  # every line after it would be a bad line, said one by one
                raise UserError(f"{path} {JSON_ARRAY}")
            yield 1, first.rstrip(b"\r\n")
            for number, raw in enumerate(lines, start=2):
                yield number, raw.rstrip(b"\r\n")
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a .gz cut short, or not gzip at all
            if number == 0:
                raise UserError(f"{path} cannot be read as gzip ({exc}): is it a .gz file?") from None
            if str(exc).startswith(_NOT_A_MEMBER):  # met where a next member could begin: all before is whole
                raise UserError(
                    f"{path} ends in data that is not gzip, after line {number:,} ({exc}): the gzip data "
                    "before it is whole; something else was appended to the file"
                ) from None
            raise UserError(
                f"{path} breaks off after line {number:,} ({exc}): the gzip file is incomplete"
            ) from None


# orjson reads 1,024 levels of nesting and writes 254; the standard library, which writes past
# either, takes a level of Python's recursion for each: with this much room, whatever was read
# (enriched, or held under a name as the Vector hop keeps what is no event) is written back.
WRITE_RECURSION = 2 * 1024
# A field nested deeper than this is no feature (OCSF's deepest are about ten): the walks over an
# event's fields (features infer, the baselines of evaluate) stop there, as Python's recursion
# would not reach the 1,024 levels an event may have, and a feature spec's path holds at most this
# many keys (the encoder's extractor nests a level of code for each, and Python's compiler takes
# at most 100: a path of 100 keys ended train in an IndentationError)
DEEPEST_FIELD = 64


def dumps(value: Any) -> bytes:
    """Python → JSON, as :func:`loads` reads it: an :class:`OutOfRange` number as its own text;
    integers beyond 64 bits and nesting beyond orjson's 254 levels (which orjson refuses) through the
    standard library. An event is never lost for being deep: the Vector hop forwarded one nested 980
    levels as an error alone. Whatever :func:`loads` read is written back; never raises for it."""
    try:
        return orjson.dumps(value, default=_fragment)
    except orjson.JSONEncodeError:
        if not _STDLIB.get():
            raise SlowPath from None
        if sys.getrecursionlimit() < WRITE_RECURSION:
            sys.setrecursionlimit(WRITE_RECURSION)
        # in C when no number is beyond a double's range (nor a NaN): the copy below takes about
        # 1.5 µs a value, and 16 MiB of zeros beside a deep field took 20 s to write, this 0.6 s
        with contextlib.suppress(ValueError):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        marker = f"\x00{secrets.token_hex(8)}:"
        texts: list[str] = []
        text = json.dumps(
            _for_stdlib(value, marker, texts), ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        if texts:  # each number's marker, a JSON string, becomes the number's own text
            quoted = re.escape(json.dumps(marker, ensure_ascii=False)[:-1])
            text = re.sub(quoted + r'(\d+)"', lambda m: texts[int(m.group(1))], text)
        return text.encode()


def _fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, OutOfRange):
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _for_stdlib(value: Any, marker: str, texts: list[str]) -> Any:
    """``value`` for the standard library's writer: each OutOfRange as a marker string numbered in
    ``texts``, any other infinite or NaN float as null (as orjson writes them). Copied without
    recursion: a value nests as deep as :func:`loads` reads (the writer's own recursion is room enough)."""
    holder: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(holder, 0, value)]
    while stack:
        parent, key, item = stack.pop()
        if isinstance(item, dict):
            parent[key] = mapping = dict(item)
            stack.extend((mapping, name, child) for name, child in item.items())
        elif isinstance(item, list | tuple):
            parent[key] = items = list(item)
            stack.extend((items, index, child) for index, child in enumerate(item))
        elif isinstance(item, OutOfRange):
            texts.append(item.text)
            parent[key] = f"{marker}{len(texts) - 1}"
        elif isinstance(item, float) and not math.isfinite(item):
            parent[key] = None
    return holder[0]


ANSWER_LIMIT = 64 * 1024  # bytes of a receiver's answer read: a status line's worth, and an error's


async def read_answer(response: Any, limit: int = ANSWER_LIMIT) -> bytes:
    """The first ``limit`` bytes of an HTTP answer's body (an aiohttp ``ClientResponse``), and no
    more: a receiver that answers without end can neither fill this process's memory nor hold it
    until its timeout. An answer within the limit is read whole, so its connection is reused. A 2xx
    whose body cannot be read (a bad gzip, cut short, too slow) reads as empty: the status says the
    receiver took what was sent, and sent again it would reach the receiver twice, or for ever.
    Other answers raise as aiohttp does."""
    import aiohttp

    out = bytearray()
    try:
        while len(out) < limit:
            chunk = await response.content.read(limit - len(out))
            if not chunk:
                break
            out += chunk
    except (aiohttp.ClientError, TimeoutError):
        if not 200 <= response.status < 300:
            raise
        return b""
    return bytes(out)


def refuse_writing_over(output: Path, inputs: Iterable[Path]) -> None:
    """ValueError when ``output`` is one of ``inputs`` (the same file by any name): writing it would
    replace what the command reads with what it makes."""
    for source in inputs:
        if output.exists() and Path(source).exists() and output.samefile(source):
            raise ValueError(f"the output {output} is the input file {source}: name another output")


def write_text_atomically(output: Path, text: str) -> None:
    """``text`` into ``output``, its missing directories made: written under a temporary name beside
    it and renamed, so that a failed write (a full disk, an interrupt) leaves what was there as it was."""
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    try:
        plain_mode(Path(partial))
        with os.fdopen(handle, "w", encoding="utf-8") as sink:
            sink.write(text)
        os.replace(partial, output)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def make_folders(directory: Path) -> list[Path]:
    """Make ``directory`` with those above it; returns the folders this made, deepest first, for
    :func:`remove_folders` when the work they were made for fails (nothing of it is to remain)."""
    made = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    return made


def remove_folders(made: list[Path]) -> None:
    """Remove the folders :func:`make_folders` made, those left empty."""
    for folder in made:
        with contextlib.suppress(OSError):
            folder.rmdir()


def plain_mode(path: Path) -> None:
    """Give a file made by mkstemp (mode 0600) or a directory made by mkdtemp (0700), to be renamed
    into an output, the mode a plain open() or mkdir() gives it (0666 or 0777 less the umask), as a
    shell's ``>`` does."""
    mask = os.umask(0o077)  # read by setting it; meanwhile 0o077 makes nothing more open than asked
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def iter_records(path: Path) -> Iterator[Record]:
    """Yield ``(line, event, error)`` for every line (JSONL) or row (Parquet) of ``path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such events file: {path}")
    if is_parquet(path):
        for number, row in enumerate(parquet_rows(path), start=1):
            yield number, from_parquet(row), None
        return
    for number, raw in iter_raw_lines(path):
        event, error = parse_line(raw)
        yield number, event, error


def parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file as :func:`arrow_rows` gives them; a file that is not Parquet or is
    damaged is a UserError that names it (pyarrow's own message names no file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    number = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            yield from arrow_rows(batch)
            number += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        where = f" after row {number:,}" if number else ""
        reason = " ".join(str(exc).split())  # pyarrow's may run over lines
        raise UserError(f"{path} cannot be read as Parquet{where} ({reason})") from None


def arrow_rows(batch: Any) -> list[dict[str, Any]]:
    """An Arrow record batch's rows as ``to_pylist`` gives them, but a value Python cannot hold
    spoils no more than itself (see :func:`_pylist`): pyarrow fails the whole batch for it."""
    return _pylist(batch.to_struct_array())


# What pyarrow raises for a value Python's types cannot hold: a date or time past year 9,999 or
# before year 1, a duration past 999,999,999 days (OverflowError, or a TypeError), a time zone
# Python does not know (a KeyError).
_UNHELD = (ArithmeticError, LookupError, TypeError, ValueError)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _pylist(array: Any) -> list[Any]:
    """An Arrow array's values as ``to_pylist`` gives them; where that fails, taken apart (a struct
    by its fields, a list by its items) down to the values that fail, each of which becomes
    :func:`_epoch_ms` of it."""
    try:
        return array.to_pylist()  # type: ignore[no-any-return]
    except _UNHELD:
        pass
    import pyarrow as pa

    kind = array.type
    if pa.types.is_dictionary(kind):
        return _pylist(array.dictionary_decode())
    if pa.types.is_struct(kind):
        names = [field.name for field in kind]
        fields = [_pylist(child) for child in array.flatten()]  # each with the struct's nulls
        valid = array.is_valid().to_pylist()
        return [
            dict(zip(names, row, strict=True)) if ok else None
            for ok, *row in zip(valid, *fields, strict=True)
        ]
    if pa.types.is_map(kind):  # (key, value) pairs, as to_pylist gives them
        return [
            None if not item.is_valid else [tuple(p.values()) for p in _pylist(item.values)] for item in array
        ]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return [None if not item.is_valid else _pylist(item.values) for item in array]
    values: list[Any] = []
    for item in array:
        try:
            values.append(item.as_py())
        except _UNHELD:
            values.append(_epoch_ms(item))
    return values


def _epoch_ms(item: Any) -> int | None:
    """A timestamp or date Python cannot hold as its epoch milliseconds, as OCSF writes times (a time
    that far out is itself a sign, so it is kept), a duration as its whole milliseconds, as
    :func:`from_parquet` writes the others; None for anything else."""
    import pyarrow as pa

    kind = item.type
    if pa.types.is_timestamp(kind) or pa.types.is_duration(kind):
        return int(item.value) * 1_000 // _PER_SECOND[kind.unit]
    if pa.types.is_date32(kind):
        return int(item.value) * 86_400_000
    if pa.types.is_date64(kind):
        return int(item.value)
    return None


JSON_SCALARS = (str, int, float, bool)


def from_parquet(value: Any) -> Any:
    """A Parquet row (as Arrow hands it to Python) as the event its JSON would be.

    Parquet fills absent struct fields with nulls, which OCSF JSON leaves out: they are dropped.
    Values of types JSON lacks become what an OCSF producer writes: a decimal a number, a timestamp
    or date ISO 8601 text (UTC when it carries no zone, as OCSF times are), a duration whole
    milliseconds, binary base64 text. Without this, ``score`` stopped with a traceback on a decimal
    or binary column, and the encoder read a timestamp column as absent. A float that is not finite
    becomes the text a JSON event holds it as (JSON has no such number; its readers refuse a bare
    NaN): "NaN", "Infinity", "-Infinity". The encoder reads that text as the impossible number it
    is, where a float NaN would be a dataframe's "missing".
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, JSON_SCALARS):
        return value
    if isinstance(value, dict):
        return {k: from_parquet(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):  # a map column comes as (key, value) pairs
        return [from_parquet(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value // timedelta(milliseconds=1)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


BAD_LINES_SAID = 20


class BadLines:
    """Says the first bad lines on ``errors`` (None: says nothing), then how many more there were: a
    file that is not JSONL at all printed one line for each of its 25,000 lines."""

    def __init__(self, errors: IO[str] | None) -> None:
        self.errors = errors
        self.count = 0

    def say(self, message: str) -> None:
        self.count += 1
        if self.errors is not None and self.count <= BAD_LINES_SAID:
            print(message, file=self.errors)

    def close(self) -> None:
        if self.errors is not None and self.count > BAD_LINES_SAID:
            print(f"… and {self.count - BAD_LINES_SAID:,} more bad lines", file=self.errors)


def not_events(path: Source, lines: int) -> UserError:
    """The error for a file none of whose lines is an event, saying what it looks like instead (an
    empty one: that it is empty)."""
    if not lines:
        return UserError(f"{path} is empty: it holds no event")
    gunzipped = False
    if isinstance(path, Standard):  # read once: its first bytes were kept
        magic = path.head
        if magic.startswith(b"\x1f\x8b") and path.first_line:
            magic, gunzipped = path.first_line, True
    else:
        with path.open("rb") as handle:
            magic = handle.read(64)
        if magic.startswith(b"\x1f\x8b") and path.suffix.lower() == ".gz":  # what its lines were read from
            try:
                with gzip.open(path, "rb") as handle:
                    magic = handle.read(64)
                gunzipped = True
            except (OSError, EOFError, zlib.error):  # said as a bad .gz where its lines were read
                pass
    if magic.startswith(b"\x1f\x8b") and isinstance(path, Path) and path.suffix.lower() != ".gz":
        hint = "it holds gzip data: name it .gz"
    elif magic.startswith(b"PAR1") and gunzipped:
        hint = "it is gzip-compressed Parquet: gunzip it to a .parquet file"
    elif magic.startswith(b"PAR1"):
        hint = "it is Parquet: name it .parquet" if isinstance(path, Path) else "it is Parquet: name the file"
    elif magic[:2] in (b"\xff\xfe", b"\xfe\xff"):
        hint = "it is UTF-16 text (as Windows PowerShell's > writes): save it as UTF-8"
    elif magic.removeprefix(UTF8_BOM).lstrip().startswith(b"["):
        hint = f"it {JSON_ARRAY}"
    else:
        hint = "is it JSONL, one OCSF event (a JSON object) per line?"
    return UserError(f"no line of {path} is an event ({lines:,} read): {hint}")


def load_events(paths: Iterable[Path | str], *, warn: bool = True) -> list[Event]:
    """Read all events of ``paths`` in order. Bad lines are skipped, the first of them said on stderr
    (``warn``) and then how many more; a file of lines none of which is an event is refused
    (UserError), saying what it looks like, and so is an empty one unless another file holds events
    (an hour's file rotated while empty is skipped, and said on stderr)."""
    return list(_events(paths, warn))


# the events `train`, `features infer` and `refresh` hold at most: the network trains on 100,000,
# the baseline takes 50,000 and the calibration 20,000; the scalers and vocabularies read them all
TRAIN_EVENTS_MOST = 200_000


def sample_events(
    paths: Iterable[Path | str], most: int, *, seed: int = 0, warn: bool = True
) -> tuple[list[Event], int]:
    """Events of ``paths`` read as :func:`load_events` reads them, and how many there were: all of
    them, in order, if there are at most ``most``; else a uniform sample of ``most`` (seeded
    reservoir sampling), in the files' order, so that memory is bounded whatever the input's size
    (a million events held as objects took 4 GB: the scale review)."""
    return sample(_events(paths, warn), most, seed=seed)


def sample(items: Iterable[T], most: int, *, seed: int = 0) -> tuple[list[T], int]:
    """``items``, and how many there were: all of them, in order, if there are at most ``most``;
    else a seeded uniform sample of ``most`` (reservoir sampling), in their order."""
    kept: list[tuple[int, T]] = []
    pick = random.Random(seed)  # noqa: S311  (a sample, not a secret)
    seen = 0
    for seen, item in enumerate(items, start=1):
        if seen <= most:
            kept.append((seen, item))
        elif (slot := pick.randrange(seen)) < most:
            kept[slot] = (seen, item)
    kept.sort(key=lambda pair: pair[0])
    return [item for _, item in kept], seen


def newest_events(paths: Iterable[Path | str], most: int, *, warn: bool = True) -> tuple[list[Event], int]:
    """Events of ``paths`` read as :func:`load_events` reads them, and how many there were: the last
    ``most`` of them (all, when there are no more), in order, so that memory is bounded whatever the
    input's size. For `refresh`, which keeps the newest events: a uniform sample would take its
    baseline from anywhere in the window."""
    kept: deque[Event] = deque(maxlen=most)
    seen = 0
    for event in _events(paths, warn):
        kept.append(event)
        seen += 1
    return list(kept), seen


def _events(paths: Iterable[Path | str], warn: bool) -> Iterator[Event]:
    said = BadLines(sys.stderr if warn else None)
    empty: list[Path] = []
    any_events = False
    for path in map(Path, paths):
        lines, found = 0, False
        for lines, event, error in iter_records(path):
            if event is None:
                said.say(f"{path}:{lines}: skipped: {error}")
            else:
                found = True
                yield event
        if not lines:
            empty.append(path)
        elif not found:
            raise not_events(path, lines)
        any_events = any_events or found
    said.close()
    if empty and not any_events:
        raise not_events(empty[0], 0)
    if empty and warn:
        shown = ", ".join(map(str, empty[:3])) + (f" and {len(empty) - 3:,} more" if len(empty) > 3 else "")
        print(f"warning: skipped {shown}: empty", file=sys.stderr)


def on_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is a terminal: a progress bar redrawn with \\r is for one, not for a file or a pipe."""
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed, or not a real stream
        return False
