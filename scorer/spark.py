"""Score OCSF event lakes on Apache Spark with the engine's one scoring pipeline (``score-spark``).

Spark only moves the data: every Python worker loads the bundle once (shipped to the executors by
path with ``SparkContext.addFile``, verified by its digests where it lands; never the network or
the FAISS index pickled through a closure) and scores Arrow batches with :meth:`Detector.score`,
exactly as ``ocsf-anomaly score`` does. The driver loads the bundle first, so a missing or altered
one fails before any task runs.

- JSON Lines in (files or directories, ``.gz`` too): each line is read as bytes and written back as
  the same event with its ``anomaly`` object added (JSON Lines part files, uncompressed). A line that
  is not a JSON object (invalid UTF-8 included) keeps its text in ``_raw`` and gets
  ``anomaly.error``, as ``score`` writes it: the job goes on.
- Parquet in (nested OCSF): every column is passed through untouched and an ``anomaly`` struct
  column (:data:`ANOMALY`) is added (replacing the one a scored lake already has); written as
  Parquet. The reasons' ``value`` and ``typical`` are JSON text there (a number or a string), since
  a Parquet column holds one type.

The output is partitioned like the input (``key=value`` directories), and a summary (events,
anomalies and unscorable rows by class_uid and day, UTC) is written beside it as ``OUTPUT-summary``.

PySpark is the optional extra ``[spark]``; nothing else in the package imports this module. Run it
with ``ocsf-anomaly score-spark`` (its own local or remote master) or ``spark-submit`` this file with
the same arguments (the master is spark-submit's).
"""

from __future__ import annotations

import itertools
import os
import posixpath
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import orjson
import pyarrow as pa

from scorer.batch import flagged_warning
from scorer.errors import UserError
from scorer.io import arrow_rows, dumps, from_parquet, not_events, parse_line

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

    from scorer.detector import Detector

# The `anomaly` object of `ocsf-anomaly score`, as one Arrow/Spark type: declared, never inferred.
REASON = pa.struct(
    [
        ("field", pa.string()),
        ("value", pa.string()),  # JSON text: a number or a string
        ("typical", pa.string()),
        ("deviation", pa.float64()),
    ]
)
ANOMALY = pa.struct(
    [
        ("score", pa.float64()),
        ("p_value", pa.float64()),
        ("is_anomaly", pa.bool_()),
        ("threshold", pa.float64()),
        ("calibration_group", pa.string()),
        ("reasons", pa.list_(REASON)),
        ("neighbors", pa.list_(pa.string())),
        ("model", pa.struct([("name", pa.string()), ("version", pa.string())])),
        ("error", pa.string()),  # why the row could not be scored (then every other field is null)
    ]
)
BATCH_SIZE = 2048  # rows an Arrow batch hands a worker: the file scorer's chunk
SUMMARY_SUFFIX = "-summary"


def _quoted(field: str) -> str:
    """``field`` as Spark's column references name it: a name holding "." or "`" is no path."""
    return "`" + field.replace("`", "``") + "`"


def summary_schema(field: str) -> str:
    """What the summary reads of a scored lake, its verdicts under ``field``."""
    return f"class_uid long, time string, {_quoted(field)} struct<is_anomaly: boolean, error: string>"


# the epoch milliseconds of the first and the last moment of years 1 to 9999 (a day as `report` reads one)
FIRST_MS, LAST_MS = -62_135_596_800_000, 253_402_300_799_999


class SparkJobError(UserError, RuntimeError):
    """The Spark job cannot start or failed, with what to do."""


@dataclass
class SparkStats:
    """What a ``score-spark`` run did."""

    output: str
    summary: str
    output_format: str
    events: int
    anomalies: int
    errors: int
    seconds: float
    by_class_day: list[tuple[Any, str | None, int, int, int]]  # (class_uid, day, events, anomalies, errors)


