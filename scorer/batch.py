"""Score event files (JSONL, JSONL.gz, Parquet) with every core, in input order.

The main process loads (and so verifies) the bundle, reads and writes; worker processes, each with
its own copy of the bundle and one faiss/BLAS thread, parse, score and format chunks of lines. An
input of one chunk is scored in the main process (starting workers would cost more than it). Every
input line gets exactly one output line or row: a line that is not a JSON object is reported on
stderr with its number and gets empty score fields, never a crash and never a gap. The output
appears whole or not at all: it is written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from scorer.errors import UserError
from scorer.io import (
    BadLines,
    Source,
    Standard,
    dumps,
    is_parquet,
    iter_raw_lines,
    iter_records,
    make_folders,
    not_events,
    on_terminal,
    parse_line,
    plain_mode,
    refuse_writing_over,
    remove_folders,
)

CHUNK_LINES = 2048
# and at most about this many bytes of lines: 2,048 lines of 100 KB held 1.7 GB in the main process
# and 3 GB with its workers (the scale review), where lines of a few KB hold a tenth of it
CHUNK_BYTES = 8 << 20
# a file with more than this many times α of its events flagged (and at least FLAGGED_WARNING_LEAST) is
# warned of: attacks are seldom that many; events unlike the training events, or moved traffic, are
FLAGGED_WARNING = 10.0
FLAGGED_WARNING_LEAST = 20
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


class ScoringError(UserError, RuntimeError):
    """Scoring a file failed for a reason outside its content (a worker process died)."""


def _init_worker(
    model_dir: str,
    version: str,
    alpha: float | None,
    explain: bool,
    output_kind: str,
    field: str,
    threads: int,
) -> None:
    """Load the bundle the main process verified, ``version``: one replaced since (`train --output`
    onto it) is refused by every chunk, not scored by another model under the first one's checks."""
    from scorer.bundle import BundleError
    from scorer.detector import Detector
    from scorer.threads import set_threads

    set_threads(threads)
    changed = f"the model {model_dir} changed while the file was scored (it was bundle {version}"
    try:
        detector = Detector.load(model_dir)
    except BundleError as exc:  # said by every chunk: an initializer's error would read as a death
        _worker["changed"] = f"{changed}; it cannot be loaded now: {exc}): score again"
        return
    if (now := detector.model_info["version"]) != version:
        _worker["changed"] = f"{changed}, now bundle {now}): score again"
        return
    _setup(detector, alpha, explain, output_kind, field)


def _setup(detector: Any, alpha: float | None, explain: bool, output_kind: str, field: str) -> None:
    _worker["detector"] = detector
    _worker["alpha"] = alpha
    _worker["explain"] = explain
    _worker["output_kind"] = output_kind
    _worker["field"] = field


def _score_chunk(items: list[Item]) -> tuple[bytes, list[tuple[int, str]], dict[str, float], int, int]:
    """Parse, score and format one chunk; returns (output bytes, bad lines, stage seconds, scored, anomalies)."""
    if (changed := _worker.get("changed")) is not None:
        raise ScoringError(changed)
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
            event, error = parse_line(raw)
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
                chunks.append(orjson.dumps({"_raw": text, _worker["field"]: {"error": error, "line": line}}))
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
            chunks.append(dumps({**event, _worker["field"]: result.anomaly(i, model)}))
    seconds = dict(result.seconds)
    seconds["parse"] = parse_seconds
    data = out.getvalue().encode() if out is not None else b"\n".join(chunks) + (b"\n" if chunks else b"")
    return data, bad, seconds, len(events), int(result.is_anomaly.sum())


def _chunks(path: Source, size: int) -> Iterator[list[Item]]:
    """``size`` lines at a time, or fewer where they hold CHUNK_BYTES (Parquet rows: by count alone)."""
    items: list[Item] = []
    held = 0
    source: Iterator[Any]
    if isinstance(path, Path) and is_parquet(path):
        source = ((line, event if event is not None else b"") for line, event, _ in iter_records(path))
    else:
        source = iter_raw_lines(path)
    for item in source:
        items.append(item)
        if isinstance(item[1], bytes):
            held += len(item[1])
        if len(items) >= size or held >= CHUNK_BYTES:
            yield items
            items, held = [], 0
    if items:
        yield items


def output_kind(path: Source) -> str:
    if isinstance(path, Standard):
        return "jsonl"
    name = path.name.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise ValueError(
        f"output {path} must end in .csv (scores) or .jsonl, .ndjson or .json (events, as JSON Lines)"
    )


