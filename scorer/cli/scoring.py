"""``ocsf-anomaly score``, ``evaluate``, ``refresh`` and ``split``: a trained bundle applied to files of
events, measured on labelled ones, refreshed on recent ones; and a labelled file split for evaluation."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from scorer.cli import (
    CONFIG_HELP,
    CliError,
    Commands,
    _alpha,
    _bundle,
    _bundle_out,
    _check_config,
    _check_model,
    _counted,
    _dir_out,
    _existing,
    _file_in,
    _file_out,
    _fraction,
    _register,
    _registry,
    _say,
    _seed,
    _workers,
)
from scorer.io import STDIN, STDOUT, Source

MODEL_HELP = "model bundle directory, or models:/NAME@ALIAS or models:/NAME/VERSION of the registry"


def add_commands(commands: Commands) -> None:
    score = commands.add_parser(
        "score",
        help="score an events file",
        description=(
            "Score every line of INPUT. OUTPUT ending in .jsonl (or .ndjson, .json: JSON Lines all three) gets "
            "each event with an `anomaly` object added; "
            "ending in .csv gets `line,score,p_value,is_anomaly`, one row per input line in input order. "
            "`-` reads standard input (JSON Lines, gzip or not) and writes standard output (JSON Lines, "
            "as they are scored), e.g. `zcat a.jsonl.gz | ocsf-anomaly score - -m M -o - | jq`; a file "
            "named - is ./-. "
            "Bad lines are reported on stderr; in CSV they get empty score fields, in JSON Lines they become "
            '{"_raw": <the line>, "anomaly": {"error": ..., "line": N}}.'
        ),
        epilog="""\
examples:
  ocsf-anomaly score new.jsonl.gz --model models/m1 --output scored.jsonl
  ocsf-anomaly score new.parquet --model models:/netflow@champion --output scores.csv --alpha 0.001
  zcat new.jsonl.gz | ocsf-anomaly score - --model models/m1 --output - | jq 'select(.anomaly.is_anomaly)'
""",
    )
    score.add_argument(
        "input",
        type=_score_input,
        metavar="INPUT",
        help="JSONL, JSONL.gz or Parquet file of OCSF events, or -",
    )
    score.add_argument("--model", "-m", required=True, help=MODEL_HELP)
    score.add_argument(
        "--output", "-o", required=True, type=_score_output, help="OUT.jsonl (.ndjson, .json), OUT.csv, or -"
    )
    score.add_argument(
        "--alpha", type=_alpha, default=None, help="target false-positive rate (default: the bundle's, 0.01)"
    )
    score.add_argument(
        "--workers", type=_workers, default=None, help="worker processes (default: one per core)"
    )
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    _config_option(score)

    score.set_defaults(handler=_score)

    evaluate = commands.add_parser(
        "evaluate",
        help="measure detection quality on labelled events",
        description=(
            "Print ROC-AUC, PR-AUC, recall and realised false-positive rate at alpha for the model's three score "
            "kinds, and for two baselines fitted on the normal events of TRAIN_EVENTS in the same run: k-NN "
            "(k = 20) on raw features and IsolationForest, each thresholded on a held-out fifth. The last "
            "column, recall@raw-FPR, compares every score at one false-alarm budget: the false-positive rate "
            "that raw k-NN's own threshold realised on EVENTS. Then 95% intervals: of ROC-AUC (DeLong), of "
            "its difference from raw k-NN's on the same events (DeLong, paired: above raw k-NN where the "
            "interval lies above 0), of recall and false-positive rate at alpha (Wilson). With an "
            "attack column in LABELS (line,label,attack), the figures of each attack type."
        ),
        epilog="""\
examples:
  ocsf-anomaly evaluate test.jsonl.gz --labels test.labels.csv --model models/m1 --train normal.jsonl.gz
  ocsf-anomaly evaluate test.jsonl.gz --labels test.labels.csv --model models/m1 --train normal.jsonl.gz \\
      --alpha 0.001 --json > report.json
