"""The numerical libraries' process-wide settings: set only by entry points (the CLI's commands,
the service, the file-scoring workers), never by library code."""

from __future__ import annotations

import os

# Exact search (a small baseline, and every IVF index's coarse quantizer) goes to BLAS when queries ×
# dimension reach this (faiss ≥ 1.15 counts the dimension; its default is 128,000). On this machine BLAS
# pays from about 8 queries whatever the width, and costs a single query 4-6× more (BENCHMARKS.md →
# "Scoring throughput"): 1,024 keeps one query of any width on the sequential kernel and sends batches
# of a few to a few dozen queries to BLAS, as their width gives (2 of 670 columns, 8 of 141, 16 of 64).
BLAS_THRESHOLD = 1024


def most_processes() -> int:
    """The most worker processes a command or the service may start: four a core. Beyond that each
    only adds memory and start-up (every one loads the model), and enough of them exhaust the file
    descriptors."""
    return 4 * (os.cpu_count() or 1)


_chosen: int | None = None  # what the entry point chose, for torch if training imports it later


def set_threads(n: int) -> None:
    """Pin faiss and numpy's BLAS to ``n`` threads (one per worker: thread teams must not fight), and
    torch too (now if it is loaded, else when training imports it: :func:`chosen`), and let faiss
    use BLAS for batched exact search. Scoring never imports torch."""
    import sys

    import faiss
    from threadpoolctl import threadpool_limits

    global _chosen
    _chosen = n
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    threadpool_limits(limits=n, user_api="blas")  # numpy's matrix products in InferenceNet


def chosen() -> int | None:
    """The thread count :func:`set_threads` set in this process, if it was called."""
    return _chosen