def score_file(
    model_dir: Path,
    source: Source,
    output: Source,
    *,
    alpha: float | None = None,
    workers: int | None = None,
    chunk_lines: int = CHUNK_LINES,
    explain: bool = True,
    progress: bool = True,
    errors: IO[str] | None = None,
    field: str = "anomaly",
) -> BatchStats:
    """Score every line of ``source`` into ``output`` (CSV or JSONL by extension), in input order;
    in JSON Lines each event gets its verdict under ``field``.

    The bundle is loaded here first, so that a bad one fails at once with its :class:`BundleError`;
    on any failure no output file is left behind (an existing one is kept as it was). ``source`` may
    be standard input (JSON Lines, gzip or not) and ``output`` standard output (JSON Lines, written
    as they are scored: a failure leaves what came before it). Warnings and bad lines go to
    ``errors``, by default the standard error stream of the moment of the call (a default of
    ``sys.stderr`` would be the stream of the moment of import, deaf to a redirection).
    """
    from tqdm import tqdm

    from scorer.detector import Detector

    errors = sys.stderr if errors is None else errors
    kind = output_kind(output)
    if isinstance(source, Path) and not source.exists():
        raise FileNotFoundError(f"no such input file: {source}")
    if isinstance(output, Standard) and sys.stdout is None:  # started with it closed (`>&-`)
        raise UserError("standard output is closed: name an --output file")
    if isinstance(output, Path):
        if output.is_dir():
            raise ValueError(f"the output {output} is a directory: name a file ending in .csv or .jsonl")
        if isinstance(source, Path):
            refuse_writing_over(output, [source])  # the rename at the end would replace the events
        if output.resolve().is_relative_to(Path(model_dir).resolve()):  # metadata.json replaced
            raise ValueError(
                f"the output {output} is inside the model bundle {model_dir}: name a file outside it"
            )
    detector = Detector.load(model_dir)
    if (why := detector.cannot_flag(alpha)) is not None:
        print(f"warning: {why}", file=errors)
    at = detector.config.alpha if alpha is None else alpha
    workers = workers or os.cpu_count() or 1
    chunks = _chunks(source, chunk_lines)
    head = list(itertools.islice(chunks, 2))
    for warning in coverage_warnings(detector, head):  # said before the work, as train and refresh say it
        print(f"warning: {warning}", file=errors)
    stats = BatchStats()
    said = BadLines(errors)
    started = time.perf_counter()
    made: list[Path] = []
    partial: str | None = None
    try:
        if isinstance(output, Standard):  # written as scored; standard output stays open
            opened: contextlib.AbstractContextManager[IO[bytes]] = contextlib.nullcontext(sys.stdout.buffer)
        else:
            made = make_folders(output.parent)
            handle, partial = tempfile.mkstemp(
                prefix=f".{output.name}.", suffix=".partial", dir=output.parent
            )
            plain_mode(Path(partial))
            opened = os.fdopen(handle, "wb")
        with (
            opened as sink,
            tqdm(
                desc=f"scoring {source.name}",
                unit=" events",
                file=sys.stderr,
                disable=not (progress and on_terminal(sys.stderr)),  # not into a log of `2>file`
                smoothing=0.1,
            ) as bar,
        ):
            if kind == "csv":
                sink.write((",".join(CSV_HEADER) + "\n").encode())

            def collect(
                count: int, result: tuple[bytes, list[tuple[int, str]], dict[str, float], int, int]
            ) -> None:
                data, bad, seconds, scored, anomalies = result
                sink.write(data)
                for line, error in bad:
                    said.say(f"{source}:{line}: {error}")
                stats.lines += count
                stats.scored += scored
                stats.bad += len(bad)
                stats.anomalies += anomalies
                for stage, value in seconds.items():
                    stats.seconds[stage] = stats.seconds.get(stage, 0.0) + value
                bar.update(count)

            if len(head) < 2 or workers == 1:  # one chunk, or one worker asked for: no processes
                _setup(detector, alpha, explain, kind, field)
                for chunk in itertools.chain(head, chunks):
                    collect(len(chunk), _score_chunk(chunk))
            else:
                version = detector.model_info["version"]
                del detector  # each worker loads its own copy, checked to be this one
                _score_in_workers(
                    itertools.chain(head, chunks),
                    (str(model_dir), version, alpha, explain, kind, field),
                    workers,
                    collect,
                )
            sink.flush()
        said.close()
        if not stats.scored:  # scores of nothing (or of an empty file): not what it was taken for
            raise not_events(source, stats.lines)
        if isinstance(output, Path):
            assert partial is not None
            os.replace(partial, output)
    except BaseException:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        remove_folders(made)  # nothing of a failed run remains
        raise
    stats.wall_seconds = time.perf_counter() - started
    if (far := flagged_warning(stats.anomalies, stats.scored, at)) is not None:
        print(f"warning: {far}", file=errors)
    return stats