# ---------------------------------------------------------------------------------------- worker side
_loaded: dict[tuple[str, str], Any] = {}  # (bundle path, bundle version) -> Detector, per Python worker


def _detector(name: str, version: str) -> Any:
    """This worker's detector: loaded (and verified) on the first batch, then kept while the worker
    lives (Spark reuses Python workers across tasks)."""
    from pyspark import SparkFiles, TaskContext

    path = SparkFiles.get(name)
    key = (path, version)
    if key not in _loaded:
        from scorer.detector import Detector
        from scorer.threads import set_threads

        context = TaskContext.get()
        set_threads(context.cpus() if context is not None else 1)  # one thread per task slot
        detector = Detector.load(path)
        found = detector.model_info["version"]
        if found != version:
            raise SparkJobError(
                f"the bundle shipped to this executor is {found}, the driver verified {version}"
            )
        _loaded.clear()  # one bundle per worker: a new job's bundle replaces the last one's
        _loaded[key] = detector
    return _loaded[key]


def model_fields(detector: Any) -> set[str]:
    """The top-level fields of an event the model reads: its features' and class_uid (calibration)."""
    return {"class_uid", *(feature.path.split(".", 1)[0] for feature in detector.encoder.spec.features)}


def anomaly_row(anomaly: dict[str, Any]) -> dict[str, Any]:
    """The `anomaly` object as a row of :data:`ANOMALY` (reasons' values as JSON text)."""
    return {
        **anomaly,
        "reasons": [
            {**r, "value": orjson.dumps(r["value"]).decode(), "typical": orjson.dumps(r["typical"]).decode()}
            for r in anomaly["reasons"]
        ],
    }


def score_text_batches(
    batches: Iterator[pa.RecordBatch],
    *,
    bundle_name: str,
    version: str,
    alpha: float | None,
    field: str = "anomaly",
) -> Iterator[pa.RecordBatch]:
    """mapInArrow over JSON Lines read as text: column ``value`` becomes the enriched event's JSON;
    other columns (the input's partition columns) pass through. Each line is taken as the bytes the
    file holds (Spark's text column is not checked for UTF-8): parsed as ``score`` parses them, and a
    bad line's ``_raw`` is its text as ``score`` writes it (bytes that are not UTF-8 replaced). An
    event lacking a field the model reads that a partition column holds (a lake partitioned by
    class_uid) is scored with the partition's value, and written as it came."""
    detector = _detector(bundle_name, version)
    model = detector.model_info
    read = model_fields(detector)
    for batch in batches:
        # lines end at LF (a CR is JSON's whitespace); a CR before it is not the line's (CRLF), as in `score`
        values = batch.column("value").cast(pa.binary()).to_pylist()
        lines: list[bytes] = [(raw or b"").rstrip(b"\r") for raw in values]
        partitions = {
            n: batch.column(n).to_pylist() for n in batch.schema.names if n != "value" and n in read
        }
        events: list[dict[str, Any]] = []
        parsed: list[tuple[dict[str, Any] | None, str | None]] = []
        for row, line in enumerate(lines):
            event, error = parse_line(line)
            parsed.append((event, error))
            if event is not None:
                known = {k: v[row] for k, v in partitions.items() if k not in event and v[row] is not None}
                events.append({**event, **known} if known else event)
        result = detector.score(events, alpha=alpha, explain=True)
        out: list[str] = []
        i = 0
        for line, (event, error) in zip(lines, parsed, strict=True):
            if event is None:
                text = line.decode("utf-8", "replace")
                out.append(orjson.dumps({"_raw": text, field: {"error": error}}).decode())
                continue
            # through the standard library past orjson's 254 levels, as `score` writes it
            out.append(dumps({**event, field: result.anomaly(i, model)}).decode())
            i += 1
        index = batch.schema.get_field_index("value")
        yield batch.set_column(index, "value", pa.array(out, pa.string()))