""",
    )
    evaluate.add_argument("events", type=_existing, metavar="EVENTS", help="labelled events to evaluate on")
    evaluate.add_argument("--model", "-m", required=True, help=MODEL_HELP)
    evaluate.add_argument(
        "--labels",
        required=True,
        type=_existing,
        help="CSV with line,label[,attack] (1 = attack; attack: its type), one row for every line of EVENTS",
    )
    evaluate.add_argument(
        "--train",
        required=True,
        type=_existing,
        metavar="TRAIN_EVENTS",
        help="the events the model was trained on (for the baselines)",
    )
    evaluate.add_argument(
        "--train-labels", type=_existing, default=None, help="labels of --train, if it holds attacks too"
    )
    evaluate.add_argument(
        "--alpha", type=_alpha, default=0.01, help="target false-positive rate (default 0.01)"
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed of the baselines' held-out split (and of their sample of a --train of over 200,000 normal events)",
    )
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    _config_option(evaluate)

    evaluate.set_defaults(handler=_evaluate)

    refresh = commands.add_parser(
        "refresh",
        help="bring recent normal traffic into the baseline and recalibrate, keeping the network",
        description=(
            "Normal traffic drifts: a model of last month may flag more than α of this month's normal events. "
            "`refresh` adds RECENT events (vetted normal, or traffic with few attacks) to the k-NN baseline, "
            "newest kept, and re-fits the calibration on a held-out fifth of them; `--calibration-only` just "
            "re-fits the calibration. The events the model flags are left out of the baseline (unless "
            "--keep-flagged); attacks among RECENT make thresholds stricter, never looser. "
            "BENCHMARKS.md (drift) shows what each does."
        ),
        epilog="""\
examples:
  ocsf-anomaly refresh last-week.jsonl.gz --model models/m1 --output models/m1-refreshed
  ocsf-anomaly refresh last-week.jsonl.gz --model models:/netflow@champion --register netflow --calibration-only
""",
    )
    refresh.add_argument(
        "events", nargs="+", type=_existing, metavar="RECENT", help="recent events, mostly normal"
    )
    refresh.add_argument("--model", "-m", required=True, help=f"the model to start from: {MODEL_HELP}")
    refresh.add_argument(
        "--output",
        "-o",
        default=None,
        type=_bundle_out,
        help="bundle directory to write: new, empty, or a bundle, which is replaced",
    )
    refresh.add_argument(
        "--register",
        metavar="NAME",
        default=None,
        help="log the refreshed bundle to the registry as a new version of model NAME (the first "
        "version of a model becomes its champion; a later one serves once promoted: "
        "`ocsf-anomaly models promote VERSION --name NAME`)",
    )
    refresh.add_argument(
        "--calibration-only", action="store_true", help="keep the baseline, re-fit calibration only"
    )
    refresh.add_argument(
        "--keep-flagged",
        action="store_true",
        help=(
            "add to the baseline the events the model flags at its α too (by default they are left out: "
            "an attack in the baseline hides every later one like it). Only for vetted normal events, "
            "when normal traffic has moved so far that the model flags many of them"
        ),
    )
    _config_option(refresh)

    refresh.set_defaults(handler=_refresh)

    split = commands.add_parser(
        "split",
        help="seeded line-level split of a labelled file for evaluation",
        description="Write train_normal.jsonl.gz (normal lines of one side), test.jsonl.gz and test.labels.csv (the other side).",
        epilog="""\
examples:
  ocsf-anomaly split labelled.jsonl.gz --labels labelled.labels.csv --output splits/    # seeded, by line
  ocsf-anomaly split labelled.jsonl.gz --labels labelled.labels.csv --output splits/ --ordered --fraction 0.5
