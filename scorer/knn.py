"""k-nearest-neighbour search over a baseline of normal events (FAISS).

Exact search (``IndexFlatL2``) for small baselines. Above ``ann_threshold`` rows, an approximate
index: IVF, then HNSW only if IVF falls short, each one's search effort (``nprobe``, ``efSearch``)
raised until its recall@k against exact search reaches ``target_recall`` on two query sets:
held-out queries, and the same queries with a tenth of each one's columns taken from another (off
the baseline's manifold, as shifted traffic is). IVF is kept if it gets there, else HNSW, else the
more accurate. Tuned on held-out queries alone, the feature-space HNSW index of an NSL-KDD model
found the true nearest neighbour for 97% of them but for 88.5% of NSL-KDD's test traffic,
captured apart from training; every miss inflates a distance into a false alarm (ROC-AUC 0.950
instead of exact search's 0.961), where IVF degraded gracefully (BENCHMARKS.md).
Recall compares, rank by rank, the distances of the found and the true neighbours, recomputed in
float64 from the vectors (faiss's own float32 figures differ between index types by more than the
gaps between near neighbours), so a duplicate of the true neighbour counts as found. Recall on both
sets, effort and speed are stored with the index.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

# A single query scans an exact index whole: 16,000 demo rows of 670 features took 8 ms a query
# (memory-bound), IVF 0.1 ms at recall 0.95 with the same detection (BENCHMARKS.md, service).
ANN_THRESHOLD = 5_000
TARGET_RECALL = 0.95
HNSW_M = 32
EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = (16, 32, 64, 128, 256, 512)
IVF_NPROBE = (2, 4, 8, 16, 32, 64, 128)
RECOMPUTE_CHUNK = 256  # queries whose exact distances are recomputed at once
# Exact search asks faiss for this many more neighbours than wanted and keeps the nearest by the
# recomputed distances: faiss picks a batch's k nearest by distances whose rounding depends on the
# batch, so among near-equal neighbours at the k-th place it picked one or another by batch (an
# event scored -0.998487 in a file's CSV, -0.998599 alone or in JSON Lines, which asks for 20)
EXACT_MARGIN = 8  # a batch of 4,096 on a 5,000-row baseline: +20-25% (16: +45-50%)
# A neighbour nearer than this is the event's twin, at distance 0: the network's embedding of an
# event moves by about 1e-6 with the size of the batch it is computed in (the matrix kernels), so a
# repeated event scored alone sat 1e-6 above its twins' calibration scores, every one tied at 0, and
# was flagged. The nearest neighbours of distinct events lie about 0.1 apart (the median in the
# demo model's embedding).
TWIN_DISTANCE = 1e-4
SHIFTED_COLUMNS = 0.1  # share of a held-out query's columns replaced to make a shifted query


@dataclass
class KnnIndex:
    """A FAISS index over baseline vectors, and what was measured about it."""

    index: Any
    kind: str  # "exact", "hnsw" or "ivf"
    recall: float | None = None  # on held-out queries
    recall_shifted: float | None = None  # on shifted queries (see the module docstring)
    search_param: int | None = None  # efSearch (hnsw) or nprobe (ivf)
    seconds_per_query: float | None = None

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
        """Index ``vectors``. Above ``ann_threshold`` rows, build IVF and raise its search effort until
        recall@k reaches ``target_recall`` on ``recall_queries`` and on shifted copies of them; if it
        cannot, build HNSW the same way and keep it if it gets there, else the more accurate."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError("a k-NN index needs a non-empty 2-d array of baseline vectors")
        exact = faiss.IndexFlatL2(vectors.shape[1])
        exact.add(vectors)
        if vectors.shape[0] <= ann_threshold:
            return cls(index=exact, kind="exact", recall=1.0, recall_shifted=1.0)
        held_out = (
            recall_queries
            if recall_queries is not None and len(recall_queries) > 0
            else vectors[:: max(1, len(vectors) // 1000)]
        )
        held_out = np.ascontiguousarray(held_out[:2000], dtype=np.float32)
        queries = np.concatenate([held_out, _shifted(held_out)])
        k = min(k, len(vectors))
        _, truth_ids = exact.search(queries, k)
        truth = _distances(vectors, queries, truth_ids)
        # IVF first: it degrades gracefully on shifted traffic where HNSW's graph walk does not
        # (BENCHMARKS.md), and a choice by measured speed kept different indices from run to run.
        # HNSW is built only when IVF cannot reach the target.
        ivf = _tune(_ivf(vectors), "ivf", IVF_NPROBE, vectors, queries, truth, target_recall)
        if ivf.worst_recall >= target_recall:
            return ivf
        hnsw = _tune(_hnsw(vectors), "hnsw", HNSW_EF_SEARCH, vectors, queries, truth, target_recall)
        return hnsw if hnsw.worst_recall >= target_recall else max((ivf, hnsw), key=lambda c: c.worst_recall)

    def extended(self, vectors: FloatArray) -> KnnIndex:
        """A copy of this index holding ``vectors`` too, searched at the same effort (an IVF's lists
        take them in as built; recall is as measured before); this one unchanged. An HNSW graph
        takes them too, but rewires as it grows and can lose a neighbour it found
        (:meth:`scorer.detector.Detector.admit` extends none)."""
        index = faiss.clone_index(self.index)
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return replace(self, index=index)

    @property
    def worst_recall(self) -> float:
        return min(self.recall or 0.0, self.recall_shifted or 0.0)

    def search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """L2 distances (not squared) and baseline row ids of the ``k`` nearest neighbours.

        An approximate index can come back with fewer than ``k`` (ids -1, distances ~3e38, which
        would turn into an alarm): those queries are searched again at the largest effort, with
        per-call parameters, so that concurrent searches never see each other's settings.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.size)
        if self.kind == "exact":
            # below the BLAS threshold faiss computes each distance directly, in the true order but
            # for ties within float32's precision: the margin is for batches (it cost a lone query
            # 60 µs of 150 on a 5,000-row baseline)
            blas = len(queries) * self.dim >= faiss.cvar.distance_compute_blas_threshold
            _, ids = self.index.search(queries, min(k + (EXACT_MARGIN if blas else 0), self.size))
            distances, ids = self._recomputed(queries, ids.astype(np.int64, copy=False))
            distances, ids = distances[:, :k], ids[:, :k]
        else:
            squared, ids = self.index.search(queries, k)
            short = np.flatnonzero((ids < 0).any(axis=1))
            if short.size:
                squared[short], ids[short] = self.index.search(queries[short], k, params=self._thorough(k))
            distances = np.sqrt(np.maximum(squared, 0.0), dtype=np.float32)
            ids = ids.astype(np.int64, copy=False)
        distances[distances < TWIN_DISTANCE] = 0.0
        return distances, ids

    def _recomputed(self, queries: FloatArray, ids: IdArray) -> tuple[FloatArray, IdArray]:
        """Exact search's distances to the neighbours it found, computed again from the stored
        vectors, nearest first. For a batch of queries faiss computes them as |x|² + |y|² − 2x·y
        (BLAS), which loses a near twin's small distance (0.0028 or 0.0039 for 0.0042, by batch
        size): an event's score would depend on the events beside it in its batch."""
        stored = faiss.rev_swig_ptr(self.index.get_xb(), self.size * self.dim).reshape(self.size, self.dim)
        distances = np.empty(ids.shape, dtype=np.float32)
        for start in range(0, len(queries), RECOMPUTE_CHUNK):  # bounds the (queries × k × dim) gaps
            rows = slice(start, start + RECOMPUTE_CHUNK)
            gaps = stored[ids[rows]].astype(np.float64) - queries[rows, None, :]
            distances[rows] = np.sqrt(np.einsum("nkd,nkd->nk", gaps, gaps))
        order = np.argsort(distances, axis=1, kind="stable")
        return np.take_along_axis(distances, order, axis=1), np.take_along_axis(ids, order, axis=1)

    def _thorough(self, k: int) -> Any:
        """Search parameters of the largest effort: every IVF list, or a wide HNSW beam."""
        api: Any = faiss  # its type stubs lack the per-call search parameters
        if self.kind == "ivf":
            return api.SearchParametersIVF(nprobe=int(self.index.nlist))
        return api.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH[-1], k))

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    def describe(self) -> dict[str, Any]:
        """What the bundle's metadata records about this index (also what `load` needs back)."""
        return {
            "kind": self.kind,
            "recall_at_k": self.recall,
            "recall_at_k_shifted": self.recall_shifted,
            "search_param": self.search_param,
            "seconds_per_query": self.seconds_per_query,
            "size": self.size,
            "dim": self.dim,
        }

    @classmethod
    def load(cls, name: str, data: bytes, meta: dict[str, Any]) -> KnnIndex:
        """An index file written by :meth:`save` (its bytes, ``data``, as read and checked against
        their digest), checked against its recorded description: of the kind :meth:`build` makes,
        by Euclidean distance, holding its vectors itself (an IVF index's lists may name a file
        elsewhere for FAISS to map, which no digest covers), each baseline row once."""
        kind, dim, param = meta["kind"], int(meta["dim"]), meta.get("search_param")
        if len(data) < int(meta["size"]) * dim * 4:  # before FAISS allocates what its header claims
            raise ValueError(
                f"{name}: {len(data):,} bytes cannot hold {meta['size']} vectors of dimension {dim}"
            )
        try:
            index = _read(data)
        except RuntimeError as exc:
            raise ValueError(f"{name}: not a readable FAISS index ({exc})") from exc
        expected: Any = {
            "hnsw": faiss.IndexHNSWFlat,
            "ivf": faiss.IndexIVFFlat,
            "exact": faiss.IndexFlatL2,
        }.get(kind)
        if (
            expected is None
            or not isinstance(index, expected)
            or index.d != dim
            or index.ntotal != int(meta["size"])
        ):
            raise ValueError(f"{name}: expected a {kind} index of {meta['size']} vectors of dimension {dim}")
        if (why := _unlike_built(index, kind)) is not None:
            raise ValueError(f"{name}: {why}; not an index ocsf-anomaly writes")
        if param is not None and (isinstance(param, bool) or not isinstance(param, int) or param < 1):
            raise ValueError(f"{name}: its search parameter {param!r} is not a positive integer")
        _set_param(index, kind, param)
        return cls(
            index=index,
            kind=kind,
            recall=meta.get("recall_at_k"),
            recall_shifted=meta.get("recall_at_k_shifted"),
            search_param=param,
            seconds_per_query=meta.get("seconds_per_query"),
        )