def score_row_batches(
    batches: Iterator[pa.RecordBatch],
    *,
    bundle_name: str,
    version: str,
    alpha: float | None,
    partition_columns: Sequence[str],
    field: str = "anomaly",
) -> Iterator[pa.RecordBatch]:
    """mapInArrow over Parquet rows: every column passes through; an ``anomaly`` column is added, last
    (a scored lake's own ``anomaly`` column is replaced, as ``score`` replaces the key). Each row
    becomes the event ``score`` reads from the same Parquet file (``io.from_parquet``: nulls dropped,
    JSON's types; the directory's partition columns left out), but for a field the model reads: a lake
    partitioned by class_uid holds it in its folders' names only (Spark's and pyarrow's writers leave
    it out of the files), and the event without it would be scored in another calibration group."""
    detector = _detector(bundle_name, version)
    model = detector.model_info
    drop = set(partition_columns) - model_fields(detector)
    for batch in batches:
        events = [{k: v for k, v in from_parquet(row).items() if k not in drop} for row in arrow_rows(batch)]
        result = detector.score(events, alpha=alpha, explain=True)
        anomalies = pa.array([anomaly_row(result.anomaly(i, model)) for i in range(len(events))], ANOMALY)
        kept = [i for i, name in enumerate(batch.schema.names) if name != field]
        yield pa.RecordBatch.from_arrays(
            [*(batch.column(i) for i in kept), anomalies],
            schema=pa.schema([batch.schema.field(i) for i in kept]).append(pa.field(field, ANOMALY)),
        )


# ---------------------------------------------------------------------------------------- driver side
# A lake's data files by name, as `score` reads a file (.gz: JSON Lines, gzipped), in any case
DATA_NAMES = {"parquet": (".parquet",), "json": (".jsonl", ".json", ".ndjson", ".gz")}


@dataclass
class Layout:
    """How Spark is to read INPUT, decided from its files' names and folders before any task runs."""

    fmt: str  # "parquet" or "json"
    options: dict[str, str]  # the reader's: which files (by name), and whether key=value folders partition
    partition_keys: list[str]  # the keys of its key=value folders, outermost first
    skipped: list[str]  # files of a directory not read, not named as data (relative to INPUT)


def _glob(suffixes: Sequence[str]) -> str:
    """Hadoop's glob of the file names that end in one of ``suffixes``, in any case (its globs have no
    flag for that: each letter as [xX])."""
    cased = ("".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in suffix) for suffix in suffixes)
    return "*{" + ",".join(cased) + "}"


def _is_key(folder: str) -> bool:
    """A ``key=value`` folder, as Spark's partition discovery reads one."""
    return folder.find("=") > 0


def _some(paths: Sequence[str]) -> str:
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3:,} more" if len(paths) > 3 else "")


