"""Score event files (JSONL, JSONL.gz, Parquet) with every core, in input order.

The main process reads and writes; worker processes, each with its own copy of the bundle and one
torch/faiss thread, parse, score and format chunks of lines. Every input line gets exactly one
output line or row: a line that is not a JSON object is reported on stderr with its number and
gets empty score fields, never a crash and never a gap.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from scorer.io import is_parquet, iter_raw_lines, iter_records, parse_line

CHUNK_LINES = 2048
CSV_HEADER = ("line", "score", "p_value", "is_anomaly")

Item = tuple[int, bytes | dict[str, Any]]  # (line, raw JSONL bytes or an already-parsed Parquet row)


@dataclass
class BatchStats:
    lines: int = 0
    scored: int = 0
    bad: int = 0
    anomalies: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


_worker: dict[str, Any] = {}


def _init_worker(model_dir: str, alpha: float | None, explain: bool, output_kind: str, threads: int) -> None:
    from scorer import bundle
    from scorer.detector import set_threads

    set_threads(threads)
    _worker["detector"] = bundle.load(model_dir)
    _worker["alpha"] = alpha
    _worker["explain"] = explain
    _worker["output_kind"] = output_kind


def _score_chunk(items: list[Item]) -> tuple[bytes, list[tuple[int, str]], dict[str, float], int, int]:
    """Parse, score and format one chunk; returns (output bytes, bad lines, stage seconds, scored, anomalies)."""
    detector = _worker["detector"]
    kind = _worker["output_kind"]
    started = time.perf_counter()
    events: list[dict[str, Any]] = []
    positions: list[int] = []
    parsed: list[tuple[int, dict[str, Any] | None, str | None, bytes | None]] = []
    for line, payload in items:
        event: dict[str, Any] | None
        if isinstance(payload, dict):
            event, error, raw = payload, None, None
        else:
            raw = payload
            event, error = parse_line(raw) if raw.strip() else (None, "empty line")
        if event is not None:
            positions.append(len(parsed))
            events.append(event)
        parsed.append((line, event, error, raw))
    parse_seconds = time.perf_counter() - started
    result = detector.score(events, alpha=_worker["alpha"], explain=_worker["explain"] and kind == "jsonl")
    slot = {pos: i for i, pos in enumerate(positions)}
    model = detector.model_info
    bad: list[tuple[int, str]] = []
    out = io.StringIO() if kind == "csv" else None
    chunks: list[bytes] = []
    writer = csv.writer(out, lineterminator="\n") if out is not None else None
    for pos, (line, event, error, raw) in enumerate(parsed):
        i = slot.get(pos)
        if i is None:
            bad.append((line, error or "not an event"))
            if writer is not None:
                writer.writerow((line, "", "", ""))
            else:
                text = (raw or b"").decode("utf-8", "replace")
                chunks.append(orjson.dumps({"_raw": text, "anomaly": {"error": error, "line": line}}))
            continue
        if writer is not None:
            writer.writerow(
                (
                    line,
                    f"{result.score[i]:.6g}",
                    f"{result.p_value[i]:.6g}",
                    "true" if result.is_anomaly[i] else "false",
                )
            )
        else:
            assert event is not None
            chunks.append(orjson.dumps({**event, "anomaly": result.anomaly(i, model)}))
    seconds = dict(result.seconds)
    seconds["parse"] = parse_seconds
    data = out.getvalue().encode() if out is not None else b"\n".join(chunks) + (b"\n" if chunks else b"")
    return data, bad, seconds, len(events), int(result.is_anomaly.sum())


def _chunks(path: Path, size: int) -> Iterator[list[Item]]:
    items: list[Item] = []
    source: Iterator[Any]
    if is_parquet(path):
        source = ((line, event if event is not None else b"") for line, event, _ in iter_records(path))
    else:
        source = iter_raw_lines(path)
    for item in source:
        items.append(item)
        if len(items) >= size:
            yield items
            items = []
    if items:
        yield items


def output_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise ValueError(f"output {path} must end in .csv or .jsonl")


def score_file(
    model_dir: Path,
    source: Path,
    output: Path,
    *,
    alpha: float | None = None,
    workers: int | None = None,
    chunk_lines: int = CHUNK_LINES,
    explain: bool = True,
    progress: bool = True,
    errors: IO[str] = sys.stderr,
) -> BatchStats:
    """Score every line of ``source`` into ``output`` (CSV or JSONL by extension), in input order."""
    from tqdm import tqdm

    kind = output_kind(output)
    if not source.exists():
        raise FileNotFoundError(f"no such input file: {source}")
    workers = workers or os.cpu_count() or 1
    stats = BatchStats()
    started = time.perf_counter()
    output.parent.mkdir(parents=True, exist_ok=True)
    # Workers are spawned, not forked: the parent may hold threads (tqdm's monitor) and torch state.
    context = multiprocessing.get_context("spawn")
    initargs = (str(model_dir), alpha, explain, kind, 1)
    with (
        ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=initargs) as pool,
        output.open("wb") as sink,
        tqdm(desc=f"scoring {source.name}", unit=" events", disable=not progress, smoothing=0.1) as bar,
    ):
        if kind == "csv":
            sink.write((",".join(CSV_HEADER) + "\n").encode())
        pending: deque[tuple[int, Future[Any]]] = deque()

        def drain(limit: int) -> None:
            while len(pending) > limit:
                count, future = pending.popleft()
                data, bad, seconds, scored, anomalies = future.result()
                sink.write(data)
                for line, error in bad:
                    print(f"{source}:{line}: {error}", file=errors)
                stats.lines += count
                stats.scored += scored
                stats.bad += len(bad)
                stats.anomalies += anomalies
                for stage, value in seconds.items():
                    stats.seconds[stage] = stats.seconds.get(stage, 0.0) + value
                bar.update(count)

        for chunk in _chunks(source, chunk_lines):
            pending.append((len(chunk), pool.submit(_score_chunk, chunk)))
            drain(2 * workers)
        drain(0)
    stats.wall_seconds = time.perf_counter() - started
    return stats
