"""Dynamic int8 of the network's linear layers (issue 15 §6's option), against the fp32 network scoring runs.

The default NSL-KDD model: its torch TabularResNet quantised by `torch.ao.quantization.quantize_dynamic`
(Linear layers, qint8 weights, activations quantised per batch). Agreement on the NSL-KDD dev half:
the detector's whole score with int8 embeddings in place of fp32 ones (rank correlation, ROC-AUC,
verdicts that differ at the default α). Speed: the embedding alone, one thread, one event at a time
and in a batch of 8,192: scoring's numpy fp32 network, torch fp32 and torch int8.

    .venv/bin/python bench/bench_int8.py
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
from common import DATA, default_model, machine, require_data


def per_call(call: Callable[[int], object], calls: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean µs a call over ``calls`` calls."""
    means = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(calls):
            call(i)
        means.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(means)


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    require_data()
    import torch
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from scorer.detector import Detector
    from scorer.io import parse_line
    from scorer.model import TabularResNet
    from scorer.network import embed
    from scorer.threads import set_threads

    print(f"machine: {machine()}")
    set_threads(1)
    detector = Detector.load(default_model())
    fp32 = TabularResNet(detector.net.config)
    fp32.load_state_dict({name: torch.from_numpy(w) for name, w in detector.net.weights.items()})
    fp32.eval()
    with (
        warnings.catch_warnings()
    ):  # torch.ao.quantization is deprecated in favour of torchao, not installed here
        warnings.simplefilter("ignore")
        # torch leaves quantize_dynamic unannotated: it returns the quantised copy of the module
        int8: torch.nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            fp32, {torch.nn.Linear}, dtype=torch.qint8
        )

    dev = DATA / "nsl_kdd_ocsf"
    with gzip.open(dev / "dev.jsonl.gz", "rb") as handle:
        events = [parse_line(line)[0] for line in handle]
    rows = (dev / "dev.labels.csv").read_text().splitlines()[1:]
    labels = np.array([row.split(",")[1] == "1" for row in rows])
    prepared = detector.prepare(events, keys=True)  # type: ignore[arg-type]
    encoded = prepared.encoded
    with torch.inference_mode():
        quantised = int8(torch.from_numpy(encoded.cat), torch.from_numpy(encoded.num)).numpy()
    exact = embed(detector.net, encoded)
    results = [
        detector.finish(prepared, [row.tobytes() for row in vectors.astype(np.float32)], explain=False)[0]
        for vectors in (exact, quantised)
    ]
    print(f"\nNSL-KDD dev half, {len(events):,} events, the detector's score with each network's embeddings:")
    print(f"  rank correlation of the scores: {spearmanr(results[0].score, results[1].score).statistic:.5f}")
    print(
        f"  ROC-AUC fp32 {roc_auc_score(labels, results[0].score):.4f}, int8 {roc_auc_score(labels, results[1].score):.4f};"
        f" verdicts that differ at α = {detector.config.alpha}: {int((results[0].is_anomaly != results[1].is_anomaly).sum())}"
    )

    singles = [encoded.take(np.asarray([i])) for i in range(1_000)]
    batch = encoded.take(np.arange(min(8_192, len(encoded))))
    print("\nthe embedding alone, one thread (median of 5):")
    print(
        f"  one event:   numpy fp32 {per_call(lambda i: embed(detector.net, singles[i]), 1_000):6.1f} µs",
        end="",
    )
    with torch.inference_mode():
        tensors = [(torch.from_numpy(s.cat), torch.from_numpy(s.num)) for s in singles]
        # defs, not lambdas: mypy cannot type a lambda with a parameter per_call's Callable[[int], object]
        # lacks (the default that binds the network); the same function objects, called the same way
        for name, net in (("torch fp32", fp32), ("torch int8", int8)):

            def one(i: int, net: torch.nn.Module = net) -> object:
                return net(*tensors[i])

            print(f", {name} {per_call(one, 1_000):6.1f} µs", end="")
        whole = (torch.from_numpy(batch.cat), torch.from_numpy(batch.num))
        batched: dict[str, float] = {}
        for name, net in (("torch fp32", fp32), ("torch int8", int8)):

            def every(_: int, net: torch.nn.Module = net) -> object:
                return net(*whole)

            batched[name] = per_call(every, 1) / len(batch)
    print(
        f"\n  {len(batch):,} at once: numpy fp32 {per_call(lambda _: embed(detector.net, batch), 1) / len(batch):.2f} µs an event",
        end="",
    )
    print("".join(f", {name} {value:.2f}" for name, value in batched.items()))


if __name__ == "__main__":
    main()
