"""Training time and peak memory: `ocsf-anomaly train` on NSL-KDD's 67,343 normal events, defaults.

.venv/bin/python bench/bench_train.py [--runs 1]
.venv/bin/python bench/bench_train.py --events 1000000   # a large input: those events repeated, each
                                                         # with a uid, time and byte counts of its own;
                                                         # `features infer` on it too, and `refresh` and
                                                         # `evaluate` of the model trained on it with as
                                                         # many more
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from pathlib import Path

import orjson
from common import DATA, OUT, machine, require_data, run_cli


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--events", type=int, default=None, help="train on this many events (repeated)")
    args = parser.parse_args()
    require_data()
    source = DATA / "nsl_kdd_ocsf" / "train_normal.jsonl.gz"
    if args.events:
        source = _repeated(source, args.events)
        wall, peak = run_cli("features", "infer", str(source), "--output", str(OUT / "bench_infer.toml"))
        print(f"features infer {source.name}: {wall:.1f} s wall, peak RSS {peak:.0f} MiB")
    walls, peaks = [], []
    for run in range(args.runs):
        # run 1 of the default input leaves the default NSL-KDD model that bench_score.py uses
        target = OUT / ("model_nsl_default" if run == 0 and not args.events else f"bench_train_{run}")
        wall, peak = run_cli("train", str(source), "--output", str(target), "--quiet")
        walls.append(wall)
        peaks.append(peak)
        meta = json.loads((target / "metadata.json").read_text())
        training = meta["training"]
        print(
            f"run {run + 1}: {wall:.1f} s wall, peak RSS {peak:.0f} MiB, epochs {training['report']['epochs_run']}, "
            f"training loop {training['report']['seconds']:.1f} s, baseline {training['baseline_events']:,}, "
            + ", ".join(
                f"{name} index {index['kind']} (effort {index['search_param']}) recall@{k} "
                f"{index['recall_at_k']:.3f} held-out / {index['recall_at_k_shifted']:.3f} shifted"
                for name, index, k in (
                    ("embedding", meta["index"]["embedding"], meta["detector"]["k"]),
                    ("feature", meta["index"]["features"], meta["detector"]["feature_k"]),
                )
            )
        )
    if args.events:  # a window as large again, later and unseen: what a site refreshes with
        recent = _repeated(DATA / "nsl_kdd_ocsf" / "train_normal.jsonl.gz", args.events, "recent")
        wall, peak = run_cli(
            "refresh", str(recent), "--model", str(target), "--output", str(OUT / "bench_refresh")
        )
        print(f"refresh with {recent.name}: {wall:.1f} s wall, peak RSS {peak:.0f} MiB")
        labels = recent.with_suffix(".labels.csv")  # every one normal: the realised FPR alone
        if not labels.exists():
            labels.write_text("line,label\n" + "".join(f"{line},0\n" for line in range(1, args.events + 1)))
        normal = DATA / "nsl_kdd_ocsf" / "train_normal.jsonl.gz"
        wall, peak = run_cli(
            "evaluate", str(recent), "--labels", str(labels), "--train", str(normal), "--model", str(target)
        )
        print(
            f"evaluate on {recent.name} (baselines on {normal.name}): {wall:.1f} s wall, peak RSS {peak:.0f} MiB"
        )
    print(f"\nmachine: {machine()}")
    print(
        f"train {source.name} ({args.events or 67_343:,} events): median {statistics.median(walls):.1f} s, "
        f"peak RSS {max(peaks):.0f} MiB"
    )


def _repeated(source: Path, n: int, name: str = "bench") -> Path:
    """``n`` events: ``source``'s, repeated in order, each with a uid (``name``-row), a time and byte
    counts of its own; the ``recent`` ones after the others."""
    target = OUT / f"{name}_train_{n}.jsonl"
    start = 1_700_000_000_000 + (n * 1_000 if name == "recent" else 0)
    if target.exists():
        return target
    with gzip.open(source, "rb") as handle:
        base = [orjson.loads(line) for line in handle]
    OUT.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with partial.open("wb", buffering=1 << 22) as out:
        for i in range(n):
            round_, event = divmod(i, len(base))
            event = base[event]
            traffic = event.get("traffic", {})
            out.write(
                orjson.dumps(
                    {
                        **event,
                        "time": start + i * 1_000,
                        "metadata": {**event["metadata"], "uid": f"{name}-{i}"},
                        "traffic": {**traffic, "bytes_out": traffic.get("bytes_out", 0) + round_ % 7},
                    }
                )
                + b"\n"
            )
    partial.rename(target)
    return target


if __name__ == "__main__":
    main()
