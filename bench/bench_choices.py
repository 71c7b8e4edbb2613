"""How the defaults were chosen: score kind, k, epochs, reconstruction loss and model size.

On a seeded line-level split (seed 0, as `ocsf-anomaly split`) of each labelled set, fit once per
training setting, then re-calibrate the same fitted detector for each (k, feature_k) and report
every score kind at α = 0.01. Raw-feature k-NN on the same split is in bench_detection.py.

    .venv/bin/python bench/bench_choices.py k      [--sets nsl_kdd unsw_nb15]   # k × feature_k, epochs 2 / 6
    .venv/bin/python bench/bench_choices.py loss   [--sets unsw_nb15]           # reconstruction weight 0 / 1 / 3
    .venv/bin/python bench/bench_choices.py size   [--sets unsw_nb15 nsl_kdd]   # d_model × blocks
    .venv/bin/python bench/bench_choices.py shift  [--seeds 0 1 2]              # the feature space and fusion weight, five protocols

The `shift` study judges on data captured apart from training (see bench_detection.py for the
protocols): NSL-KDD train → dev, UNSW-NB15 in file order, the demo company after a round of hiring,
with the i.i.d. splits beside them as a sanity check. One network trained per protocol and seed;
for each option both indices and the column weights are built again over the same baseline
(`Detector.reindex`) and calibrated; the baselines are fitted once per protocol and seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import DATA, OUT, machine, require_data, run_cli
from numpy.typing import ArrayLike

from scorer.baselines import run_baselines
from scorer.detector import Detector, DetectorConfig, split_for_fit
from scorer.evaluate import evaluate, load_labelled
from scorer.io import load_events
from scorer.metrics import detection_report, recall_at_fpr
from scorer.model import TrainConfig
from scorer.network import embed
from scorer.threads import set_threads

FOLDERS = {"nsl_kdd": "nsl_kdd_ocsf", "unsw_nb15": "unsw_nb15_ocsf"}


def split(name: str) -> Path:
    target = OUT / "splits" / f"{name}_s0"
    if not (target / "test.labels.csv").exists():
        folder = DATA / FOLDERS[name]
        run_cli(
            "split",
            str(folder / "train.jsonl.gz"),
            "--labels",
            str(folder / "train.labels.csv"),
            "--output",
            str(target),
        )
    return target


def report(
    tag: str, detector: Detector, test: list[dict[str, Any]], y: ArrayLike, alpha: float = 0.01
) -> None:
    result = detector.with_config(score="fusion").score(test, explain=False)
    for kind in ("embedding", "features", "fusion"):
        p = detector.calibrations[kind].p_values(result.components[kind], result.group, alpha)
        m = detection_report(y, result.components[kind], p <= alpha)
        print(
            f"{tag + ' ':<44}{kind:<10} ROC-AUC {m['roc_auc']:.4f} PR-AUC {m['pr_auc']:.4f} recall {m['recall']:.4f} FPR {m['fpr']:.4f}",
            flush=True,
        )


# name → DetectorConfig changes, applied to one fitted network
SHIFT_OPTIONS: dict[str, dict[str, float | str]] = {
    "features alone": {"score": "features"},
    "embedding alone (k 5)": {"score": "embedding"},
    "1-NN, every column, w 0.25 (before)": {"feature_k": 1, "feature_noise": 0.0, "fusion_weight": 0.25},
    "1-NN, noise-weighted, w 0.1": {"feature_k": 1, "fusion_weight": 0.1},
    "mean of 3, noise-weighted, w 0": {"fusion_weight": 0.0},
    "mean of 3, noise-weighted, w 0.1 (default)": {},
    "mean of 3, noise-weighted, w 0.25": {"fusion_weight": 0.25},
}


def shift_study(seeds: list[int]) -> None:
    import statistics

    from bench_detection import protocol_data

    table: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for protocol in ("nsl-dev", "unsw-ordered", "demo-hiring", "nsl-iid", "unsw-iid"):
        for seed in seeds:
            train, test, y = protocol_data(protocol, seed)
            raw = run_baselines(train, test, seed=seed)[0]
            raw_report = detection_report(y, raw.scores, raw.flagged)
            raw_fpr = raw_report["fpr"]
            row = table.setdefault(protocol, {})
            row.setdefault("raw-knn", []).append(
                (raw_report["roc_auc"], recall_at_fpr(y, raw.scores, raw_fpr), raw_fpr)
            )
            # the calibration events stay out of the baseline until each option has calibrated on them
            fitted = Detector.fit(
                train, config=DetectorConfig(seed=seed), progress=False, calibration_joins_baseline=False
            )
            calibration = [train[i] for i in split_for_fit(len(train), fitted.config)[0]]
            for name, changes in SHIFT_OPTIONS.items():  # the indices built again for each option
                variant = fitted.with_config(**changes).reindex(calibration).admit(calibration)
                kind = variant.config.score
                result = variant.score(test, explain=False)
                scores = result.components[kind]
                m = detection_report(y, scores, result.p_value <= 0.01)
                row.setdefault(name, []).append((m["roc_auc"], recall_at_fpr(y, scores, raw_fpr), m["fpr"]))
                print(
                    f"{protocol:<20} seed {seed} {name:<44} ROC-AUC {m['roc_auc']:.4f} "
                    f"recall@raw-FPR {row[name][-1][1]:.4f} FPR@1% {m['fpr']:.4f}",
                    flush=True,
                )
    print("\nmedian over seeds: ROC-AUC / recall at raw k-NN's FPR / realised FPR at α = 1%")
    for protocol, rows in table.items():
        print(protocol)
        for name, runs in rows.items():
            cells = [statistics.median(r[i] for r in runs) for i in range(3)]
            print(f"  {name:<44} {cells[0]:.4f} / {cells[1]:.3f} / {100 * cells[2]:.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", choices=("k", "loss", "size", "shift"))
    parser.add_argument("--sets", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="shift study only")
    args = parser.parse_args()
    require_data()
    set_threads(2)
    print(f"machine: {machine()}")
    if args.study == "shift":
        shift_study(args.seeds)
        return
    for name in args.sets:
        folder = split(name)
        train = load_events([folder / "train_normal.jsonl.gz"])
        test, y, _ = load_labelled(folder / "test.jsonl.gz", folder / "test.labels.csv")
        config = DetectorConfig()
        calibration = [train[i] for i in split_for_fit(len(train), config)[0]]
        if args.study == "k":
            raw = evaluate(Detector.fit(train, progress=False), test, y, train)["raw-knn"]
            print(
                f"{name} raw-knn: ROC-AUC {raw['roc_auc']:.4f} PR-AUC {raw['pr_auc']:.4f} recall {raw['recall']:.4f} FPR {raw['fpr']:.4f}"
            )
            for epochs in (2, 6):
                fitted = Detector.fit(
                    train,
                    train_config=TrainConfig(epochs=epochs),
                    progress=False,
                    calibration_joins_baseline=False,  # until each setting has calibrated on them
                )
                for k, feature_k in ((20, 1), (20, 20), (5, 1), (1, 1)):
                    variant = (
                        fitted.with_config(k=k, feature_k=feature_k).calibrate(calibration).admit(calibration)
                    )
                    report(f"{name} epochs={epochs} k={k} feature_k={feature_k}", variant, test, y)
        elif args.study == "loss":
            for weight in (0.0, 1.0, 3.0):
                fitted = Detector.fit(
                    train, train_config=TrainConfig(reconstruction_weight=weight), progress=False
                )
                report(f"{name} reconstruction_weight={weight}", fitted, test, y)
        else:
            for d_model, blocks in ((64, 2), (128, 3), (256, 4)):
                started = time.perf_counter()
                fitted = Detector.fit(
                    train, model_config={"d_model": d_model, "n_blocks": blocks}, progress=False
                )
                seconds = time.perf_counter() - started
                encoded = fitted.encoder.encode(test[:8192])
                set_threads(1)
                started = time.perf_counter()
                embed(fitted.net, encoded)
                per_event = (time.perf_counter() - started) / len(encoded) * 1e6
                set_threads(2)
                report(
                    f"{name} d={d_model} blocks={blocks} fit {seconds:.0f}s embed {per_event:.1f}µs",
                    fitted,
                    test,
                    y,
                )


if __name__ == "__main__":
    main()
