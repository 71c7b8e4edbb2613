"""Detection quality beside raw-feature k-NN and IsolationForest, measured in the same run.

For NSL-KDD and UNSW-NB15 (OCSF-mapped training files): a seeded line-level split (normal lines
of one half train the model; the other half, normal and attack, is the test set, never seen by the
model, index or calibration), `ocsf-anomaly train` with defaults, `ocsf-anomaly evaluate`. Also
UNSW-NB15 without `unmapped.sttl` (which nearly gives the label away), and an ordered split (first
half of the file trains, second half tests) to see how α holds when normal traffic drifts.

    .venv/bin/python bench/bench_detection.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess

import orjson
from common import CLI, DATA, OUT, machine, require_data, run_cli

SETS = {"nsl_kdd": "nsl_kdd_ocsf", "unsw_nb15": "unsw_nb15_ocsf"}


def drop_field(source: str, target: str, path: tuple[str, str]) -> None:
    with gzip.open(source, "rb") as src, gzip.open(target, "wb", 3) as dst:
        for line in src:
            event = orjson.loads(line)
            event.get(path[0], {}).pop(path[1], None)
            dst.write(orjson.dumps(event) + b"\n")


def run(
    name: str, folder: str, seed: int, *, ordered: bool = False, without: tuple[str, str] | None = None
) -> dict:
    tag = f"{name}{'_ordered' if ordered else ''}{'_no_' + without[1] if without else ''}_s{seed}"
    split = OUT / "splits" / tag
    args = [
        "split",
        str(DATA / folder / "train.jsonl.gz"),
        "--labels",
        str(DATA / folder / "train.labels.csv"),
    ]
    run_cli(*args, "--output", str(split), "--seed", str(seed), *(["--ordered"] if ordered else []))
    if without:
        for part in ("train_normal", "test"):
            plain = split / f"{part}.jsonl.gz"
            drop_field(str(plain), str(split / f"{part}.tmp.gz"), without)
            (split / f"{part}.tmp.gz").replace(plain)
    model = OUT / "models" / tag
    wall, _ = run_cli(
        "train", str(split / "train_normal.jsonl.gz"), "--output", str(model), "--seed", str(seed), "--quiet"
    )
    report = subprocess.run(
        [
            *CLI,
            "evaluate",
            "--model",
            str(model),
            str(split / "test.jsonl.gz"),
            "--labels",
            str(split / "test.labels.csv"),
            "--train",
            str(split / "train_normal.jsonl.gz"),
            "--seed",
            str(seed),
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(report.stdout)
    print(f"\n{tag} (train {wall:.0f} s)")
    for kind, m in result.items():
        print(
            f"  {kind:<22} ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  recall@1% {m['recall']:.4f}  FPR {m['fpr']:.4f}"
        )
    return result


def recalibrated(name: str, share: float = 0.25, contamination: float = 0.005) -> dict:
    """Drift remedy: re-fit calibration on the first quarter of the later traffic, measure on the
    other three quarters, beside the original calibration. The window is its normal events
    ("vetted": e.g. what analysts closed as benign), then the same with attacks mixed in at 0.5%
    of it (unvetted traffic with a realistic attack rate). The test halves of these sets are about
    half attacks, so the unfiltered window would be no model of live traffic."""
    from scorer import bundle
    from scorer.detector import set_threads
    from scorer.evaluate import evaluate, load_labelled

    set_threads(2)
    tag = f"{name}_ordered_s0"
    split = OUT / "splits" / tag
    events, labels = load_labelled(split / "test.jsonl.gz", split / "test.labels.csv")
    cut = int(len(events) * share)
    window_normal = [e for e, y in zip(events[:cut], labels[:cut], strict=True) if y == 0]
    window_attack = [e for e, y in zip(events[:cut], labels[:cut], strict=True) if y == 1]
    mixed = window_normal + window_attack[: int(contamination * len(window_normal))]
    rest, rest_labels = events[cut:], labels[cut:]
    detector = bundle.load(OUT / "models" / tag)
    kinds = ("fusion (default)",)
    rows = {"original calibration": evaluate(detector, rest, rest_labels, [], baselines=False)}
    rows["recalibrated, vetted window"] = evaluate(
        detector.calibrate(window_normal), rest, rest_labels, [], baselines=False
    )
    rows[f"recalibrated, {contamination:.1%} attacks in window"] = evaluate(
        bundle.load(OUT / "models" / tag).calibrate(mixed), rest, rest_labels, [], baselines=False
    )
    rows["rebaselined, vetted window"] = evaluate(
        bundle.load(OUT / "models" / tag).rebaseline(window_normal), rest, rest_labels, [], baselines=False
    )
    rows[f"rebaselined, {contamination:.1%} attacks in window"] = evaluate(
        bundle.load(OUT / "models" / tag).rebaseline(mixed), rest, rest_labels, [], baselines=False
    )
    print(
        f"\n{tag}: window = first {cut:,} later events ({len(window_normal):,} normal); measured on the other {len(rest):,}"
    )
    result = {}
    for label, report in rows.items():
        for kind in kinds:
            m = report[kind]
            result[f"{kind}, {label}"] = m
            print(
                f"  {label:<36} ROC-AUC {m['roc_auc']:.4f}  recall@1% {m['recall']:.4f}  FPR {m['fpr']:.4f}"
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--drift-only", action="store_true", help="only the ordered splits (drift)")
    args = parser.parse_args()
    require_data()
    print(f"machine: {machine()}")
    results: dict[str, list[dict]] = {}
    for seed in [] if args.drift_only else args.seeds:
        for name, folder in SETS.items():
            results.setdefault(name, []).append(run(name, folder, seed))
        results.setdefault("unsw_nb15 without sttl", []).append(
            run("unsw_nb15", "unsw_nb15_ocsf", seed, without=("unmapped", "sttl"))
        )
    for name, folder in SETS.items():
        results[f"{name} ordered (drift)"] = [run(name, folder, 0, ordered=True)]
        results[f"{name} ordered, recalibrated"] = [recalibrated(name)]
    print("\nmedian over seeds:")
    for name, runs in results.items():
        print(f"{name}:")
        for kind in runs[0]:
            cells = {
                m: statistics.median(r[kind][m] for r in runs) for m in ("roc_auc", "pr_auc", "recall", "fpr")
            }
            print(f"  {kind:<22} " + "  ".join(f"{m} {v:.4f}" for m, v in cells.items()))
    (OUT / ("drift.json" if args.drift_only else "detection.json")).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