""",
    )
    split.add_argument(
        "events", type=_existing, metavar="EVENTS", help="JSONL, JSONL.gz or Parquet file of OCSF events"
    )
    split.add_argument(
        "--labels",
        required=True,
        type=_existing,
        help=(
            "CSV with line,label[,attack] (1 = attack; attack: its type, kept), line 1-based in EVENTS; "
            "lines without a label are left out"
        ),
    )
    split.add_argument(
        "--output", "-o", required=True, type=_dir_out, help="directory to write the three files to"
    )
    split.add_argument("--seed", type=_seed, default=0, help="seed of the random split (default 0)")
    split.add_argument(
        "--fraction", type=_fraction, default=0.5, help="share of lines on the training side (default 0.5)"
    )
    split.add_argument(
        "--ordered",
        action="store_true",
        help="train on the first lines of the file, test on the rest (drift)",
    )
    split.set_defaults(handler=_split)


def _score_input(text: str) -> Source:
    return STDIN if text == "-" else _file_in(text, "score-spark reads a directory of part files")


def _score_output(text: str) -> Source:
    return STDOUT if text == "-" else _file_out(text)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=_existing,
        default=None,
        help=f"{CONFIG_HELP} (its registry_uri resolves models:/ URIs)",
    )


def _score(args: argparse.Namespace) -> int:
    from scorer.batch import output_kind, score_file
    from scorer.settings import anomaly_field

    output_kind(args.output)
    field = anomaly_field(args.config)  # reads a --config file whole: one not valid is refused
    with _bundle(args.model, args.config) as model:
        stats = score_file(
            model,
            args.input,
            args.output,
            alpha=args.alpha,
            workers=args.workers,
            progress=not args.quiet,
            field=field,
        )
    rate = stats.lines / stats.wall_seconds if stats.wall_seconds else 0.0  # every line read, bad ones too
    _say(
        f"scored {stats.scored:,} of {_counted(stats.lines, 'line')} into {args.output} in {stats.wall_seconds:.1f} s "
        f"({rate:,.0f} lines/s): {_counted(stats.anomalies, 'anomaly', 'anomalies')}, {_counted(stats.bad, 'bad line')}"
    )
    if stats.scored:
        cost = ", ".join(
            f"{stage} {seconds / stats.scored * 1e6:.0f}" for stage, seconds in stats.seconds.items()
        )
        _say(f"CPU per event by stage, µs, summed over workers: {cost}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from scorer.batch import fields_held_by_none
    from scorer.detector import Detector
    from scorer.evaluate import evaluate, format_report, load_train_normals, read_labelled
    from scorer.io import TRAIN_EVENTS_MOST
    from scorer.threads import set_threads

    _check_config(args.config)
    set_threads(os.cpu_count() or 1)
    _say(f"loading {args.model}")  # first: a model that cannot be loaded fails before the reading
    with _bundle(args.model, args.config) as model:
        detector = Detector.load(model)
    _say(f"reading {args.events} and {args.labels}")
    # a labels file that does not match fails first; the events are read again as they are scored
    labels, attack_types, events = read_labelled(args.events, args.labels)
    _say(f"reading {args.train}")
    train_events, read = load_train_normals(args.train, args.train_labels, TRAIN_EVENTS_MOST, seed=args.seed)
    if len(train_events) < 2:  # the baselines' own error would not name the option
        raise CliError(
            f"--train {args.train} holds {len(train_events)} normal events: the baselines need at least two "
            "(one to fit, one to calibrate)"
        )
    if read > len(train_events):  # as train samples them
        _say(
            f"read {read:,} normal events of --train: the baselines fit on a uniform sample of "
            f"{len(train_events):,} of them (seed {args.seed})"
        )
    # events of another kind than the model's are flagged whatever they hold: said, as score, train
    # and refresh say it (of the events to evaluate, by evaluate as it scores them)
    if (found := fields_held_by_none(detector, train_events, "--train events")) is not None:
        _say(f"warning: {found[0]}; the baselines fitted on them describe other events")
    _say(
        f"evaluating on {len(labels):,} events ({int(labels.sum()):,} attacks); baselines fit on {len(train_events):,} normal events"
    )
    report = evaluate(
        detector,
        events(),
        labels,
        train_events,
        alpha=args.alpha,
        seed=args.seed,
        attack_types=attack_types,
        log=_say,
        progress=not args.quiet,
    )
    if args.json:  # a figure labels of one class, or an α a row cannot flag at, cannot give is null
        # (JSON has no NaN); cannot_flag says why a row can flag nothing at α, else null
        print(json.dumps(_without_nan(report), indent=1, allow_nan=False))
    else:
        print(format_report(report, args.alpha))
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from scorer.calibration import GLOBAL
    from scorer.detector import Detector
    from scorer.io import TRAIN_EVENTS_MOST, newest_events
    from scorer.registry import check_name
    from scorer.threads import set_threads

    if args.calibration_only and args.keep_flagged:
        raise CliError(
            "--keep-flagged is for the baseline, which --calibration-only keeps: the calibration takes "
            "every event (an attack among them only makes the thresholds stricter)"
        )
    if args.output is None and args.register is None:
        raise CliError("say where the refreshed model goes: --output DIR, --register NAME, or both")
    _check_config(args.config)
    _check_model(args.model)
    if args.register is not None:
        check_name(args.register)  # a bad name fails before the work, as a bad registry does
    registry = _registry(args.config, create=True) if args.register is not None else None
    set_threads(os.cpu_count() or 1)
    _say(f"loading {args.model}")
    with _bundle(args.model, args.config, registry) as model:
        detector = Detector.load(model)
    _say(f"reading {', '.join(str(p) for p in args.events)}")
    # the baseline keeps the newest events and the calibration a fifth of them, at most 20,000 (all
    # with --calibration-only): of the newest TRAIN_EVENTS_MOST (or twice the baseline), as a
    # million held took 6 GB
    most = max(TRAIN_EVENTS_MOST, 2 * detector.config.baseline_size)
    events, read = newest_events(args.events, most)
    if read > len(events):
        _say(f"read {read:,} events: refreshing from the newest {len(events):,} of them")
    if len(events) < 100:
        raise CliError(f"refresh needs at least 100 recent events, got {len(events)}")
    detector = detector.refresh(
        events, calibration_only=args.calibration_only, keep_flagged=args.keep_flagged, log=_say
    )
    detector.metadata["calibration"] = detector.calibration.sizes()
    detector.metadata["refreshed_from"] = detector.metadata.get("version")
    # what the bundle now holds (the registry logs these as the version's): the first training's
    # figures were kept, a refreshed version read as if nothing had moved (the network's own, its
    # loss curves and fit time, stay: it is not trained again)
    training = detector.metadata.setdefault("training", {})
    training["baseline_events"] = len(detector.baseline)
    training["calibration_events"] = detector.calibration.sizes()[GLOBAL]
    training["calibration_in_baseline"] = 0  # refresh's calibration events stay out of the baseline
    what = "calibration" if args.calibration_only else "baseline and calibration"
    with tempfile.TemporaryDirectory(prefix="ocsf-anomaly-refresh-") as scratch:
        path = detector.save(
            args.output or Path(scratch) / "bundle", name=args.register or detector.model_info["name"]
        )
        where = f"wrote {path} (bundle" if args.output else "(bundle"
        _say(f"{where} {detector.metadata['version']}): {what} refreshed")
        if registry is not None:
            _register(registry, path, args.register)
    return 0


def _split(args: argparse.Namespace) -> int:
    from scorer.evaluate import split_labelled

    paths = split_labelled(
        args.events,
        args.labels,
        args.output,
        seed=args.seed,
        fraction=args.fraction,
        ordered=args.ordered,
        log=_say,
    )
    for name, path in paths.items():
        _say(f"{name}: {path}")
    return 0


def _without_nan(value: Any) -> Any:
    """``value`` with every NaN, at any depth, as None."""
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value
