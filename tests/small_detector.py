"""A detector as small as the tests fit them (1 epoch on at most 2,000 rows, a baseline of 1,000), on
one torch/faiss thread: under ``make test``'s pytest workers the cores are shared, and OpenMP teams that
oversubscribe the cores make training many times slower. The threads are restored afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def small_fit(
    events: Sequence[dict[str, Any]], log: Any = None, baseline_size: int = 1_000, **fit: Any
) -> Any:
    import faiss
    import torch

    from scorer.detector import Detector, DetectorConfig
    from scorer.model import TrainConfig
    from scorer.threads import set_threads

    threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    set_threads(1)
    try:
        return Detector.fit(
            events,
            config=DetectorConfig(baseline_size=baseline_size, seed=0),
            train_config=TrainConfig(epochs=1, max_rows=2_000, seed=0),
            progress=False,
            log=log,
            **fit,
        )
    finally:
        torch.set_num_threads(threads[0])
        faiss.omp_set_num_threads(threads[1])
