"""Detection quality floors: on real labelled data (NSL-KDD mapped to OCSF), and on shifted demo data.

NSL-KDD, i.i.d.: a seeded line-level split of ``nsl_kdd_ocsf/train.jsonl.gz``: the model trains on
normal lines of one side only and is evaluated on normal and attack lines of the other side, none of
which the encoder, the index or the calibration saw.

NSL-KDD, shifted: the model trains on normal events of the training file and is evaluated on the dev
half of the official test set, captured apart from training (shifted normal traffic, unseen attack
types). Both NSL-KDD tests skip when ``../shared/data`` does not have the set.

Shifted demo data (always runs, nothing to download): the model trains on two weeks of the demo
company's normal events and scores the eleven days that follow, after a round of hiring (new employees
with new names, IPs and workstations: normal traffic the model never saw) and with injected anomalies.

Raw-feature k-NN is measured in the same test in each case. On the i.i.d. split and the shifted demo
data the default must beat it; on NSL-KDD's dev half it does not yet (BENCHMARKS.md, issue 14), and the
test holds the measured figures as floors so that a change which loses ground there fails.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np
import pytest

from scorer.demo import NORMAL, generate_events, generate_later
from scorer.detector import Detector
from scorer.evaluate import evaluate, format_report, read_labels_and_types
from scorer.io import parse_line
from scorer.paths import shared_data_dir

NSL = shared_data_dir() / "nsl_kdd_ocsf"
needs_nsl = pytest.mark.skipif(
    not (NSL / "train.jsonl.gz").exists(),
    reason=f"labelled NSL-KDD OCSF data not found in {NSL} (set OCSF_ANOMALY_SHARED_DATA)",
)
needs_dev = pytest.mark.skipif(
    not (NSL / "dev.jsonl.gz").exists(),
    reason=f"NSL-KDD's dev half (dev.jsonl.gz) not found in {NSL} (set OCSF_ANOMALY_SHARED_DATA)",
)

N_TRAIN, N_TEST = 8_000, 4_000
ROC_AUC_FLOOR = 0.985  # measured 0.992 (raw k-NN 0.988) on this split; BENCHMARKS.md


@pytest.fixture(scope="module")
def split() -> tuple[list[dict], list[dict], np.ndarray]:
    labels = read_labels_and_types(NSL / "train.labels.csv")[0]
    with gzip.open(NSL / "train.jsonl.gz", "rb") as handle:
        lines = handle.read().splitlines()
    rng = np.random.default_rng(42)
    order = rng.permutation(len(lines))
    side_a, side_b = order[: len(order) // 2], order[len(order) // 2 :]
    train_rows = [i for i in side_a if labels[i + 1] == 0][:N_TRAIN]
    test_rows = side_b[:N_TEST]
    train = [parse_line(lines[i])[0] for i in train_rows]
    test = [parse_line(lines[i])[0] for i in test_rows]
    y = np.array([labels[i + 1] for i in test_rows])
    assert 0.3 < y.mean() < 0.7  # both classes well represented
    return train, test, y  # type: ignore[return-value]


@needs_nsl
def test_default_model_beats_floor_and_raw_knn(split: tuple[list[dict], list[dict], np.ndarray]) -> None:
    train, test, y = split
    detector = Detector.fit(train, progress=False)
    report = evaluate(detector, test, y, train, alpha=0.01, seed=0)
    print(format_report(report, 0.01))  # shown with `pytest -s`: where the floors below come from
    default = report[f"{detector.config.score} (default)"]
    assert default["roc_auc"] > ROC_AUC_FLOOR, report
    assert default["roc_auc"] >= report["raw-knn"]["roc_auc"], report
    assert default["recall"] >= report["raw-knn"]["recall"], report
    # the verdict keeps its promise on held-out normal events of the other side
    assert default["fpr"] < 0.03, report


DEV_TRAIN = 16_000  # normal training events, a seeded sample of train_normal.jsonl.gz (all: 67,343)
# Measured with this sample (BENCHMARKS.md has the full training file, three seeds): ROC-AUC 0.9635,
# realised FPR 1.9% at α = 1%, recall 0.558 at raw k-NN's realised FPR (raw k-NN 0.969 / 0.5% / 0.553;
# the calibration events join this baseline, 2026-12-07: 0.9636 / 2.0% / 0.560 before); before the
# noise-weighted mean of 3 neighbours (2026-12-05): 0.962 / 3.1% / 0.53.
DEV_ROC_AUC_FLOOR = 0.958
DEV_RECALL_AT_RAW_FPR_FLOOR = 0.52
DEV_MAX_FPR = 0.03


@needs_dev
def test_shifted_nsl_kdd_dev_half_holds_its_floors() -> None:
    """Trained on NSL-KDD's training normals, judged on the dev half of its official test set."""
    import faiss

    from scorer.evaluate import load_labelled
    from scorer.io import load_events
    from scorer.knn import _distances, _recall

    normals = load_events([NSL / "train_normal.jsonl.gz"])
    train = [normals[i] for i in np.random.default_rng(0).permutation(len(normals))[:DEV_TRAIN]]
    test, y, _ = load_labelled(NSL / "dev.jsonl.gz", NSL / "dev.labels.csv")
    detector = Detector.fit(train, progress=False)
    report = evaluate(detector, test, y, train, alpha=0.01, seed=0)
    print(format_report(report, 0.01))  # shown with `pytest -s`
    default = report[f"{detector.config.score} (default)"]
    assert default["roc_auc"] > DEV_ROC_AUC_FLOOR, report
    assert default["recall_at_raw_fpr"] > DEV_RECALL_AT_RAW_FPR_FLOOR, report
    assert default["roc_auc"] > report["isolation-forest"]["roc_auc"], report
    # shifted normal traffic breaks the exchangeability α rests on; this bounds how badly (README)
    assert 0.005 < default["fpr"] < DEV_MAX_FPR, report
    # the approximate feature index still finds the nearest baseline events the score reads for
    # traffic it was not tuned on (a miss inflates the feature-space distance into a false alarm)
    index, k = detector.feature_index, detector.config.feature_k
    assert index.kind != "exact"
    baseline = detector.feature_vectors(detector.baseline)
    queries = detector.feature_vectors(detector.encoder.encode(test))
    exact = faiss.IndexFlatL2(baseline.shape[1])
    exact.add(baseline)
    _, truth = exact.search(queries, k)
    _, found = index.search(queries, k)
    recall = _recall(_distances(baseline, queries, truth), _distances(baseline, queries, found))
    assert recall >= 0.95, index.describe()