def lake_layout(spark: SparkSession, source: str, requested: str = "auto") -> Layout:
    """How to read ``source``: a file as its name says (.parquet Parquet, anything else JSON Lines, as
    ``score`` reads it) or as ``requested``. A directory's files, found at any depth (Spark's own,
    named _… or .…, left out), by their names: .parquet, or .jsonl/.json/.ndjson/.gz (both kinds
    refused), others not read (unless a format is ``requested``: then every file is read as it).
    Spark reads key=value folders as partitions only when every file lies below the same keys (else
    it leaves files out, or fails): a lake without them is read whole, at any depth; one whose files
    are not all below the same keys is refused, naming a file."""
    fs, root = _hadoop_path(spark, source)
    depth = len(_segments(fs.makeQualified(root).toUri().getRawPath()))
    listed = sorted(spark.read.option("recursiveFileLookup", "true").text(source).inputFiles())
    found = [[unquote(s) for s in _segments(urlsplit(f).path)[depth:]] for f in listed]
    if found == [[]]:  # INPUT is a file
        name = root.getName().lower()
        fmt = requested if requested != "auto" else "parquet" if name.endswith(".parquet") else "json"
        return Layout(fmt, {}, [], [])
    if not found:
        raise SparkJobError(f"no file to score under {source} (names beginning with _ or . are not read)")
    paths = ["/".join(f) for f in found]
    options: dict[str, str] = {}
    skipped: list[str] = []
    if requested == "auto":
        kinds = {fmt: [p for p in paths if p.lower().endswith(names)] for fmt, names in DATA_NAMES.items()}
        if kinds["parquet"] and kinds["json"]:
            raise SparkJobError(
                f"{source} holds Parquet ({_some(kinds['parquet'])}) and JSON Lines "
                f"({_some(kinds['json'])}) files: score each kind apart (--format parquet or --format json "
                "reads every file as that format)"
            )
        fmt = "parquet" if kinds["parquet"] else "json"
        if not kinds[fmt]:
            raise SparkJobError(
                f"no .parquet, .jsonl, .json, .ndjson or .gz file under {source} ({_some(paths)}): "
                "--format json or --format parquet reads every file as that format"
            )
        data = set(kinds[fmt])
        skipped = [p for p in paths if p not in data]
        found = [f for f, p in zip(found, paths, strict=True) if p in data]
        options["pathGlobFilter"] = _glob(DATA_NAMES[fmt])
    else:
        fmt = requested
    if not any(_is_key(folder) for f in found for folder in f[:-1]):
        options["recursiveFileLookup"] = "true"  # else Spark reads only INPUT's own files
        return Layout(fmt, options, [], skipped)
    shapes = [_partition_keys(f[:-1]) for f in found]
    keys = next(k for k in shapes if k)
    bad = next((f for f, k in zip(found, shapes, strict=True) if k != keys), None)
    if bad is not None:
        good = found[shapes.index(keys)]
        raise SparkJobError(
            f"{source} is partitioned in key=value folders ({'/'.join(good)}) but {'/'.join(bad)} is not "
            "below folders of the same keys (Spark would leave it out, or fail): score it apart, or "
            "move it into the lake's key=value folders"
        )
    return Layout(fmt, options, keys, skipped)


def _partition_keys(folders: Sequence[str]) -> list[str]:
    """The keys of a file's partition as Spark reads them: the key=value folders it lies in, from
    INPUT down, and then only other folders (none: the file is no partition's)."""
    chain = list(itertools.takewhile(_is_key, folders))
    if any(map(_is_key, folders[len(chain) :])):
        return []
    return [folder.split("=", 1)[0] for folder in chain]


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def summary_path(output: str) -> str:
    return output.rstrip("/") + SUMMARY_SUFFIX


def local_path(path: str) -> Path | None:
    """The file or directory of this machine ``path`` names (a plain path or a ``file:`` URI), or None
    for another file system's URI (``hdfs://``, ``s3a://``, ...)."""
    split = urlsplit(path)
    if split.scheme == "file":
        return Path(split.path)
    return None if "://" in path else Path(path)


def _location(path: str) -> tuple[str, ...]:
    """Where ``path`` is, comparable with another: a local path resolved (the working directory, ``..``,
    symbolic links), another file system's URI by scheme, authority and normalised path."""
    local = local_path(path)
    if local is not None:
        return ("file", *local.resolve().parts)
    split = urlsplit(path)
    segments = posixpath.normpath("/" + split.path).split("/")
    return (split.scheme.lower(), split.netloc.lower(), *(s for s in segments if s))


def check_output(source: str, output: str) -> None:
    """Refuse an OUTPUT (or OUTPUT-summary) that is INPUT, lies inside it (the next run of the lake
    would read the scores as events) or holds it (--overwrite would delete the lake before reading it)."""
    lake = _location(source)
    for what, path in (("OUTPUT", output), ("OUTPUT-summary", summary_path(output))):
        place = _location(path)
        if place == lake:
            relation = "is"
        elif place[: len(lake)] == lake:
            relation = "is inside"
        elif lake[: len(place)] == place:
            relation = "holds"
        else:
            continue
        raise SparkJobError(
            f"{what} {path} {relation} INPUT {source}: write the scores to a directory outside INPUT "
            "that does not hold it"
        )