def _hnsw(vectors: FloatArray) -> Any:
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(vectors)
    return index


def _ivf(vectors: FloatArray) -> Any:
    # about 4·√n lists, with enough training points per list for k-means (faiss wants ≥ 39 each)
    n_lists = int(min(max(16, 4 * math.sqrt(len(vectors))), len(vectors) // 39))
    quantizer = faiss.IndexFlatL2(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], max(n_lists, 1))
    index.cp.seed = 1234
    index.train(vectors)
    index.add(vectors)  # faiss's Python wrapper keeps `quantizer` alive as long as `index`
    return index


def _read(data: bytes) -> Any:
    """The index ``data`` holds, read a block at a time (faiss's deserialize_index copies it whole
    first: 41 ms and a second copy of a 29 MB index, against 22 ms and none)."""
    view, at = memoryview(data), 0

    def block(size: int) -> bytes:
        nonlocal at
        chunk = view[at : at + size].tobytes()
        at += len(chunk)
        return chunk

    api: Any = faiss  # its type stubs lack the callback reader
    return api.read_index(api.PyCallbackIOReader(block))


def _unlike_built(index: Any, kind: str) -> str | None:
    """How a read index differs from what :meth:`KnnIndex.build` makes (None: it does not)."""
    api: Any = faiss  # its type stubs lack the downcasts
    parts = [index]
    if kind == "hnsw":
        parts.append(api.downcast_index(index.storage))
    elif kind == "ivf":
        quantizer = api.downcast_index(index.quantizer)
        if not isinstance(quantizer, faiss.IndexFlatL2):
            return "its coarse quantizer is not an exact Euclidean index"
        parts.append(quantizer)
        lists = api.downcast_InvertedLists(index.invlists)
        if not isinstance(lists, api.ArrayInvertedLists):
            return f"its lists are {type(lists).__name__}, not held in the file"
        ids = [
            api.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(index.nlist)
            if lists.list_size(i)
        ]
        held = np.sort(np.concatenate(ids)) if ids else np.empty(0, dtype=np.int64)
        if not np.array_equal(held, np.arange(index.ntotal)):
            return "its lists do not hold each baseline row once"
    if any(part.metric_type != faiss.METRIC_L2 for part in parts):
        return "it does not measure Euclidean distance"
    return None


def _set_param(index: Any, kind: str, param: int | None) -> None:
    if param is None:
        return
    if kind == "hnsw":
        index.hnsw.efSearch = int(param)
    elif kind == "ivf":
        index.nprobe = int(param)


def _shifted(queries: FloatArray) -> FloatArray:
    """Each query with a tenth of its columns taken from another query (seeded): off the manifold."""
    rng = np.random.default_rng(0)
    donors = queries[rng.integers(0, len(queries), len(queries))]
    return np.where(rng.random(queries.shape) < SHIFTED_COLUMNS, donors, queries).astype(np.float32)


def _tune(
    index: Any,
    kind: str,
    steps: tuple[int, ...],
    vectors: FloatArray,
    queries: FloatArray,
    truth: npt.NDArray[np.float64],
    target: float,
) -> KnnIndex:
    """Raise the search effort until recall reaches ``target`` on both halves of ``queries``
    (held-out, then shifted; ``truth``: their exact neighbours' distances)."""
    half = len(queries) // 2
    recalls, seconds, param = (0.0, 0.0), 0.0, steps[0]
    for param in steps:
        _set_param(index, kind, param)
        started = time.perf_counter()
        _, found_ids = index.search(queries, truth.shape[1])
        seconds = (time.perf_counter() - started) / max(len(queries), 1)
        found = _distances(vectors, queries, found_ids)
        recalls = (_recall(truth[:half], found[:half]), _recall(truth[half:], found[half:]))
        if min(recalls) >= target:
            break
    return KnnIndex(
        index=index,
        kind=kind,
        recall=recalls[0],
        recall_shifted=recalls[1],
        search_param=param,
        seconds_per_query=seconds,
    )


def _distances(vectors: FloatArray, queries: FloatArray, ids: IdArray) -> npt.NDArray[np.float64]:
    """Squared L2 distances in float64 from each query to the rows ``ids`` (-1, none found: +inf)."""
    rows = vectors[np.maximum(ids, 0)].astype(np.float64)  # (n, k, dim)
    gaps = rows - queries.astype(np.float64)[:, None, :]
    out = np.einsum("nkd,nkd->nk", gaps, gaps)
    return np.where(ids >= 0, out, np.inf)


def _recall(truth: npt.NDArray[np.float64], found: npt.NDArray[np.float64]) -> float:
    """Share of ranks at which the found neighbour is as near as the true one (both sorted): a
    duplicate of the true neighbour is as near, so ties between duplicate baseline rows are no misses."""
    if truth.size == 0:
        return 1.0
    return float(np.mean(np.sort(found, axis=1) <= truth * (1.0 + 1e-9) + 1e-12))
