"""k-nearest-neighbour search over a baseline of normal events (FAISS).

Exact search (``IndexFlatL2``) for small baselines; HNSW above ``ann_threshold`` rows, with
recall@k against exact search measured at build time on held-out queries and stored, and
``efSearch`` raised until that recall reaches ``target_recall``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

ANN_THRESHOLD = 20_000
TARGET_RECALL = 0.95
HNSW_M = 32
EF_CONSTRUCTION = 80
EF_SEARCH_STEPS = (64, 128, 256, 512)
# faiss keeps exact search of fewer than this many queries off BLAS; 20 makes batched exact search
# several times faster, while BLAS makes single queries slower (PERFORMANCE.md).
BLAS_THRESHOLD = 20


def _use_blas_for_batches() -> None:
    # Queries fewer than the threshold never touch BLAS, so single queries are unaffected.
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD


@dataclass
class KnnIndex:
    """A FAISS index over baseline vectors, and what was measured about it."""

    index: Any
    kind: str  # "exact" or "hnsw"
    recall: float | None = None
    ef_search: int | None = None

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(
        cls,
        vectors: FloatArray,
        *,
        k: int = 20,
        recall_queries: FloatArray | None = None,
        ann_threshold: int = ANN_THRESHOLD,
        target_recall: float = TARGET_RECALL,
    ) -> KnnIndex:
        """Index ``vectors``; above ``ann_threshold`` rows, HNSW with measured recall@k."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError("a k-NN index needs a non-empty 2-d array of baseline vectors")
        exact = faiss.IndexFlatL2(vectors.shape[1])
        exact.add(vectors)
        if vectors.shape[0] <= ann_threshold:
            return cls(index=exact, kind="exact", recall=1.0)
        hnsw = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M)
        hnsw.hnsw.efConstruction = EF_CONSTRUCTION
        hnsw.add(vectors)
        queries = recall_queries if recall_queries is not None else vectors[:: max(1, len(vectors) // 1000)]
        queries = np.ascontiguousarray(queries[:2000], dtype=np.float32)
        _use_blas_for_batches()
        _, truth = exact.search(queries, k)
        recall, ef = 0.0, EF_SEARCH_STEPS[0]
        for ef in EF_SEARCH_STEPS:
            hnsw.hnsw.efSearch = ef
            _, found = hnsw.search(queries, k)
            recall = _recall(truth, found)
            if recall >= target_recall:
                break
        return cls(index=hnsw, kind="hnsw", recall=recall, ef_search=ef)

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """L2 distances (not squared) and baseline row ids of the ``k`` nearest neighbours."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.size)
        _use_blas_for_batches()
        squared, ids = self.index.search(queries, k)
        distances = np.sqrt(np.maximum(squared, 0.0), dtype=np.float32)
        return distances, ids.astype(np.int64, copy=False)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(
        cls, path: Path, *, kind: str, recall: float | None, ef_search: int | None, dim: int
    ) -> KnnIndex:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise ValueError(f"{path.name}: not a readable FAISS index ({exc})") from exc
        expected: Any = faiss.IndexHNSWFlat if kind == "hnsw" else faiss.IndexFlatL2
        if not isinstance(index, expected) or index.d != dim:
            raise ValueError(f"{path.name}: expected a {kind} index of dimension {dim}")
        if ef_search is not None:
            index.hnsw.efSearch = ef_search
        return cls(index=index, kind=kind, recall=recall, ef_search=ef_search)


def _recall(truth: IdArray, found: IdArray) -> float:
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth.tolist(), found.tolist(), strict=True))
    return hits / truth.size
