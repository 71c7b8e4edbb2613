"""Detection quality beside raw-feature k-NN and IsolationForest, measured in the same run, on data
captured apart from training (the judge) and on i.i.d. splits (a sanity check).

Protocols (each: the model trains on normal events only, with `ocsf-anomaly train` defaults; the
test events are never seen by the encoder, the index or the calibration; `ocsf-anomaly evaluate`
fits both baselines on the same normal events in the same run):

* ``nsl-dev`` (shift): all normal events of NSL-KDD's training file train; the dev half of
  its official test set, captured apart from training (shifted normals, 17 unseen attack types), tests.
* ``unsw-ordered`` (time): the first half of UNSW-NB15's file trains, the second half tests.
* ``demo-hiring`` (shift, synthetic): ten weeks of the demo company train; the next eleven
  days, after eight new employees joined, with injected anomalies, test.
* ``nsl-iid``, ``unsw-iid``: a seeded line-level split of each training file (``unsw-iid-no-sttl``:
  the same without ``unmapped.sttl``, which nearly gives the label away).

Seeds change the model, and the data where it is drawn: the i.i.d. splits, the demo company.
Also: the realised false-positive rate at several α on the dev half, and the drift remedies
(re-calibrate or re-baseline on recent normal events) on the ordered splits, once, and again
after each of four windows in turn.

    .venv/bin/python bench/bench_detection.py [--seeds 0] [--protocols nsl-dev ...] [--drift-only | --no-drift]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from common import CLI, DATA, OUT, machine, require_data, run_cli

PROTOCOLS = ("nsl-dev", "unsw-ordered", "demo-hiring", "nsl-iid", "unsw-iid", "unsw-iid-no-sttl")
FOLDERS = {"nsl_kdd": "nsl_kdd_ocsf", "unsw_nb15": "unsw_nb15_ocsf"}
DEMO_TRAIN, DEMO_TEST, DEMO_NEW_HIRES, DEMO_ANOMALY_RATE = 20_000, 3_000, 8, 0.05
ALPHAS = (0.001, 0.01, 0.05)
ALPHA_PROTOCOLS = ("nsl-dev",)


def _split(name: str, seed: int, *, ordered: bool = False, without: tuple[str, str] | None = None) -> Path:
    tag = f"{name}{'_ordered' if ordered else ''}{'_no_' + without[1] if without else ''}_s{seed}"
    split = OUT / "splits" / tag
    done = split / "done"  # written last: a split cut short is made again
    if done.exists():
        return split
    folder = DATA / FOLDERS[name]
    args = ["split", str(folder / "train.jsonl.gz"), "--labels", str(folder / "train.labels.csv")]
    run_cli(*args, "--output", str(split), "--seed", str(seed), *(["--ordered"] if ordered else []))
    if without:
        for part in ("train_normal", "test"):
            plain = split / f"{part}.jsonl.gz"
            _drop_field(plain, split / f"{part}.tmp.gz", without)
            (split / f"{part}.tmp.gz").replace(plain)
    done.touch()
    return split


def _drop_field(source: Path, target: Path, path: tuple[str, str]) -> None:
    with gzip.open(source, "rb") as src, gzip.open(target, "wb", 3) as dst:
        for line in src:
            event = orjson.loads(line)
            event.get(path[0], {}).pop(path[1], None)
            dst.write(orjson.dumps(event) + b"\n")


def _demo(seed: int) -> Path:
    """The demo company's first ten weeks (normal), then eleven days after a round of hiring."""
    from scorer.demo import NORMAL, generate_events, generate_later

    folder = OUT / "splits" / f"demo_{DEMO_TRAIN}_{DEMO_TEST}_hires{DEMO_NEW_HIRES}_s{seed}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    train, _ = generate_events(DEMO_TRAIN, seed=seed)
    test, labels = generate_later(
        train, DEMO_TEST, seed=seed, anomaly_rate=DEMO_ANOMALY_RATE, new_hires=DEMO_NEW_HIRES
    )
    for name, events in (("train_normal", train), ("test", test)):
        with gzip.open(folder / f"{name}.jsonl.gz", "wb", 3) as out:
            out.write(b"".join(orjson.dumps(e) + b"\n" for e in events))
    rows = "".join(f"{i},{int(label != NORMAL)}\n" for i, label in enumerate(labels, start=1))
    (folder / "test.labels.csv").write_text("line,label\n" + rows, encoding="utf-8")
    (folder / "done").touch()
    return folder


