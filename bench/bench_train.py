"""Training time and peak memory: `ocsf-anomaly train` on NSL-KDD's 67,343 normal events, defaults.

.venv/bin/python bench/bench_train.py [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import statistics

from common import DATA, OUT, machine, require_data, run_cli


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    require_data()
    source = DATA / "nsl_kdd_ocsf" / "train_normal.jsonl.gz"
    walls, peaks = [], []
    for run in range(args.runs):
        # run 1 leaves the default NSL-KDD model that bench_score.py uses
        target = OUT / ("model_nsl_default" if run == 0 else f"bench_train_{run}")
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
    print(f"\nmachine: {machine()}")
    print(
        f"train {source.name} (67,343 events): median {statistics.median(walls):.1f} s, peak RSS {max(peaks):.0f} MiB"
    )


if __name__ == "__main__":
    main()
