"""Thread settings of the numerical libraries: process-wide, so set only by entry points."""

from __future__ import annotations


def set_threads(n: int) -> None:
    """Pin torch, faiss and numpy's BLAS to ``n`` threads (one per worker: thread teams must not fight)."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")  # numpy's matrix products in InferenceNet