def protocol_files(protocol: str, seed: int) -> tuple[Path, Path, Path]:
    """(normal training events, test events, test labels) of a protocol, made once under bench/out."""
    if protocol == "nsl-dev":
        folder = DATA / "nsl_kdd_ocsf"
        return folder / "train_normal.jsonl.gz", folder / "dev.jsonl.gz", folder / "dev.labels.csv"
    if protocol == "demo-hiring":
        split = _demo(seed)
    elif protocol == "unsw-ordered":
        split = _split("unsw_nb15", 0, ordered=True)
    elif protocol == "unsw-iid-no-sttl":
        split = _split("unsw_nb15", seed, without=("unmapped", "sttl"))
    elif protocol in ("nsl-iid", "unsw-iid"):
        split = _split({"nsl-iid": "nsl_kdd", "unsw-iid": "unsw_nb15"}[protocol], seed)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    return split / "train_normal.jsonl.gz", split / "test.jsonl.gz", split / "test.labels.csv"


def protocol_data(protocol: str, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """The same, loaded: normal training events, test events, and the test labels as an array."""
    from scorer.evaluate import load_labelled
    from scorer.io import load_events

    train_path, test_path, labels_path = protocol_files(protocol, seed)
    test, labels, _ = load_labelled(test_path, labels_path)
    return load_events([train_path]), test, labels


def _model(protocol: str, seed: int) -> tuple[Path, float]:
    train_path, _, _ = protocol_files(protocol, seed)
    model = OUT / "models" / f"{protocol}_s{seed}"
    wall, _ = run_cli("train", str(train_path), "--output", str(model), "--seed", str(seed), "--quiet")
    return model, wall


def run(protocol: str, seed: int) -> dict[str, dict[str, float]]:
    """`train` with defaults, then `evaluate` at each α: {α: {score kind: figures}}."""
    model, wall = _model(protocol, seed)
    train_path, test_path, labels_path = protocol_files(protocol, seed)
    results: dict[str, dict[str, Any]] = {"train_seconds": {"wall": wall}}
    # α = 0.01 everywhere; the other levels where the realised false-positive rate is reported
    for alpha in ALPHAS if protocol in ALPHA_PROTOCOLS else (0.01,):
        report = subprocess.run(
            [
                *CLI,
                "evaluate",
                "--model",
                str(model),
                str(test_path),
                "--labels",
                str(labels_path),
                "--train",
                str(train_path),
                "--seed",
                str(seed),
                "--alpha",
                str(alpha),
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results[str(alpha)] = json.loads(report.stdout)
    print(f"\n{protocol}, seed {seed} (train {wall:.0f} s), α = 0.01")
    for kind, m in results["0.01"].items():
        # how sure "above raw k-NN" is on these events: the paired 95% interval evaluate gives
        against = m.get("roc_auc_vs_raw_knn")
        paired = (
            f"  − raw {against:+.4f} ({m['roc_auc_vs_raw_knn_low']:+.4f}, {m['roc_auc_vs_raw_knn_high']:+.4f})"
            if against is not None
            else ""
        )
        print(
            f"  {kind:<22} ROC-AUC {m['roc_auc']:.4f}{paired}  PR-AUC {m['pr_auc']:.4f}  recall@α {m['recall']:.4f}"
            f"  FPR@α {m['fpr']:.4f}  recall@raw-FPR {m['recall_at_raw_fpr']:.4f}",
            flush=True,
        )
    return results


def _drift_data(name: str) -> tuple[Path, list[dict[str, Any]], list[int]]:
    """The earlier half's model (trained anew: the defaults may have changed since) and the later
    half's events and labels, in file order."""
    from scorer.evaluate import load_labelled
    from scorer.threads import set_threads

    set_threads(2)
    split = _split(name, 0, ordered=True)
    model = OUT / "models" / f"{name}_drift_s0"
    run_cli("train", str(split / "train_normal.jsonl.gz"), "--output", str(model), "--quiet")
    events, labels, _ = load_labelled(split / "test.jsonl.gz", split / "test.labels.csv")
    return model, events, list(labels)


def _window(events: list[dict[str, Any]], labels: list[int], contamination: float) -> list[dict[str, Any]]:
    """A refresh window: its normal events ("vetted": e.g. what analysts closed as benign), with
    attacks mixed in at ``contamination`` of them (unvetted traffic with a realistic attack rate).
    The test halves of these sets are about half attacks, so the unfiltered window would be no
    model of live traffic."""
    normal = [e for e, y in zip(events, labels, strict=True) if y == 0]
    attacks = [e for e, y in zip(events, labels, strict=True) if y == 1]
    return normal + attacks[: int(contamination * len(normal))]


def recalibrated(
    name: str,
    model: Path,
    events: list[dict[str, Any]],
    labels: list[int],
    share: float = 0.25,
    contamination: float = 0.005,
) -> dict[str, Any]:
    """Drift remedy: re-fit calibration (or also the baseline) on the first quarter of the later
    traffic, measure on the other three quarters, beside the original calibration; each on the
    vetted window and on the same with attacks mixed in at 0.5% of it."""
    from scorer.detector import Detector
    from scorer.evaluate import evaluate

    cut = int(len(events) * share)
    window_normal = _window(events[:cut], labels[:cut], 0.0)
    mixed = _window(events[:cut], labels[:cut], contamination)
    rest, rest_labels = events[cut:], np.asarray(labels[cut:])
    rows = {"original calibration": evaluate(Detector.load(model), rest, rest_labels, [], baselines=False)}
    rows["recalibrated, vetted window"] = evaluate(
        Detector.load(model).calibrate(window_normal), rest, rest_labels, [], baselines=False
    )
    rows[f"recalibrated, {contamination:.1%} attacks in window"] = evaluate(
        Detector.load(model).calibrate(mixed), rest, rest_labels, [], baselines=False
    )
    for window, what in ((window_normal, "vetted window"), (mixed, f"{contamination:.1%} attacks in window")):
        for keep_flagged, how in ((False, "flagged left out"), (True, "--keep-flagged")):
            rows[f"rebaselined, {what}, {how}"] = evaluate(
                Detector.load(model).rebaseline(window, keep_flagged=keep_flagged, log=print),
                rest,
                rest_labels,
                [],
                baselines=False,
            )
    print(
        f"\n{name} in file order: window = first {cut:,} later events ({len(window_normal):,} normal);"
        f" measured on the other {len(rest):,}"
    )
    result = {}
    for label, report in rows.items():
        m = next(v for k, v in report.items() if k.endswith("(default)"))
        result[label] = m
        print(f"  {label:<58} ROC-AUC {m['roc_auc']:.4f}  recall@1% {m['recall']:.4f}  FPR {m['fpr']:.4f}")
    return result


def successive(
    name: str,
    model: Path,
    events: list[dict[str, Any]],
    labels: list[int],
    windows: int = 5,
    contamination: float = 0.005,
) -> dict[str, Any]:
    """Refresh after every window of the later traffic in turn, each time measured on the next
    window: does a baseline screened at every refresh fall behind traffic that keeps moving?
    Policies: none (the model as trained), the calibration only, ``refresh`` on vetted windows
    with the flagged events left out and with ``--keep-flagged``, and ``refresh`` on windows
    with attacks at ``contamination``."""
    from scorer.detector import Detector
    from scorer.evaluate import evaluate

    # each class cut in file order: UNSW-NB15's file runs in long blocks of one class or the other
    y = np.asarray(labels)
    parts = zip(*(np.array_split(np.flatnonzero(y == c), windows) for c in (0, 1)), strict=True)
    rows = [np.sort(np.concatenate(both)) for both in parts]
    chunks = [([events[i] for i in r], [labels[i] for i in r]) for r in rows]
    policies: dict[str, tuple[str, float, bool]] = {
        "as trained": ("none", 0.0, False),
        f"recalibrated, {contamination:.1%} attacks": ("calibrate", contamination, False),
        "refresh, vetted, flagged left out": ("refresh", 0.0, False),
        "refresh, vetted, --keep-flagged": ("refresh", 0.0, True),
        f"refresh, {contamination:.1%} attacks, flagged left out": ("refresh", contamination, False),
    }
    print(
        f"\n{name} in file order, {windows} windows of about {len(rows[0]):,} events (each class cut in"
        " file order): refresh after each, measure on the next; ROC-AUC / recall at α / FPR"
    )
    result: dict[str, Any] = {}
    for label, (remedy, share, keep_flagged) in policies.items():
        detector = Detector.load(model)
        steps = []
        for i in range(windows - 1):
            said: list[str] = []
            window = _window(*chunks[i], share)
            if remedy == "calibrate":
                detector = detector.calibrate(window)
            elif remedy == "refresh":
                detector = detector.rebaseline(window, keep_flagged=keep_flagged, log=said.append)
            test, test_labels = chunks[i + 1]
            report = evaluate(detector, test, np.asarray(test_labels), [], baselines=False)
            m = next(v for k, v in report.items() if k.endswith("(default)"))
            screen = re.search(r": ([\d,]+) of the ([\d,]+) events", said[0]) if said else None
            left_out = f"{screen[1]} of {screen[2]} left out" if screen else ""  # from the screen's own line
            steps.append({**m, "left_out": left_out, "warned": bool(said) and said[0].startswith("warning")})
        result[label] = steps
        print(
            f"  {label:<44} "
            + "  ".join(
                f"{s['roc_auc']:.3f}/{s['recall']:.3f}/{100 * s['fpr']:.1f}%"
                + (f" ({s['left_out']}{', warned' if s['warned'] else ''})" if s["left_out"] else "")
                for s in steps
            ),
            flush=True,
        )
    return result


def _median_table(runs: list[dict[str, Any]], alpha: str = "0.01") -> dict[str, dict[str, float]]:
    table = {}
    for kind in runs[0][alpha]:
        table[kind] = {
            m: statistics.median(r[alpha][kind][m] for r in runs)
            for m in ("roc_auc", "pr_auc", "recall", "fpr", "recall_at_raw_fpr")
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    drift = parser.add_mutually_exclusive_group()
    drift.add_argument(
        "--drift-only", action="store_true", help="only the drift remedies on the ordered splits"
    )
    drift.add_argument(
        "--no-drift", action="store_true", help="the protocols only, not the drift remedies (about 5 minutes)"
    )
    args = parser.parse_args()
    require_data()
    print(f"machine: {machine()}")
    results: dict[str, list[dict[str, Any]]] = {}
    if not args.drift_only:
        for protocol in args.protocols:
            for seed in args.seeds:
                results.setdefault(protocol, []).append(run(protocol, seed))
    remedies = {}
    for name in [] if args.no_drift else FOLDERS:
        model, events, labels = _drift_data(name)
        remedies[name] = {
            "quarter": recalibrated(name, model, events, labels),
            "successive": successive(name, model, events, labels),
        }
    if args.drift_only:
        return _write(OUT / "drift.json", results, {}, remedies)
    print(f"\nmedian over seeds {args.seeds}: ROC-AUC / PR-AUC / recall@α / FPR@α / recall@raw-FPR, α = 0.01")
    summary: dict[str, Any] = {}
    for protocol, runs in results.items():
        summary[protocol] = _median_table(runs)
        print(f"{protocol}:")
        for kind, m in summary[protocol].items():
            print(f"  {kind:<22} " + " / ".join(f"{v:.4f}" for v in m.values()))
        if protocol in ALPHA_PROTOCOLS:
            fprs = {
                a: {k: statistics.median(r[str(a)][k]["fpr"] for r in runs) for k in runs[0][str(a)]}
                for a in ALPHAS
            }
            for a, by_kind in fprs.items():
                print(
                    f"  realised FPR at α = {a}: "
                    + ", ".join(f"{k} {100 * f:.2f}%" for k, f in by_kind.items())
                )
            summary[protocol]["realised_fpr_by_alpha"] = fprs
    _write(OUT / "detection.json", results, summary, remedies)


def _write(out: Path, results: dict[str, Any], summary: dict[str, Any], drift: dict[str, Any]) -> None:
    out.write_text(json.dumps({"runs": results, "median": summary, "drift": drift}, indent=1))


if __name__ == "__main__":
    main()