def flagged_warning(anomalies: int, scored: int, alpha: float) -> str | None:
    """A warning when far more than α of the ``scored`` events were flagged (more than
    FLAGGED_WARNING × α, and at least FLAGGED_WARNING_LEAST): the model does not describe them,
    whatever attacks they hold."""
    if anomalies < FLAGGED_WARNING_LEAST or anomalies <= FLAGGED_WARNING * alpha * scored:
        return None
    return (
        f"{anomalies:,} of the {scored:,} events flagged ({anomalies / scored:.1%}), "
        f"far above α = {alpha:g}: these events are unlike those the model was trained on (events of "
        "another kind, or normal traffic that has moved: `ocsf-anomaly refresh` re-baselines on recent "
        "normal events; `evaluate` measures the model on labelled ones), unless they are mostly attacks"
    )


def coverage_warnings(detector: Any, head: list[list[Item]]) -> list[str]:
    """Whether the first chunks' events hold the model's fields: events of another kind score as if
    empty (all-missing), whatever they hold."""
    events = [
        event
        for chunk in head
        for _, payload in chunk
        if (event := payload if isinstance(payload, dict) else parse_line(payload)[0]) is not None
    ]
    if not events:
        return []  # not events at all: said once the file is read
    found = fields_held_by_none(detector, events, "events read first")
    if found is None:
        return []
    said, every = found
    if every:  # refused where a model is fitted; here, scored and flagged
        return [f"{said}; every one will be flagged"]
    return [f"{said}: they are not the kind of events the model describes, and each will be flagged"]


def fields_held_by_none(detector: Any, events: list[dict[str, Any]], what: str) -> tuple[str, bool] | None:
    """What to say of the ``events`` that hold none of the model's fields (the detector flags each,
    whatever it holds), and whether that is every one of them; None when each holds some. Fields
    absent from every event are no warning: a file of one class lacks the others' fields."""
    return said_of_empty(detector, detector.encoder.holding_none(events), len(events), what)


def said_of_empty(detector: Any, empty: int, events: int, what: str) -> tuple[str, bool] | None:
    """:func:`fields_held_by_none` of ``events`` events (``what``), ``empty`` of which hold none of
    the model's fields."""
    if not empty:
        return None
    if empty == events:  # every one: the encoder's message names the model's fields
        return detector.encoder.none_held(events, what), True
    return f"{empty:,} of the {events:,} {what} hold none of the model's fields", False


@contextlib.contextmanager
def _deaf(signums: tuple[int, ...], *, defer: bool) -> Iterator[None]:
    """``signums`` ignored within: a worker process started here inherits that (Ctrl-C reaches the
    terminal's whole process group, and a worker's own KeyboardInterrupt, in its start-up or in a
    chunk, printed its traceback under the command's "interrupted": the main process stops the
    workers), and a clean-up is not broken off by a second Ctrl-C (the pool's shutdown was, and the
    command hung for good at its exit, joining a worker blocked on a result nobody read).
    ``defer``: a signal that came meanwhile is delivered once the handlers are back (blocked, not
    lost). Main thread only: elsewhere Python has no handler to change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # (no pthread_sigmask on Windows: there a signal that comes meanwhile is lost)
    mask = (
        signal.pthread_sigmask(signal.SIG_BLOCK, signums)
        if defer and hasattr(signal, "pthread_sigmask")
        else None
    )
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _score_in_workers(
    chunks: Iterator[list[Item]],
    settings: tuple[str, str, float | None, bool, str, str],
    workers: int,
    collect: Callable[[int, Any], None],
) -> None:
    # Workers are spawned, not forked: the parent may hold threads (tqdm's monitor) and OpenMP state.
    context = multiprocessing.get_context("spawn")
    pending: deque[tuple[int, Future[Any]]] = deque()
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(*settings, 1)
        ) as pool:
            try:
                for chunk in chunks:
                    with _deaf((signal.SIGINT,), defer=True):  # the submit may start a worker
                        pending.append((len(chunk), pool.submit(_score_chunk, chunk)))
                    while len(pending) > 2 * workers:
                        count, future = pending.popleft()
                        collect(count, future.result())
                while pending:
                    count, future = pending.popleft()
                    collect(count, future.result())
            except BaseException:  # SIGTERM, Ctrl-C, a bad file: the workers end with the chunk in hand
                with _deaf((signal.SIGINT, signal.SIGTERM), defer=False):
                    pool.shutdown(cancel_futures=True)
                raise
    except BrokenProcessPool:
        raise ScoringError(
            "a scoring worker process died (out of memory? try fewer --workers); no output was written"
        ) from None
