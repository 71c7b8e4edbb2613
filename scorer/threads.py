"""The numerical libraries' process-wide settings: set only by entry points (the CLI's commands,
the service, the file-scoring workers), never by library code."""

from __future__ import annotations

# faiss keeps exact search of fewer than this many queries off BLAS (its default: 128,000); 20 makes
# batched exact search several times faster, while single queries stay off BLAS (PERFORMANCE.md).
BLAS_THRESHOLD = 20


def set_threads(n: int) -> None:
    """Pin torch, faiss and numpy's BLAS to ``n`` threads (one per worker: thread teams must not
    fight), and let faiss use BLAS for batched exact search."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    threadpool_limits(limits=n, user_api="blas")  # numpy's matrix products in InferenceNet
