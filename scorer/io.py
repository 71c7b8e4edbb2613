"""Reading OCSF events from JSONL, JSONL.gz and Parquet files.

Every reader yields ``(line, event, error)`` with ``line`` 1-based in file order, so callers can
report a bad line by number and still emit one output row per input line.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

Event = dict[str, Any]
Record = tuple[int, Event | None, str | None]


def _open_text_lines(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def parse_line(raw: bytes) -> tuple[Event | None, str | None]:
    """Parse one JSONL line into an event object, or return why it is not one (a blank line: "empty line")."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}" if raw.strip() else "empty line"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got {type(value).__name__}"
    return value, None


def iter_raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line, bytes)`` of a JSONL or JSONL.gz file, blank lines included (they are bad lines)."""
    with _open_text_lines(path) as handle:
        for number, raw in enumerate(handle, start=1):
            yield number, raw.rstrip(b"\r\n")


def is_parquet(path: Path) -> bool:
    return path.suffix == ".parquet"


def iter_records(path: Path) -> Iterator[Record]:
    """Yield ``(line, event, error)`` for every line (JSONL) or row (Parquet) of ``path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such events file: {path}")
    if is_parquet(path):
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                number += 1
                yield number, drop_nulls(row), None
        return
    for number, raw in iter_raw_lines(path):
        event, error = parse_line(raw)
        yield number, event, error


def drop_nulls(value: Any) -> Any:
    # Parquet fills absent struct fields with nulls; OCSF JSON leaves them out.
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def load_events(paths: Iterable[Path | str], *, warn: bool = True) -> list[Event]:
    """Read all events of ``paths`` in order; bad lines are reported on stderr and skipped."""
    events: list[Event] = []
    for path in paths:
        for number, event, error in iter_records(Path(path)):
            if event is None:
                if warn:
                    print(f"{path}:{number}: skipped: {error}", file=sys.stderr)
                continue
            events.append(event)
    return events
