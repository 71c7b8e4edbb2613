"""``ocsf-anomaly report``: a day of scored events as one self-contained HTML page (the ``[report]`` extra)."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path

from scorer.cli import (
    CONFIG_HELP,
    Commands,
    _alpha,
    _bundle,
    _counted,
    _existing,
    _file_out,
    _require_extra,
    _say,
)

DESCRIPTION = """\
Turn a day of scored events (what `score`, `score-spark` or the service wrote: JSON Lines, .gz, Parquet,
or a directory of part files) into one HTML file that opens with no network: anomalies over the day by
class and hour, the top entities, the top anomalous events with their reasons and nearest normal events,
the score distribution against each group's threshold, the realised anomaly rate against alpha, drift
signs per class, and the model versions that scored them. Days are UTC days of OCSF `time`.

With --model (the bundle that scored the events, or a registry URI), the drift columns compare the day
with that model's calibration and baseline.
"""

EXAMPLES = """\
examples:
  ocsf-anomaly report data/demo/scored.jsonl --output report.html                  # the latest day
  ocsf-anomaly report scored/ --day 2026-12-01 --model models:/netflow@champion --output 2026-12-01.html
"""


def add_commands(commands: Commands) -> None:
    parser = commands.add_parser(
        "report",
        help="a day of scored events as an HTML report",
        description=DESCRIPTION,
        epilog=EXAMPLES,
    )
    parser.add_argument("scored", type=Path, metavar="SCORED", help="scored events: a file or a directory")
    parser.add_argument("--output", "-o", required=True, type=_file_out, help="the HTML file to write")
    parser.add_argument("--day", default=None, help="YYYY-MM-DD (UTC; default: the latest day in the data)")
    parser.add_argument(
        "--model",
        "-m",
        default=None,
        help="the bundle that scored them (directory or models:/NAME@ALIAS), for drift",
    )
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=None,
        help="the alpha they were scored at (default: the bundle's, else 0.01)",
    )
    parser.add_argument(
        "--config",
        type=_existing,
        default=None,
        help=f"{CONFIG_HELP} (its registry_uri resolves models:/ URIs)",
    )
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    _require_extra("report", "report", "plotly", "jinja2")
    from scorer import report
    from scorer.io import refuse_writing_over
    from scorer.settings import anomaly_field

    refuse_writing_over(args.output, [args.scored])
    field = anomaly_field(args.config)  # reads a --config file whole: one not valid is refused
    with _bundle(args.model, args.config) if args.model else nullcontext(None) as bundle_dir:
        day, record = report.write_report(
            args.scored,
            args.output,
            day=args.day,
            alpha=args.alpha,
            bundle_dir=bundle_dir,
            log=_say,
            field=field,
        )
    _say(
        f"wrote {args.output}: {day}, {_counted(record.events, 'event')}, {_counted(record.anomalies, 'anomaly', 'anomalies')}"
    )
    return 0
