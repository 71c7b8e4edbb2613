"""Neighbour statistics of the feature space, measured on the encoder's vectors (issue 14).

For each protocol and seed (the protocols of bench_detection.py): fit the default detector, keep
its encoder's feature-space vectors, unweighted (`encoder.dense`), of the baseline, the held-out calibration events and the test events,
and its standardised embedding score (the calibration events kept out of the baseline, as every
detector was fitted before 2026-12-07); raw k-NN is fitted on the same split. Then each option
below is scored with exact search, standardised on the baseline's own leave-one-out scores (as
the detector's standardisers are), fused with the embedding at a weight w, calibrated on the
calibration events (by class, as the detector does), and judged: ROC-AUC / recall at raw k-NN's
realised false-positive rate / realised false-positive rate at α = 1% / recall at a 0.5%
false-alarm budget, median over the seeds.

Options:

* ``1-NN``: the distance to the nearest baseline event (the default's feature score until 2026-12-05).
* ``mean kN``: the mean distance to the N nearest, N = 3 … 50 (smoother: what nsl-dev's
  false-positive rate likes).
* ``tau``: each numeric column divided by max(1, rms / 0.2), rms being how much it differs between
  5,000 baseline events and their 5 nearest baseline events (a metric fitted to neighbour noise;
  what `train --feature-noise 0.2` does since 2026-12-05).
* ``edges KN``: the distance to the baseline's neighbour graph: the nearest point of any segment
  from one of the event's 10 nearest baseline events to one of that event's N nearest baseline
  events. Normal events that lie between two neighbouring normal events are not far from normal;
  a field that no pair of neighbours varies in still counts in full.
* ``tau, local z kN``: under the ``tau`` metric, the distance to the nearest baseline event with
  each column divided by how much the event's N nearest baseline events vary in it (the root mean
  square about their median, at least 0.3): a column the neighbourhood holds constant counts in
  full, one it varies in counts for less (a local metric; 2026-12-06). ``tau, mean k20 + ½ local
  z k50`` averages that with the smooth statistic, each standardised.

The vectors are kept under bench/out/statistics (delete them after changing the detector).

    .venv/bin/python bench/bench_statistics.py [--seeds 0 1 2] [--protocols nsl-dev ...]   # ~25 min the first time
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import faiss
import numpy as np
from bench_detection import protocol_data
from common import OUT, machine, require_data

from scorer.baselines import run_baselines
from scorer.calibration import Calibration
from scorer.detector import Detector, DetectorConfig, Standardiser, split_for_fit
from scorer.metrics import detection_report, recall_at_fpr
from scorer.threads import set_threads

PROTOCOLS = ("nsl-dev", "unsw-ordered", "demo-hiring", "nsl-iid", "unsw-iid")
ALPHA, LOW_BUDGET = 0.01, 0.005
SAMPLE = 5_000  # baseline events whose leave-one-out scores fit each standardiser
QUERY_NEIGHBOURS = 10  # baseline events whose graph edges an event is measured against
LOCAL_FLOOR = 0.3  # the least spread a column's neighbourhood is read with, in the metric's units
Array = np.ndarray


def vectors(protocol: str, seed: int) -> dict[str, Any]:
    """The default detector's vectors and scores of one protocol and seed (made once, then read)."""
    path = OUT / "statistics" / f"{protocol}_s{seed}.npz"
    if not path.exists():
        train, test, y = protocol_data(protocol, seed)
        raw = run_baselines(train, test, seed=seed)[0]
        raw_fpr = detection_report(y, raw.scores, raw.flagged)["fpr"]
        detector = Detector.fit(  # the baseline without the calibration events, which are scored against it
            train, config=DetectorConfig(seed=seed), progress=False, calibration_joins_baseline=False
        )
        cal = [train[i] for i in split_for_fit(len(train), detector.config)[0]]
        encoder, embedding = detector.encoder, detector.standardisers["embedding"]
        encoded = {"cal": encoder.encode(cal), "test": encoder.encode(test)}
        arrays: dict[str, Any] = {"base": encoder.dense(detector.baseline), "y": np.asarray(y)}
        for part, batch in encoded.items():
            arrays[part] = encoder.dense(batch)
            arrays[f"emb_{part}"] = embedding(
                detector.with_config(score="embedding")._components(batch)[0]["embedding"]
            )
        invalid = encoded["test"].invalid
        arrays["invalid"] = invalid.any(axis=1) if invalid is not None else np.zeros(len(test), dtype=bool)
        arrays["cls_cal"] = np.array([str(e.get("class_uid")) for e in cal])
        arrays["cls_test"] = np.array([str(e.get("class_uid")) for e in test])
        arrays.update(raw_scores=raw.scores, raw_fpr=raw_fpr, n_num=detector.baseline.num.shape[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)
    with np.load(path, allow_pickle=False) as data:
        return dict(data)


def search(base: Array, queries: Array, k: int) -> tuple[Array, Array]:
    """Exact L2 distances (not squared) and ids of the k nearest baseline rows."""
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    squared, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return np.sqrt(np.maximum(squared, 0.0)).astype(np.float64), ids


def edge_distance(base: Array, graph: Array, queries: Array, near: Array, skip: Array | None = None) -> Array:
    """Distance from each query to the nearest segment (a, b): a among its ``near`` rows, b among a's
    graph neighbours; with ``skip``, segments touching that baseline row (the query itself) are left out."""
    out = np.empty(len(queries))
    for start in range(0, len(queries), 500):
        rows = slice(start, start + 500)
        a_ids = near[rows]
        b_ids = graph[a_ids]
        a = base[a_ids][:, :, None, :]
        direction = base[b_ids] - a
        offset = queries[rows][:, None, None, :] - a
        length = np.maximum((direction * direction).sum(-1), 1e-12)
        t = np.clip((offset * direction).sum(-1) / length, 0.0, 1.0)
        residual = offset - t[..., None] * direction
        squared = (residual * residual).sum(-1)
        if skip is not None:
            me = skip[rows][:, None, None]
            squared = np.where((b_ids == me) | (a_ids[:, :, None] == me), np.inf, squared)
        out[rows] = np.sqrt(squared.reshape(len(a_ids), -1).min(axis=1))
    return out


def noise_metric(base: Array, n_numeric: int, tau: float = 0.2, neighbours: int = 5) -> Array:
    """Per-column factors: numeric columns that differ between near neighbours count for less."""
    rows = np.random.default_rng(1).permutation(len(base))[:SAMPLE]
    _, ids = search(base, base[rows], neighbours + 1)
    diff = base[rows][:, None, :n_numeric].astype(np.float64) - base[ids[:, 1:]][:, :, :n_numeric]
    rms = np.sqrt((diff**2).mean(axis=(0, 1)))
    factors = np.ones(base.shape[1])
    factors[:n_numeric] = 1.0 / np.maximum(1.0, rms / tau)
    return factors


def local_z(base: Array, queries: Array, near: Array, k: int, floor: float = LOCAL_FLOOR) -> Array:
    """Distance from each query to its nearest baseline row, each column scaled by the spread of
    the query's k nearest baseline rows in it (root mean square about their median, ``floor`` at least)."""
    out = np.empty(len(queries))
    for start in range(0, len(queries), 500):
        rows = slice(start, start + 500)
        around = base[near[rows, :k]]
        spread = np.sqrt(((around - np.median(around, axis=1)[:, None, :]) ** 2).mean(axis=1))
        z = (queries[rows] - around[:, 0, :]) / np.maximum(spread, floor)
        out[rows] = np.sqrt((z * z).sum(axis=1))
    return out


def feature_scores(v: dict[str, Any]) -> dict[str, tuple[Array, Array]]:
    """Every option's standardised feature-space score of the calibration and the test events."""
    out: dict[str, tuple[Array, Array]] = {}
    for metric in ("plain", "tau"):
        factors = (
            np.ones(v["base"].shape[1]) if metric == "plain" else noise_metric(v["base"], int(v["n_num"]))
        )
        base, cal, test = ((v[part] * factors).astype(np.float32) for part in ("base", "cal", "test"))
        rows = np.random.default_rng(1).permutation(len(base))[:SAMPLE]
        own_d, own_ids = search(base, base[rows], 51)
        own_d, own_ids = own_d[:, 1:], own_ids[:, 1:]  # leave-one-out: the row itself dropped
        (cal_d, cal_ids), (test_d, test_ids) = search(base, cal, 50), search(base, test, 50)
        name = "" if metric == "plain" else "tau, "
        for k in (1, 3, 5, 10, 20, 50):
            fit = Standardiser.fit(own_d[:, :k].mean(axis=1))
            label = f"{name}1-NN" if k == 1 else f"{name}mean k{k}"
            out[label] = (fit(cal_d[:, :k].mean(axis=1)), fit(test_d[:, :k].mean(axis=1)))
        if metric == "tau":
            local: dict[int, tuple[Array, Array]] = {}
            for k in (10, 50):
                fit = Standardiser.fit(local_z(base, base[rows], own_ids, k))
                local[k] = (fit(local_z(base, cal, cal_ids, k)), fit(local_z(base, test, test_ids, k)))
                out[f"tau, local z k{k}"] = local[k]
            smooth = out["tau, mean k20"]
            out["tau, mean k20 + ½ local z k50"] = (
                (smooth[0] + local[50][0]) / 2,
                (smooth[1] + local[50][1]) / 2,
            )
            continue
        _, graph = search(base, base, 11)
        for k in (5, 10):
            edges = graph[:, 1 : k + 1]
            near = QUERY_NEIGHBOURS
            fit = Standardiser.fit(edge_distance(base, edges, base[rows], own_ids[:, :near], skip=rows))
            out[f"edges K{k}"] = (
                fit(edge_distance(base, edges, cal, cal_ids[:, :near])),
                fit(edge_distance(base, edges, test, test_ids[:, :near])),
            )
    return out


def judge(v: dict[str, Any], cal: Array, test: Array) -> tuple[float, float, float, float]:
    y = v["y"]
    calibration = Calibration.fit(cal, list(v["cls_cal"]), min_group_size=DetectorConfig().min_group_size)
    p = calibration.p_values(test, calibration.resolve(list(v["cls_test"]), ALPHA), ALPHA)
    p[v["invalid"]] = 0.0
    m = detection_report(y, test, p <= ALPHA + 1e-12)
    return (
        m["roc_auc"],
        recall_at_fpr(y, test, float(v["raw_fpr"])),
        m["fpr"],
        recall_at_fpr(y, test, LOW_BUDGET),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    args = parser.parse_args()
    require_data()
    set_threads(2)
    faiss.omp_set_num_threads(2)
    print(f"machine: {machine()}")
    table: dict[str, dict[str, list[tuple[float, float, float, float]]]] = {}
    for protocol in args.protocols:
        for seed in args.seeds:
            v = vectors(protocol, seed)
            y, raw = v["y"], v["raw_scores"]
            raw_fpr = float(v["raw_fpr"])
            raw_row = (
                detection_report(y, raw, np.zeros(len(y), dtype=bool))["roc_auc"],
                recall_at_fpr(y, raw, raw_fpr),
                raw_fpr,
                recall_at_fpr(y, raw, LOW_BUDGET),
            )
            table.setdefault("raw-feature k-NN", {}).setdefault(protocol, []).append(raw_row)
            for name, (cal, test) in feature_scores(v).items():
                for w in (0.0, 0.1, 0.25):
                    fused = (w * v["emb_cal"] + (1 - w) * cal, w * v["emb_test"] + (1 - w) * test)
                    label = f"{name}, w {w}" + (
                        " (before)"
                        if name == "1-NN" and w == 0.25
                        else " (≈ default)"
                        if name == "tau, mean k3" and w == 0.1
                        else ""
                    )
                    table.setdefault(label, {}).setdefault(protocol, []).append(judge(v, *fused))
            print(f"{protocol} seed {seed} done", flush=True)
    print(
        f"\nmedian over seeds {', '.join(map(str, args.seeds))}: ROC-AUC / recall@raw-FPR / realised FPR "
        f"at α = {ALPHA:g} / recall at a {LOW_BUDGET:.1%} budget; w = the embedding's share"
    )
    print("| option | " + " | ".join(args.protocols) + " |")
    print("|---|" + "---|" * len(args.protocols))
    for label, row in table.items():
        cells = []
        for protocol in args.protocols:
            runs = row[protocol]
            a, r, f, low = (statistics.median(run[i] for run in runs) for i in range(4))
            cells.append(f"{a:.4f} / {r:.3f} / {100 * f:.2f}% / {low:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