# ---------------------------------------------------------------------------------------------------------
# Shifted demo data
# ---------------------------------------------------------------------------------------------------------

SHIFT_SEEDS = (0, 1, 2)  # demo companies
SHIFT_TRAIN, SHIFT_TEST = 4_000, 3_000  # about 14 days of training, then the next 11 days
NEW_HIRES = 8  # the company grows from 50 to 58 employees after the training period
SHIFT_ANOMALY_RATE = 0.05
SHIFT_ALPHA = 0.01
SHIFT_MAX_FPR = 0.05


@dataclass
class ShiftedRun:
    seed: int
    report: dict[str, dict[str, float]]
    default: str  # the report's key of the default score kind


@pytest.fixture(scope="module", params=SHIFT_SEEDS, ids=lambda seed: f"seed{seed}")
def shifted(request: pytest.FixtureRequest) -> ShiftedRun:
    """Fit the default detector once per seed on normal events, then evaluate it on the shifted period.

    Fitted and scored on one torch/faiss thread (restored afterwards), as in conftest: under
    ``make test``'s pytest workers thread teams that oversubscribe the cores make training many times slower.
    """
    import faiss
    import torch

    from scorer.threads import set_threads

    seed: int = request.param
    train, _ = generate_events(SHIFT_TRAIN, seed=seed)
    test, labels = generate_later(
        train, SHIFT_TEST, seed=seed, anomaly_rate=SHIFT_ANOMALY_RATE, new_hires=NEW_HIRES
    )
    y = np.array([label != NORMAL for label in labels], dtype=np.int64)
    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    set_threads(1)
    try:
        detector = Detector.fit(train, progress=False)
        report = evaluate(detector, test, y, train, alpha=SHIFT_ALPHA, seed=0)
    finally:
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(faiss_threads)
    print(
        f"\nshifted demo data, seed {seed}: {int(y.sum())} anomalies in {len(y)} events, {NEW_HIRES} new hires"
    )
    print(format_report(report, SHIFT_ALPHA))  # shown with `pytest -s`
    return ShiftedRun(seed, report, f"{detector.config.score} (default)")


def test_default_beats_raw_knn_on_shifted_demo_data(shifted: ShiftedRun) -> None:
    """One test per seed (all checks reported together): under pytest's workers each seed is fitted once."""
    default, raw = shifted.report[shifted.default], shifted.report["raw-knn"]
    checks = {
        "ROC-AUC at least raw k-NN's": default["roc_auc"] >= raw["roc_auc"],
        "recall at raw k-NN's realised FPR at least raw k-NN's": default["recall_at_raw_fpr"]
        >= raw["recall"],
        # the new hires' normal traffic must not set off the calibrated verdict wholesale
        f"realised FPR under {SHIFT_MAX_FPR}": default["fpr"] < SHIFT_MAX_FPR,
    }
    failed = [name for name, ok in checks.items() if not ok]
    assert not failed, {"seed": shifted.seed, "failed": failed, "default": default, "raw-knn": raw}