def session(master: str | None, *, batch_size: int = BATCH_SIZE) -> SparkSession:
    """The Spark session: ``master`` None means the one spark-submit configured. The executors run this
    interpreter unless PYSPARK_PYTHON (or spark.pyspark.python) says otherwise. Field names are read
    with their case (spark.sql.caseSensitive): a session shared with other work is set so too."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("ocsf-anomaly score-spark")
    if master is not None:
        builder = builder.master(master)
        if master.startswith("local"):  # this machine's workers: this interpreter, unless told otherwise
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        builder.config("spark.sql.session.timeZone", "UTC")
        # field names as JSON and `score` read them: a vendor's unmapped.Hot beside unmapped.hot
        # made Spark refuse the lake ("The column `hot` already exists")
        .config("spark.sql.caseSensitive", "true")
        .config("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    _quiet_failed_tasks(spark)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
    return spark


# What a failed job logs on the driver before the error that says why in one line: its Java stack
# traces, 100 to 300 lines (a local executor's, the task scheduler's, the writer's as it aborts the
# task and the job), and the warnings that follow (a task's temporary files it could not delete, a
# missing path's trace). The executors' own logs and Spark's UI keep them.
QUIET_LOGGERS = {
    "org.apache.spark.executor.Executor": "OFF",
    "org.apache.spark.scheduler.TaskSetManager": "OFF",
    "org.apache.spark.sql.execution.datasources.FileFormatWriter": "OFF",
    "org.apache.spark.util.Utils": "OFF",
    "org.apache.hadoop.mapreduce.lib.output.FileOutputCommitter": "ERROR",
    "org.apache.spark.sql.execution.streaming.sinks.FileStreamSink": "ERROR",
}


def _quiet_failed_tasks(spark: SparkSession) -> None:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    log4j = jvm.org.apache.logging.log4j
    for name, level in QUIET_LOGGERS.items():
        log4j.core.config.Configurator.setLevel(name, log4j.Level.toLevel(level))


def verify_bundle(bundle_dir: Path) -> str:
    """Load the bundle (verifying every file's digest) and return its version: a missing or altered
    bundle fails here, before Spark starts."""
    from scorer.detector import Detector

    return str(Detector.load(bundle_dir).model_info["version"])


@dataclass
class Scored:
    """A lake's events scored lazily: ``frame`` runs the engine when an action asks for its rows."""

    frame: DataFrame
    read: DataFrame  # the lake as read, unscored
    fmt: str  # "json": one column `value` (the enriched event's JSON); "parquet": the input's columns + `anomaly`
    partition_columns: list[str]
    skipped: list[str]  # INPUT's files not read: not named as data (relative to INPUT)


def scored_frame(
    spark: SparkSession,
    bundle_dir: Path,
    version: str,
    source: str,
    *,
    alpha: float | None = None,
    partitions: int | None = None,
    fmt: str = "auto",
    field: str = "anomaly",
) -> Scored:
    """The events of ``source`` with their scores, as a DataFrame, scored by the bundle in ``bundle_dir``
    (whose version :func:`verify_bundle` returned): each executor's Python workers load their shipped
    copy once and refuse any other version."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType

    try:
        layout = lake_layout(spark, source, fmt)
        fmt = layout.fmt
        # Parquet: every file's columns, not one file's alone: a column some files lack (an
        # optional OCSF field) was left out of every event, and out of the output
        reader = spark.read.option("mergeSchema", "true").options(**layout.options)
        frame = reader.option("lineSep", "\n").text(source) if fmt == "json" else reader.parquet(source)
    except (PySparkException, Py4JJavaError) as exc:  # not there, not listable, a Parquet file damaged
        reason = _java_reason(exc.java_exception) if isinstance(exc, Py4JJavaError) else _first_line(exc)
        raise SparkJobError(f"cannot read {source}: {reason}") from None
    # the key=value folders' columns (a column of the files themselves is none of them)
    parts = [column for column in frame.columns if column in layout.partition_keys]
    spark.sparkContext.addFile(str(bundle_dir.resolve()), recursive=True)
    name = bundle_dir.resolve().name
    if partitions is None:  # scoring costs far more than a shuffle: never leave task slots idle
        partitions = spark.sparkContext.defaultParallelism
        if frame.rdd.getNumPartitions() >= partitions:
            partitions = None
    read = frame
    if partitions:
        frame = frame.repartition(partitions)
    if fmt == "json":
        scored = frame.mapInArrow(
            partial(score_text_batches, bundle_name=name, version=version, alpha=alpha, field=field),
            frame.schema,
        )
    else:
        # a scored lake scored again (a new model): its `anomaly` column is replaced, not added twice
        kept = [column for column in frame.schema.fields if column.name != field]
        schema = StructType([*kept, StructField(field, from_arrow_type(ANOMALY))])
        scored = frame.mapInArrow(
            partial(
                score_row_batches,
                bundle_name=name,
                version=version,
                alpha=alpha,
                partition_columns=parts,
                field=field,
            ),
            schema,
        )
    return Scored(scored, read, fmt, parts, layout.skipped)


def _first_line(exc: Any) -> str:
    return str(exc.getMessage()).strip().splitlines()[0]


def _java_reason(error: Any) -> str:
    """A failed job's Java exception in one line: Spark's first line, which names the file it could
    not read, and the cause at the bottom of the chain, which says why ("Unexpected end of input
    stream": a .gz cut short)."""
    reason = str(error.getMessage() or error.toString()).strip().splitlines()[0]
    cause = error
    while cause.getCause() is not None and not cause.getCause().equals(cause):
        cause = cause.getCause()
    if not cause.equals(error):
        why = str(cause.getMessage() or "").strip().splitlines()
        reason += f" ({cause.getClass().getSimpleName()}" + (f": {why[0]})" if why else ")")
    return reason


def score_lake(
    spark: SparkSession,
    bundle_dir: Path,
    version: str,
    source: str,
    output: str,
    *,
    alpha: float | None = None,
    partitions: int | None = None,
    fmt: str = "auto",
    overwrite: bool = False,
    log: Any = None,
    field: str = "anomaly",
    detector: Detector | None = None,
) -> SparkStats:
    """Score every event of ``source`` into ``output``, partitioned like ``source``, and write the
    summary beside it (:func:`scored_frame` says how). ``detector``: the bundle as the caller loaded
    it, for its warnings (else loaded here)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException, PythonException

    from scorer.batch import coverage_warnings
    from scorer.detector import Detector

    say = log or (lambda message: None)
    started = time.perf_counter()
    summary = summary_path(output)
    check_output(source, output)
    detector = detector or Detector.load(bundle_dir)  # its warnings, as `score` gives them
    if (why := detector.cannot_flag(alpha)) is not None:
        say(f"warning: {why}")
    scored = scored_frame(
        spark, bundle_dir, version, source, alpha=alpha, partitions=partitions, fmt=fmt, field=field
    )
    fmt, parts = scored.fmt, scored.partition_columns
    if scored.skipped:
        say(
            f"warning: not read, not named as {fmt} data ({', '.join(DATA_NAMES[fmt])}): {_some(scored.skipped)}"
        )
    for warning in coverage_warnings(detector, [_head(scored.read, fmt)]):
        say(f"warning: {warning}")
    say(f"scoring {source} ({fmt}; partitioned by {', '.join(parts) or 'nothing'}) with bundle {version}")
    writer = scored.frame.write.mode("overwrite" if overwrite else "errorifexists").partitionBy(*parts)
    # a failed job leaves the directories it made (empty, or part files): they would block the rerun
    created = [
        (fs, root) for fs, root in (_hadoop_path(spark, p) for p in (output, summary)) if not fs.exists(root)
    ]
    try:
        try:
            if fmt == "json":
                writer.option("compression", "none").text(output)
            else:
                writer.parquet(output)
        except AnalysisException as exc:
            exists = exc.getCondition() == "PATH_ALREADY_EXISTS"
            raise SparkJobError(
                f"cannot write {output}: {exc.getMessage()}"
                + (" (--overwrite replaces it)" if exists else "")
            ) from None
        except PythonException as exc:
            # a worker failed: its last line says why (the traceback is in the log)
            reason = str(exc).strip().splitlines()[-1]
            raise SparkJobError(f"scoring failed in a Spark worker: {reason}") from None
        except Py4JJavaError as exc:
            raise SparkJobError(f"the Spark job failed: {_java_reason(exc.java_exception)}") from None
        if fmt == "json":
            _name_parts(spark, output, ".txt", ".jsonl")
        say(f"wrote {output}; summarising by class_uid and day into {summary}")
        rows = _summarise(spark, output, fmt, summary, overwrite=overwrite, field=field)
        read = sum(r[2] for r in rows)
        if read == sum(r[4] for r in rows):  # not one event scored: not what INPUT was taken for
            raise _not_events(spark, source, output, fmt, read, field)
    except BaseException:
        for fs, root in created:
            fs.delete(root, True)
        raise
    stats = SparkStats(
        output=output,
        summary=summary,
        output_format=fmt,
        events=sum(r[2] for r in rows),
        anomalies=sum(r[3] for r in rows),
        errors=sum(r[4] for r in rows),
        seconds=time.perf_counter() - started,
        by_class_day=rows,
    )
    at = detector.config.alpha if alpha is None else alpha
    if (far := flagged_warning(stats.anomalies, stats.events - stats.errors, at)) is not None:
        say(f"warning: {far}")
    return stats


HEAD_EVENTS = 4096  # the events whose fields are checked before a lake is scored, as `score` checks


def _head(frame: DataFrame, fmt: str) -> list[tuple[int, bytes | dict[str, Any]]]:
    """The first HEAD_EVENTS rows of the lake as `score` reads them (a small job of its own); none
    where they cannot be read (a damaged file: the job that scores says which, in one line)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        rows = frame.limit(HEAD_EVENTS).collect()
    except (PySparkException, Py4JJavaError):
        return []
    if fmt == "json":
        return [(i, (row["value"] or "").encode()) for i, row in enumerate(rows, start=1)]
    return [(i, from_parquet(row.asDict(recursive=True))) for i, row in enumerate(rows, start=1)]


def _not_events(
    spark: SparkSession, source: str, output: str, fmt: str, read: int, field: str
) -> SparkJobError:
    """The error for an INPUT none of whose rows was scored: for a file of this machine what ``score``
    says of it (empty, or what it looks like instead: gzip, Parquet, UTF-16), else the first row's error."""
    local = local_path(source)
    if local is not None and local.is_file():
        return SparkJobError(str(not_events(local, read)))
    if not read:
        return SparkJobError(f"{source} holds no event: its files hold no rows")
    read_back = spark.read.schema(summary_schema(field)).json if fmt == "json" else spark.read.parquet
    frame = read_back(output)
    error = frame[_quoted(field)].getField("error")
    first = frame.where(error.isNotNull()).select(error).first()
    assert first is not None  # every row read is unscorable
    hint = ": is it JSON Lines, one OCSF event (a JSON object) per line?" if fmt == "json" else ""
    return SparkJobError(f"no row of {source} could be scored ({read:,} read; the first: {first[0]}){hint}")


def _hadoop_path(spark: SparkSession, path: str) -> tuple[Any, Any]:
    """``path`` as Spark writes it, on whatever file system it names: (Hadoop FileSystem, Hadoop Path)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    root = jvm.org.apache.hadoop.fs.Path(path)
    return root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), root


def _name_parts(spark: SparkSession, output: str, old: str, new: str) -> None:
    """Spark's text writer names its part files .txt: give them the extension of what they hold, on
    whatever file system OUTPUT is (through Hadoop's FileSystem API, as Spark wrote them)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    fs, root = _hadoop_path(spark, output)
    files = fs.listFiles(root, True)
    while files.hasNext():
        path = files.next().getPath()
        name = path.getName()
        if name.startswith("part-") and name.endswith(old):
            fs.rename(path, jvm.org.apache.hadoop.fs.Path(path.getParent(), name[: -len(old)] + new))


def _summarise(
    spark: SparkSession, output: str, fmt: str, summary: str, *, overwrite: bool, field: str
) -> list[tuple[Any, str | None, int, int, int]]:
    """Counts by class_uid and UTC day, read back from what was written (only the columns it needs)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    if fmt == "json":
        frame = spark.read.schema(summary_schema(field)).json(output)
    else:
        try:
            frame = spark.read.parquet(output)
        except AnalysisException as exc:
            # no rows, partitioned: Spark wrote no Parquet file (only _SUCCESS), so no schema to read
            if exc.getCondition() != "UNABLE_TO_INFER_SCHEMA":
                raise
            frame = spark.createDataFrame([], summary_schema(field))
        for name in ("class_uid", "time"):
            if name not in frame.columns:
                frame = frame.withColumn(name, F.lit(None).cast(LongType()))
    counts = (
        frame.select(
            F.col("class_uid").cast(LongType()).alias("class_uid"),
            F.date_format(_day(F.col("time"), frame.schema["time"].dataType), "yyyy-MM-dd").alias("day"),
            F.col(_quoted(field)).getField("is_anomaly").alias("is_anomaly"),
            F.col(_quoted(field)).getField("error").alias("error"),
        )
        .groupBy("class_uid", "day")
        .agg(
            F.count(F.lit(1)).alias("events"),
            F.sum(F.when(F.col("is_anomaly"), 1).otherwise(0)).alias("anomalies"),
            F.sum(F.when(F.col("error").isNotNull(), 1).otherwise(0)).alias("errors"),
        )
        .orderBy("day", "class_uid")
    )
    rows = counts.collect()  # one scan of the output; the few rows are written from here
    (
        spark.createDataFrame(rows, counts.schema)
        .coalesce(1)
        .write.mode("overwrite" if overwrite else "errorifexists")
        .option("header", True)
        .csv(summary)
    )
    return [(r.class_uid, r.day, int(r.events), int(r.anomalies), int(r.errors)) for r in rows]


def _day(time: Column, kind: DataType) -> Column:
    """The UTC day of OCSF's ``time`` as ``score`` and ``report`` read it: epoch milliseconds, a number
    or its text (a JSON lake's ``time`` is read as text: either); ISO 8601 text; or a lake's timestamp
    or date column. Anything else, or a moment outside years 1 to 9999: null."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, NumericType, StringType, TimestampNTZType, TimestampType

    if isinstance(kind, DateType | TimestampType | TimestampNTZType):
        return F.to_date(time)
    if not isinstance(kind, NumericType | StringType):
        return F.lit(None).cast(DateType())
    text = F.trim(time.cast("string"))
    ms = text.try_cast("double")
    moment = F.when(ms.between(FIRST_MS, LAST_MS), F.timestamp_millis(ms.cast("long")))
    if isinstance(kind, StringType):
        moment = F.when(ms.isNull(), text.try_cast("timestamp")).otherwise(moment)
    return F.to_date(moment)


def main(argv: Sequence[str] | None = None) -> int:
    """``spark-submit scorer/spark.py --model DIR INPUT OUTPUT ...``: the master is spark-submit's."""
    from scorer.cli import main as cli_main

    return cli_main(["score-spark", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    # run as a file (spark-submit): this package's directory must not shadow top-level modules
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    sys.exit(main())
