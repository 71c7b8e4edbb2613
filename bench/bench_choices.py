"""How the defaults were chosen: score kind, k, epochs, reconstruction loss and model size.

On a seeded line-level split (seed 0, as `ocsf-anomaly split`) of each labelled set, fit once per
training setting, then re-calibrate the same fitted detector for each (k, feature_k) and report
every score kind at α = 0.01. Raw-feature k-NN on the same split is in bench_detection.py.

    .venv/bin/python bench/bench_choices.py k      [--sets nsl_kdd unsw_nb15]   # k × feature_k, epochs 2 / 6
    .venv/bin/python bench/bench_choices.py loss   [--sets unsw_nb15]           # reconstruction weight 0 / 1 / 3
    .venv/bin/python bench/bench_choices.py size   [--sets unsw_nb15 nsl_kdd]   # d_model × blocks
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import DATA, OUT, machine, require_data, run_cli

from scorer.detector import Detector, DetectorConfig, set_threads, split_for_fit
from scorer.evaluate import evaluate, load_labelled
from scorer.io import load_events
from scorer.metrics import detection_report
from scorer.model import TrainConfig, embed

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


def report(tag: str, detector: Detector, test: list, y, alpha: float = 0.01) -> None:
    result = detector.with_config(score="fusion").score(test, explain=False)
    for kind in ("embedding", "features", "fusion"):
        p = detector.calibrations[kind].p_values(result.components[kind], result.group)
        m = detection_report(y, result.components[kind], p <= alpha)
        print(
            f"{tag:<44}{kind:<10} ROC-AUC {m['roc_auc']:.4f} PR-AUC {m['pr_auc']:.4f} recall {m['recall']:.4f} FPR {m['fpr']:.4f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", choices=("k", "loss", "size"))
    parser.add_argument("--sets", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    args = parser.parse_args()
    require_data()
    set_threads(2)
    print(f"machine: {machine()}")
    for name in args.sets:
        folder = split(name)
        train = load_events([folder / "train_normal.jsonl.gz"])
        test, y = load_labelled(folder / "test.jsonl.gz", folder / "test.labels.csv")
        config = DetectorConfig()
        calibration = [train[i] for i in split_for_fit(len(train), config)[0]]
        if args.study == "k":
            raw = evaluate(Detector.fit(train, progress=False), test, y, train)["raw-knn"]
            print(
                f"{name} raw-knn: ROC-AUC {raw['roc_auc']:.4f} PR-AUC {raw['pr_auc']:.4f} recall {raw['recall']:.4f} FPR {raw['fpr']:.4f}"
            )
            for epochs in (2, 6):
                fitted = Detector.fit(train, train_config=TrainConfig(epochs=epochs), progress=False)
                for k, feature_k in ((20, 1), (20, 20), (5, 1), (1, 1)):
                    variant = fitted.with_config(k=k, feature_k=feature_k).calibrate(calibration)
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
