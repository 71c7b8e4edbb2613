"""The ``ocsf-anomaly`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  ocsf-anomaly train events.jsonl.gz --output models/m1
  ocsf-anomaly train events.jsonl.gz --register netflow   # a new version in the registry
  ocsf-anomaly models list --name netflow
  ocsf-anomaly models promote 3 --name netflow            # the service swaps it in
  ocsf-anomaly score --model models/m1 new.jsonl.gz --output scored.jsonl
  ocsf-anomaly score --model models/m1 new.jsonl.gz --output scores.csv --alpha 0.001
  ocsf-anomaly evaluate --model models/m1 test.jsonl.gz --labels test.labels.csv --train events.jsonl.gz
  ocsf-anomaly demo            # what `make run` does
"""

PRECEDENCE = (
    "Settings precedence: command-line flags over OCSF_ANOMALY_* environment variables (and "
    "MLFLOW_TRACKING_URI, REDIS_URL) over the --config file over the defaults."
)

CONFIG_HELP = "a TOML file of settings; flags and OCSF_ANOMALY_* environment variables win over it"


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _alpha(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("alpha is a false-positive rate between 0 and 1, e.g. 0.01")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a share between 0 and 1, e.g. 0.25")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _existing(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocsf-anomaly",
        description="Score OCSF security events for anomalies and write the verdict back into each event.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="fit a model on normal events",
        description=(
            "Fit a detector on events you consider normal: a feature spec, a TabularResNet trained without "
            "labels, k-NN indices over a baseline of up to 50,000 events, and conformal calibration on "
            "held-out events. Writes a model bundle directory."
        ),
    )
    train.add_argument(
        "events",
        nargs="+",
        type=_existing,
        metavar="EVENTS",
        help="JSONL, JSONL.gz or Parquet files of OCSF events",
    )
    train.add_argument(
        "--output", "-o", type=Path, default=None, help="bundle directory to write (replaced if it exists)"
    )
    train.add_argument(
        "--register",
        metavar="NAME",
        default=None,
        help="log the bundle and its metrics to the registry as a new version of model NAME "
        "(the first version of a model becomes its champion)",
    )
    train.add_argument("--config", type=_existing, default=None, help=f"{CONFIG_HELP} (here: registry_uri)")
    train.add_argument(
        "--features",
        default="auto",
        help="'auto' (infer a spec from these events; the default), 'default' (built-in common OCSF fields) or a SPEC.toml",
    )
    train.add_argument(
        "--epochs",
        type=_positive,
        default=None,
        help="training epochs (default: measured best, see BENCHMARKS.md)",
    )
    train.add_argument(
        "--seed", type=int, default=0, help="random seed for splits, training and indices (default 0)"
    )
    train.add_argument(
        "--score",
        choices=("fusion", "embedding", "features"),
        default="fusion",
        help="default score kind of the bundle (all three are calibrated; default fusion)",
    )
    train.add_argument(
        "--k",
        type=_positive,
        default=5,
        help="neighbours of the embedding score (default 5, measured best on shifted data)",
    )
    train.add_argument(
        "--feature-k",
        type=_positive,
        default=1,
        help="neighbours of the feature-space score (default 1, measured best)",
    )
    train.add_argument(
        "--fusion-weight",
        type=_share,
        default=0.25,
        help="the embedding's share of the fusion score, 0-1 (default 0.25: on shifted data the embedding "
        "alone ranks below the feature space; BENCHMARKS.md)",
    )
    train.add_argument(
        "--baseline-size",
        type=_positive,
        default=50_000,
        help="events kept in the k-NN baseline (default 50000)",
    )
    train.add_argument("--name", default="ocsf-anomaly", help="model name recorded in the bundle")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    score = commands.add_parser(
        "score",
        help="score an events file",
        description=(
            "Score every line of INPUT. OUTPUT ending in .jsonl gets each event with an `anomaly` object added; "
            "ending in .csv gets `line,score,p_value,is_anomaly`, one row per input line in input order. "
            "Bad lines are reported on stderr and get empty score fields."
        ),
    )
    score.add_argument(
        "input", type=_existing, metavar="INPUT", help="JSONL, JSONL.gz or Parquet file of OCSF events"
    )
    score.add_argument("--model", "-m", required=True, type=Path, help="model bundle directory")
    score.add_argument("--output", "-o", required=True, type=Path, help="OUT.jsonl or OUT.csv")
    score.add_argument(
        "--alpha", type=_alpha, default=None, help="target false-positive rate (default: the bundle's, 0.01)"
    )
    score.add_argument(
        "--workers", type=_positive, default=None, help="worker processes (default: one per core)"
    )
    score.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser(
        "evaluate",
        help="measure detection quality on labelled events",
        description=(
            "Print ROC-AUC, PR-AUC, recall and realised false-positive rate at alpha for the model's three score "
            "kinds, and for two baselines fitted on the normal events of TRAIN_EVENTS in the same run: k-NN "
            "(k = 20) on raw features and IsolationForest, each thresholded on a held-out fifth. The last "
            "column, recall@raw-FPR, compares every score at one false-alarm budget: the false-positive rate "
            "that raw k-NN's own threshold realised on EVENTS."
        ),
    )
    evaluate.add_argument("events", type=_existing, metavar="EVENTS", help="labelled events to evaluate on")
    evaluate.add_argument("--model", "-m", required=True, type=Path, help="model bundle directory")
    evaluate.add_argument(
        "--labels",
        required=True,
        type=_existing,
        help="CSV with line,label (1 = attack), one row for every line of EVENTS",
    )
    evaluate.add_argument(
        "--train",
        required=True,
        type=_existing,
        help="the events the model was trained on (for the baselines)",
    )
    evaluate.add_argument(
        "--train-labels", type=_existing, default=None, help="labels of --train, if it holds attacks too"
    )
    evaluate.add_argument(
        "--alpha", type=_alpha, default=0.01, help="target false-positive rate (default 0.01)"
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the baselines' held-out split")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")

    refresh = commands.add_parser(
        "refresh",
        help="bring recent normal traffic into the baseline and recalibrate, keeping the network",
        description=(
            "Normal traffic drifts: a model of last month may flag more than α of this month's normal events. "
            "`refresh` adds RECENT events (vetted normal, or traffic with few attacks) to the k-NN baseline, "
            "newest kept, and re-fits the calibration on a held-out fifth of them; `--calibration-only` just "
            "re-fits the calibration. Attacks among RECENT make thresholds stricter, never looser. "
            "BENCHMARKS.md (drift) shows what each does."
        ),
    )
    refresh.add_argument(
        "events", nargs="+", type=_existing, metavar="RECENT", help="recent events, mostly normal"
    )
    refresh.add_argument("--model", "-m", required=True, type=Path, help="bundle to start from")
    refresh.add_argument("--output", "-o", required=True, type=Path, help="bundle directory to write")
    refresh.add_argument(
        "--calibration-only", action="store_true", help="keep the baseline, re-fit calibration only"
    )

    split = commands.add_parser(
        "split",
        help="seeded line-level split of a labelled file for evaluation",
        description="Write train_normal.jsonl.gz (normal lines of one side), test.jsonl.gz and test.labels.csv (the other side).",
    )
    split.add_argument(
        "events", type=_existing, metavar="EVENTS", help="JSONL, JSONL.gz or Parquet file of OCSF events"
    )
    split.add_argument(
        "--labels",
        required=True,
        type=_existing,
        help="CSV with line,label (1 = attack), line 1-based in EVENTS; lines without a label are left out",
    )
    split.add_argument(
        "--output", "-o", required=True, type=Path, help="directory to write the three files to"
    )
    split.add_argument("--seed", type=int, default=0, help="seed of the random split (default 0)")
    split.add_argument(
        "--fraction", type=float, default=0.5, help="share of lines on the training side (default 0.5)"
    )
    split.add_argument(
        "--ordered",
        action="store_true",
        help="train on the first lines of the file, test on the rest (drift)",
    )

    features = commands.add_parser("features", help="feature specs", description="Work with feature specs.")
    feature_commands = features.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    infer = feature_commands.add_parser(
        "infer",
        help="infer a spec from events and write it as TOML",
        description="Profile every leaf of the events (unmapped.* included) and write the spec `train --features auto` would use.",
    )
    infer.add_argument(
        "events",
        nargs="+",
        type=_existing,
        metavar="EVENTS",
        help="JSONL, JSONL.gz or Parquet files of OCSF events",
    )
    infer.add_argument("--output", "-o", type=Path, default=None, help="write here instead of stdout")

    serve = commands.add_parser(
        "serve",
        help="serve a model over HTTP (POST /v1/score, /v1/enrich)",
        description=(
            "Serve the champion of a registered model (default ocsf-anomaly-demo, in the local registry under "
            "data/mlflow) or a bundle directory: POST /v1/score and /v1/enrich take one OCSF event, a JSON array "
            "or NDJSON; GET /healthz, /readyz, /metrics, /v1/models, /openapi.json. A new champion or challenger "
            "is swapped in without a restart (polled, or POST /v1/models/reload). "
            f"{PRECEDENCE} `ocsf-anomaly config show` prints what serve would use without its flags."
        ),
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument(
        "--model",
        "-m",
        type=Path,
        default=None,
        help="serve this bundle directory instead of the registry's champion",
    )
    serve.add_argument("--config", type=_existing, default=None, help=CONFIG_HELP)

    models = commands.add_parser(
        "models",
        help="list, promote and roll back registered model versions",
        description=(
            "The registry (OCSF_ANOMALY_REGISTRY_URI or MLFLOW_TRACKING_URI; default: the local store under "
            "data/mlflow). The version with the alias `champion` serves; the one with `challenger` is compared "
            "with it (A/B split or shadow, see `serve`). A running service picks up a change within "
            "model_poll_seconds, or at once on POST /v1/models/reload."
        ),
    )
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = model_commands.add_parser(
        "list", help="the versions of a model, newest first", description="The versions of a model."
    )
    promote = model_commands.add_parser(
        "promote",
        help="give an alias (champion by default) to a version",
        description=(
            "Give ALIAS to VERSION; the version that held it is remembered for `rollback`. The champion and "
            "the challenger are never one version: a champion given the challenger's version takes its "
            "place (the challenger alias is removed, the comparison stops), and the challenger is never "
            "given the champion's version."
        ),
    )
    promote.add_argument("version", metavar="VERSION", help="version number, as `models list` shows")
    rollback = model_commands.add_parser(
        "rollback",
        help="give an alias back to the version that held it before",
        description=(
            "Give ALIAS back to its previous holder. A challenger with none, or whose previous holder is the "
            "champion now, is removed (the comparison stops); a champion given back the challenger's version "
            "takes its place, as with `promote`."
        ),
    )
    for command in (listing, promote, rollback):
        command.add_argument(
            "--name", default=None, help="registered model (default: model_name, ocsf-anomaly-demo)"
        )
        command.add_argument("--config", type=_existing, default=None, help=CONFIG_HELP)
    for command in (promote, rollback):
        command.add_argument(
            "--alias",
            choices=("champion", "challenger"),
            default="champion",
            help="the alias to move (default champion)",
        )
    listing.add_argument("--json", action="store_true", help="print JSON")

    config = commands.add_parser("config", help="settings", description="Inspect the service's settings.")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser(
        "show",
        help="print the resolved settings, secrets masked",
        description=f"What `serve` would use before its own flags. {PRECEDENCE}",
    )
    show.add_argument("--config", type=_existing, default=None, help=CONFIG_HELP)

    commands.add_parser(
        "demo",
        help="train and register a demo model on synthetic events (if none yet) and score a demo file",
        description=(
            "Generate seeded synthetic OCSF events with injected anomalies under data/demo/; if the registry has "
            "no champion of ocsf-anomaly-demo, train one and register it; score data/demo/demo.jsonl with it and "
            "print what was found."
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "train": _train,
        "score": _score,
        "evaluate": _evaluate,
        "refresh": _refresh,
        "split": _split,
        "features": _features,
        "serve": _serve,
        "models": _models,
        "config": _config,
        "demo": _demo,
    }
    from scorer.batch import ScoringError
    from scorer.bundle import BundleError
    from scorer.features.spec import SpecError
    from scorer.registry import RegistryError
    from scorer.settings import SettingsError

    try:
        return handlers[args.command](args)
    except (
        CliError,
        BundleError,
        SpecError,
        SettingsError,
        RegistryError,
        ScoringError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        _say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _load_spec(choice: str) -> Any:
    from scorer.features.spec import default_spec, load_spec

    if choice == "auto":
        return None
    if choice == "default":
        return default_spec()
    return load_spec(choice)


def _train(args: argparse.Namespace) -> int:
    from scorer import bundle
    from scorer.detector import Detector, DetectorConfig
    from scorer.io import load_events
    from scorer.model import TrainConfig
    from scorer.threads import set_threads

    if args.output is None and args.register is None:
        raise CliError("say where the model goes: --output DIR, --register NAME, or both")
    registry = _registry(args.config) if args.register else None  # a bad registry fails before training
    set_threads(os.cpu_count() or 1)
    spec = _load_spec(args.features)
    _say(f"reading {', '.join(str(p) for p in args.events)}")
    events = load_events(args.events)
    train_config = TrainConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    config = DetectorConfig(
        k=args.k,
        feature_k=args.feature_k,
        score=args.score,
        fusion_weight=args.fusion_weight,
        baseline_size=args.baseline_size,
        seed=args.seed,
    )
    detector = Detector.fit(
        events, spec=spec, config=config, train_config=train_config, progress=not args.quiet, log=_say
    )
    with tempfile.TemporaryDirectory(prefix="ocsf-anomaly-train-") as scratch:
        path = bundle.save(detector, args.output or Path(scratch) / "bundle", name=args.register or args.name)
        meta = detector.metadata
        index = meta["index"]
        where = f"wrote {path}" if args.output else "trained"
        _say(
            f"{where} (bundle {meta['version']}): {meta['training']['events']:,} events, "
            f"{len(meta['features'])} features, embedding index {index['embedding']['kind']} "
            f"(recall@{args.k} {index['embedding']['recall_at_k']:.3f} held-out, "
            f"{index['embedding']['recall_at_k_shifted']:.3f} shifted), "
            f"{meta['training']['seconds']:.0f} s"
        )
        if registry is not None:
            version, champion = registry.register(path, args.register)
            then = (
                "it is the champion (the model's first)"
                if champion
                else f"promote it with `ocsf-anomaly models promote {version.version} --name {version.name}`"
            )
            _say(f"registered {version.uri} in {registry.uri}: {then}")
    return 0


def _registry(config: Path | None) -> Any:
    from scorer.registry import Registry, configure_mlflow
    from scorer.settings import Settings

    settings = Settings.load(config)
    _say("opening the model registry")  # seconds: MLflow's imports, and creating a new local store
    configure_mlflow()
    return Registry(settings.registry_uri)


def _score(args: argparse.Namespace) -> int:
    from scorer.batch import output_kind, score_file

    output_kind(args.output)
    stats = score_file(
        args.model, args.input, args.output, alpha=args.alpha, workers=args.workers, progress=not args.quiet
    )
    rate = stats.lines / stats.wall_seconds if stats.wall_seconds else 0.0
    _say(
        f"scored {stats.scored:,} of {stats.lines:,} lines into {args.output} in {stats.wall_seconds:.1f} s "
        f"({rate:,.0f} events/s): {stats.anomalies:,} anomalies, {stats.bad:,} bad lines"
    )
    if stats.scored:
        cost = ", ".join(
            f"{stage} {seconds / stats.scored * 1e6:.0f}" for stage, seconds in stats.seconds.items()
        )
        _say(f"CPU per event by stage, µs, summed over workers: {cost}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from scorer import bundle
    from scorer.evaluate import evaluate, format_report, load_labelled, load_train_normals
    from scorer.threads import set_threads

    set_threads(os.cpu_count() or 1)
    _say(f"reading {args.events} and {args.labels}")
    events, labels = load_labelled(args.events, args.labels)  # a labels file that does not match fails first
    _say(f"reading {args.train}")
    train_events = load_train_normals(args.train, args.train_labels)
    _say(f"loading {args.model}")
    detector = bundle.load(args.model)
    _say(
        f"evaluating on {len(events):,} events ({int(labels.sum()):,} attacks); baselines fit on {len(train_events):,} normal events"
    )
    report = evaluate(detector, events, labels, train_events, alpha=args.alpha, seed=args.seed, log=_say)
    print(json.dumps(report, indent=1) if args.json else format_report(report, args.alpha))
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from scorer import bundle
    from scorer.io import load_events
    from scorer.threads import set_threads

    set_threads(os.cpu_count() or 1)
    _say(f"loading {args.model}")
    detector = bundle.load(args.model)
    _say(f"reading {', '.join(str(p) for p in args.events)}")
    events = load_events(args.events)
    if len(events) < 100:
        raise CliError(f"refresh needs at least 100 recent events, got {len(events)}")
    if args.calibration_only:
        _say(f"calibrating on {len(events):,} events")
        detector.calibrate(events)
    else:
        _say(
            f"adding four fifths of {len(events):,} events to the baseline and indexing it; calibrating on the rest"
        )
        detector.rebaseline(events)
    detector.metadata["calibration"] = detector.calibration.sizes()
    detector.metadata["refreshed_from"] = detector.metadata.get("version")
    path = bundle.save(detector, args.output, name=detector.model_info["name"])
    what = "calibration" if args.calibration_only else "baseline and calibration"
    _say(
        f"wrote {path} (version {detector.metadata['version']}): {what} refreshed from {len(events):,} events"
    )
    return 0


def _split(args: argparse.Namespace) -> int:
    from scorer.evaluate import split_labelled

    paths = split_labelled(
        args.events, args.labels, args.output, seed=args.seed, fraction=args.fraction, ordered=args.ordered
    )
    for name, path in paths.items():
        _say(f"{name}: {path}")
    return 0


def _features(args: argparse.Namespace) -> int:
    from scorer.features.infer import infer_spec
    from scorer.io import load_events

    _say(f"reading {', '.join(str(p) for p in args.events)}")
    events = load_events(args.events)
    _say(f"profiling every field of {len(events):,} events")
    spec = infer_spec(events)
    text = spec.to_toml()
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        _say(f"wrote {args.output}: {len(spec.features)} features, {len(spec.excluded)} paths left out")
    else:
        sys.stdout.write(text)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    from aiohttp import web

    from scorer.service.app import create_app
    from scorer.settings import Settings

    settings = Settings.load(args.config, host=args.host, port=args.port, model_dir=args.model)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = f"http://{settings.host}:{settings.port}"
    token = ' -H "Authorization: Bearer $OCSF_ANOMALY_API_TOKEN"' if settings.api_token else ""
    what = settings.model_dir or f"the champion of {settings.model_name}"
    message = (
        f"serving {what} on {url}; try:\n"
        f"  curl -s{token} -H 'Content-Type: application/json' {url}/v1/score "
        '-d \'{"class_uid": 4001, "dst_endpoint": {"ip": "203.0.113.9", "port": 4444}, '
        '"traffic": {"bytes_out": 912345678}}\''
    )
    # said once the model is loaded and verified and the port is open: a bad bundle fails before it
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=lambda _: _say(message))
    return 0


def _models(args: argparse.Namespace) -> int:
    import json

    from scorer.settings import Settings

    settings = Settings.load(args.config)
    registry = _registry(args.config)
    name = args.name or settings.model_name
    if args.models_command == "list":
        versions = registry.versions(name)
        rows: list[dict[str, Any]] = [
            {
                "version": v.version,
                "aliases": list(v.aliases),
                "bundle_version": v.bundle_version,
                "registered": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_ms / 1000)),
                "metrics": registry.metrics(v),
            }
            for v in versions
        ]
        if args.json:
            print(json.dumps({"name": name, "registry": registry.uri, "versions": rows}, indent=1))
            return 0
        print(f"{name} in {registry.uri}")
        print(f"{'version':>7}  {'aliases':<20}  {'bundle':<12}  {'registered (UTC)':<19}    fit s  recall@k")
        for row in rows:
            metrics = row["metrics"]
            seconds = metrics.get("fit_seconds")
            recall = metrics.get("index_embedding_recall_at_k")
            print(
                f"{row['version']:>7}  {','.join(row['aliases']) or '-':<20}  {row['bundle_version']:<12}  "
                f"{row['registered']:<19}  {f'{seconds:.0f}' if seconds is not None else '-':>7}  "
                f"{f'{recall:.3f}' if recall is not None else '-':>8}"
            )
        return 0
    later = (
        f"a running service swaps it in within {settings.model_poll_seconds:g} s or on POST /v1/models/reload"
        if settings.model_poll_seconds
        else "a running service swaps it in on POST /v1/models/reload"
    )
    move = (
        registry.promote(name, args.version, args.alias)
        if args.models_command == "promote"
        else registry.rollback(name, args.alias)
    )
    was = f"version {move.before.version}" if move.before is not None else "none"
    now = f"version {move.after.version}" if move.after is not None else "removed"
    _say(f"{name}@{args.alias}: {was} → {now}; {later}")
    if move.retired is not None:
        _say(
            f"{name}@challenger: version {move.retired.version} → removed, as it is the champion now "
            "(the comparison stops; promote another version with --alias challenger to start one)"
        )
    return 0


def _config(args: argparse.Namespace) -> int:
    import json

    from scorer.settings import Settings, masked

    print(json.dumps(masked(Settings.load(args.config)), indent=1))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import orjson

    from scorer import bundle
    from scorer.batch import score_file
    from scorer.demo import write_demo_files
    from scorer.detector import Detector
    from scorer.evaluate import read_labels
    from scorer.io import load_events
    from scorer.paths import state_dir
    from scorer.registry import RegistryError
    from scorer.settings import DEMO_MODEL
    from scorer.threads import set_threads

    demo_dir = state_dir() / "demo"
    files = write_demo_files(demo_dir)
    registry = _registry(None)
    try:
        champion = registry.alias(DEMO_MODEL, "champion")
    except RegistryError:  # no such model yet
        champion = None
    if champion is not None:
        _say(f"using {champion.uri}, the champion in {registry.uri}")
    else:
        _say(
            f"training the demo model on {files.train} (about a minute on 2 cores, up to four when other work crowds them) ..."
        )
        set_threads(os.cpu_count() or 1)
        started = time.perf_counter()
        detector = Detector.fit(load_events([files.train]), log=_say)
        with tempfile.TemporaryDirectory(prefix="ocsf-anomaly-demo-") as scratch:
            path = bundle.save(detector, Path(scratch) / "bundle", name=DEMO_MODEL)
            champion, _ = registry.register(path, DEMO_MODEL)
        _say(f"trained in {time.perf_counter() - started:.0f} s; registered {champion.uri} in {registry.uri}")
    scored = demo_dir / "scored.jsonl"
    with registry.fetched(champion) as model_dir:
        stats = score_file(model_dir, files.demo, scored, progress=False)
    labels = read_labels(files.labels)
    flagged = []
    with scored.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            event = orjson.loads(raw)
            if event["anomaly"].get("is_anomaly"):
                flagged.append((line, event))
    hits = sum(labels.get(line, 0) for line, _ in flagged)
    attacks = sum(labels.values())
    print(f"\nscored {stats.lines:,} demo events → {scored}")
    print(f"{len(flagged)} flagged at α = 0.01; {hits} of them injected anomalies ({hits}/{attacks} found)\n")
    flagged.sort(key=lambda item: item[1]["anomaly"]["p_value"])
    for line, event in flagged[:10]:
        anomaly = event["anomaly"]
        why = "; ".join(f"{r['field']}={r['value']!r} (typical {r['typical']!r})" for r in anomaly["reasons"])
        print(f"line {line:>5}  class {event.get('class_uid')}  p={anomaly['p_value']:.4f}  {why}")
    if len(flagged) > 10:
        print(f"... and {len(flagged) - 10} more in {scored}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
