"""``ocsf-anomaly features infer``: the feature spec ``train --features auto`` would use, as TOML."""

from __future__ import annotations

import argparse
import sys

from scorer.cli import Commands, _existing, _file_out, _say


def add_commands(commands: Commands) -> None:
    features = commands.add_parser("features", help="feature specs", description="Work with feature specs.")
    feature_commands = features.add_subparsers(dest="features_command", required=True, metavar="ACTION")
    infer = feature_commands.add_parser(
        "infer",
        help="infer a spec from events and write it as TOML",
        description=(
            "Profile every leaf of the events (unmapped.* included) and write the spec inferred from all of "
            "them. `train --features auto` infers from the part it fits on (four fifths), so a field near a "
            "cut can come out differently: pass this file to train on exactly it (--features SPEC.toml)."
        ),
        epilog="""\
examples:
  ocsf-anomaly features infer normal.jsonl.gz                          # printed, with what was left out and why
  ocsf-anomaly features infer normal.jsonl.gz --output spec.toml && ocsf-anomaly train normal.jsonl.gz \\
      --features spec.toml --output models/m1
""",
    )
    infer.add_argument(
        "events",
        nargs="+",
        type=_existing,
        metavar="EVENTS",
        help="JSONL, JSONL.gz or Parquet files of OCSF events",
    )
    infer.add_argument("--output", "-o", type=_file_out, default=None, help="write here instead of stdout")
    infer.set_defaults(handler=_features)


def _features(args: argparse.Namespace) -> int:
    from scorer.features.infer import infer_spec
    from scorer.io import TRAIN_EVENTS_MOST, refuse_writing_over, sample_events, write_text_atomically

    if args.output:
        refuse_writing_over(args.output, args.events)
    _say(f"reading {', '.join(str(p) for p in args.events)}")
    events, read = sample_events(args.events, TRAIN_EVENTS_MOST)
    sampled = f" (a uniform sample of the {read:,} read)" if read > len(events) else ""
    _say(f"profiling every field of {len(events):,} events{sampled}")
    spec = infer_spec(events)
    text = spec.to_toml()
    if args.output:
        write_text_atomically(args.output, text)
        _say(f"wrote {args.output}: {len(spec.features):,} features, {len(spec.excluded):,} paths left out")
    else:
        sys.stdout.write(text)
    return 0
