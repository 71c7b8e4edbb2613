"""``ocsf-anomaly score-spark``: a lake of events scored on Apache Spark (the ``[spark]`` extra)."""

from __future__ import annotations

import argparse
import os
import re

from scorer.cli import (
    CONFIG_HELP,
    CliError,
    Commands,
    _alpha,
    _bundle,
    _counted,
    _dir_out,
    _existing,
    _positive,
    _require_extra,
    _say,
)

# Spark's master URLs (SparkContext's own patterns, and the cluster managers' schemes)
MASTER = re.compile(
    r"local(\[(\*|[0-9]+)(,[0-9]+)?\])?|local-cluster\[[0-9]+, *[0-9]+, *[0-9]+\]|yarn|(spark|k8s|mesos)://\S+"
)


def _master(text: str) -> str:
    if not MASTER.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Spark master: local, local[N], local[*], spark://HOST:PORT, yarn or k8s://URL"
        )
    return text


DESCRIPTION = """\
Score every OCSF event under INPUT on Apache Spark and write them, each with its `anomaly` added (the
same fields and scores as `ocsf-anomaly score`), to the directory OUTPUT, partitioned like INPUT
(key=value directories). Parquet in, Parquet out (`anomaly` a struct column; the reasons' value and
typical as JSON text); JSON Lines in (.jsonl, .json, .ndjson, .gz), JSON Lines part files out,
uncompressed, every event as it came plus `anomaly`. A directory's files are read at any depth, by
their names (other files are not read); a file whatever its name. A line that is not a JSON object
keeps its text in `_raw` and gets `anomaly.error`; the job goes on. A summary (events, anomalies and
errors by class_uid and UTC day) is written as CSV to OUTPUT-summary, beside OUTPUT. An INPUT of
which not one event is scored is an error, as with `score`.

The bundle is verified here before any task runs; each Python worker on the executors loads its
shipped copy once. Needs the [spark] extra (`pip install 'ocsf-anomaly[spark]'`) and Java 17 or 21,
and this package installed wherever executors run. Under spark-submit, run this module's file
(`spark-submit $(python -c 'import scorer.spark as s; print(s.__file__)') --model ... IN OUT`): the
master is then spark-submit's.
"""

EXAMPLES = """\
examples:
  ocsf-anomaly score-spark --model models/m1 lake/ scored/                  # local[*]
  ocsf-anomaly score-spark --model models:/netflow@champion lake/ scored/ --master spark://head:7077
  ocsf-anomaly score-spark --model models/m1 events.jsonl.gz scored/ --partitions 8 --overwrite
"""


def add_commands(commands: Commands) -> None:
    parser = commands.add_parser(
        "score-spark",
        help="score a lake of events (Parquet or JSON Lines) on Apache Spark",
        description=DESCRIPTION,
        epilog=EXAMPLES,
    )
    parser.add_argument("input", metavar="INPUT", help="a file or directory (local, hdfs://, s3a://, ...)")
    parser.add_argument(
        "output",
        metavar="OUTPUT",
        help="the directory to write, outside INPUT (must not exist, unless --overwrite)",
    )
    parser.add_argument(
        "--model",
        "-m",
        required=True,
        help="model bundle directory, or models:/NAME@ALIAS or models:/NAME/VERSION",
    )
    parser.add_argument(
        "--master",
        type=_master,
        default=None,
        help="Spark master: local[*] (default, every core of this machine), local[N], spark://HOST:PORT, yarn; "
        "under spark-submit, spark-submit's",
    )
    parser.add_argument(
        "--partitions",
        type=_positive,
        default=None,
        help="repartition the input into N parts first (default: as read, or one per task slot when it reads as fewer)",
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=2048, help="events a worker scores at once (default 2048)"
    )
    parser.add_argument(
        "--format",
        choices=("auto", "parquet", "json"),
        default="auto",
        help="input format (default: by the files' names: .parquet Parquet, .jsonl/.json/.ndjson/.gz JSON "
        "Lines, a directory's other files not read; a format named reads every file as it)",
    )
    parser.add_argument(
        "--alpha", type=_alpha, default=None, help="target false-positive rate (default: the bundle's, 0.01)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace OUTPUT and OUTPUT-summary if they exist"
    )
    parser.add_argument(
        "--config",
        type=_existing,
        default=None,
        help=f"{CONFIG_HELP} (its registry_uri resolves models:/ URIs)",
    )
    parser.set_defaults(handler=_score_spark)


def _score_spark(args: argparse.Namespace) -> int:
    _require_extra("score-spark", "spark", "pyspark", "pandas")
    from scorer.settings import anomaly_field

    field = anomaly_field(args.config)  # reads a --config file whole: one not valid is refused
    from scorer import spark as lake

    lake.check_output(args.input, args.output)  # before --overwrite is offered for an OUTPUT holding INPUT
    _check_local_paths(args.input, args.output, lake.summary_path(args.output), overwrite=args.overwrite)
    # spark-submit starts this process with its JVM gateway waiting: its master and settings apply
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    master = args.master if args.master or submitted else "local[*]"
    from scorer.detector import Detector

    with _bundle(args.model, args.config) as bundle_dir:
        detector = Detector.load(bundle_dir)  # before Spark starts: a bad bundle is a one-line error
        _say(f"starting Spark ({master or 'as spark-submit set it'})")
        spark = lake.session(master, batch_size=args.batch_size)
        try:
            stats = lake.score_lake(
                spark,
                bundle_dir,
                detector.model_info["version"],
                args.input,
                args.output,
                alpha=args.alpha,
                partitions=args.partitions,
                fmt=args.format,
                overwrite=args.overwrite,
                log=_say,
                field=field,
                detector=detector,
            )
        finally:
            if not submitted:
                spark.stop()
    rate = stats.events / stats.seconds if stats.seconds else 0.0
    _say(
        f"scored {_counted(stats.events, 'event')} into {stats.output} ({stats.output_format}) in {stats.seconds:.1f} s "
        f"({rate:,.0f} events/s): {_counted(stats.anomalies, 'anomaly', 'anomalies')}, "
        f"{stats.errors:,} unscorable; summary: {stats.summary}"
    )
    for class_uid, day, events, anomalies, errors in stats.by_class_day[:20]:
        print(
            f"{day or '-':<10}  class_uid {class_uid if class_uid is not None else '-':<6}  "
            f"{events:>10,} events  {anomalies:>8,} anomalies  {errors:>6,} errors"
        )
    if len(stats.by_class_day) > 20:
        print(f"... {len(stats.by_class_day) - 20} more rows in {stats.summary}")
    return 0


def _check_local_paths(source: str, output: str, summary: str, *, overwrite: bool) -> None:
    """What can be checked before the JVM starts, on this machine's own files (a remote lake's paths
    are Spark's to check): the input exists; the output and its summary do not, unless they are to be
    replaced, and can be made where they are to be (directories, where new files can be made)."""
    from scorer.spark import local_path

    source_path = local_path(source)
    if source_path is not None and not source_path.exists():
        raise CliError(f"no such input: {source_path}")
    for path in filter(None, map(local_path, (output, summary))):
        if not overwrite and path.exists():
            raise CliError(f"{path} exists: --overwrite replaces OUTPUT and OUTPUT-summary")
        try:
            _dir_out(str(path))
        except argparse.ArgumentTypeError as exc:
            raise CliError(str(exc)) from None
