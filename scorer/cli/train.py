"""``ocsf-anomaly train``: fit a detector on normal events, write its bundle and/or register it."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from scorer.cli import (
    CONFIG_HELP,
    CliError,
    Commands,
    _bundle_out,
    _check_config,
    _existing,
    _non_negative,
    _positive,
    _register,
    _registry,
    _say,
    _seed,
    _share,
)

DEFAULT_EPOCHS = 3  # TrainConfig's (scorer.model imports torch: not for --help); a test holds them equal
EXAMPLES = """\
examples:
  ocsf-anomaly train normal.jsonl.gz --output models/m1              # a bundle directory
  ocsf-anomaly train day1.jsonl day2.jsonl --register netflow        # a new version of netflow in the registry
  ocsf-anomaly features infer normal.jsonl.gz --output spec.toml     # the features, to read and edit
  ocsf-anomaly train normal.jsonl.gz --features spec.toml --output models/m2 --seed 1
"""


def add_commands(commands: Commands) -> None:
    train = commands.add_parser(
        "train",
        help="fit a model on normal events",
        description=(
            "Fit a detector on events you consider normal: a feature spec, a TabularResNet trained without "
            "labels, k-NN indices over a baseline of up to 50,000 events, and conformal calibration on "
            "held-out events. Writes a model bundle directory (--output), registers it (--register), or both: "
            "one of them is needed."
        ),
        epilog=EXAMPLES,
    )
    train.add_argument(
        "events",
        nargs="+",
        type=_existing,
        metavar="EVENTS",
        help="JSONL, JSONL.gz or Parquet files of OCSF events",
    )
    train.add_argument(
        "--output",
        "-o",
        type=_bundle_out,
        default=None,
        help="bundle directory to write: new, empty, or a bundle, which is replaced",
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
        help="most training epochs: training stops early when the held-out loss stops improving "
        f"(default {DEFAULT_EPOCHS}: the measured best, BENCHMARKS.md)",
    )
    train.add_argument(
        "--seed", type=_seed, default=0, help="random seed for splits, training and indices (default 0)"
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
        default=3,
        help="neighbours of the feature-space score, their mean distance (default 3, measured best on "
        "shifted data)",
    )
    train.add_argument(
        "--feature-noise",
        type=_non_negative,
        default=0.2,
        metavar="TAU",
        help="a numeric column that differs between nearest normal events by more than TAU (robust "
        "units) counts for TAU / that in the feature-space distance (default 0.2; 0: every column "
        "in full)",
    )
    train.add_argument(
        "--fusion-weight",
        type=_share,
        default=0.1,
        help="the embedding's share of the fusion score, 0-1 (default 0.1: on shifted data the embedding "
        "alone ranks below the feature space; BENCHMARKS.md)",
    )
    train.add_argument(
        "--baseline-size",
        type=_positive,
        default=50_000,
        help="events kept in the k-NN baseline (default 50000)",
    )
    train.add_argument(
        "--name",
        type=_model_name,
        help="model name recorded in the bundle (default ocsf-anomaly; with --register NAME, that NAME: "
        "a registered model is named as it is registered)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=_train)


def _model_name(text: str) -> str:
    """A name every answer and listing shows: some printable text (an empty one was taken)."""
    if not text.strip() or not text.isprintable():
        raise argparse.ArgumentTypeError(f"{text!r} is not a model name: give printable text, e.g. netflow")
    return text


def _load_spec(choice: str) -> Any:
    from scorer.features.spec import default_spec, load_spec

    if choice == "auto":
        return None
    if choice == "default":
        return default_spec()
    if Path(choice).is_dir():  # a model bundle's folder, say: its spec is features.json, not TOML
        raise CliError(f"--features {choice} is a directory; give auto, default or the path of a SPEC.toml")
    if not Path(choice).is_file():
        raise CliError(f"--features {choice}: no such file; give auto, default or the path of a SPEC.toml")
    return load_spec(choice)


def _train(args: argparse.Namespace) -> int:
    from scorer.io import TRAIN_EVENTS_MOST, sample_events
    from scorer.registry import check_name
    from scorer.threads import set_threads

    if args.output is None and args.register is None:
        raise CliError("say where the model goes: --output DIR, --register NAME, or both")
    _check_config(args.config)
    if args.register is not None:
        check_name(args.register)  # a bad name fails before training, as a bad registry does
        if args.name is not None and args.name != args.register:  # one of them was silently dropped
            raise CliError(
                f"--name {args.name} and --register {args.register}: a registered model is named as it is "
                "registered; give --register alone"
            )
    registry = _registry(args.config, create=True) if args.register is not None else None
    set_threads(os.cpu_count() or 1)
    spec = _load_spec(args.features)
    _say(f"reading {', '.join(str(p) for p in args.events)}")
    most = max(TRAIN_EVENTS_MOST, 2 * args.baseline_size)
    events, read = sample_events(args.events, most, seed=args.seed)
    if read > len(events):  # what training reads of them at most: 100,000, 50,000 and 20,000
        _say(
            f"read {read:,} events: fitting on a uniform sample of {len(events):,} of them (seed {args.seed})"
        )
    from scorer.detector import Detector, DetectorConfig  # torch: after a file of no event is refused
    from scorer.model import TrainConfig

    train_config = TrainConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    config = DetectorConfig(
        k=args.k,
        feature_k=args.feature_k,
        feature_noise=args.feature_noise,
        score=args.score,
        fusion_weight=args.fusion_weight,
        baseline_size=args.baseline_size,
        seed=args.seed,
    )
    detector = Detector.fit(
        events, spec=spec, config=config, train_config=train_config, progress=not args.quiet, log=_say
    )
    with tempfile.TemporaryDirectory(prefix="ocsf-anomaly-train-") as scratch:
        path = detector.save(
            args.output or Path(scratch) / "bundle", name=args.register or args.name or "ocsf-anomaly"
        )
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
            _register(registry, path, args.register)
    return 0
