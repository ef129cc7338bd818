"""Exact (brute-force) inner-product index, chunked over the database so memory stays bounded."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polymodal.core.atomic import atomic_path
from polymodal.core.errors import PolymodalError
from polymodal.index.common import (IdTable, SearchResult, as_matrix, check_dim, check_k,
                                    check_metric, read_ids, read_meta, remove_stale, write_ids,
                                    write_meta)

VECTORS_FILE = "vectors.npy"
DEFAULT_CHUNK = 65536
# Largest score block (queries x database rows) held at once: 2**24 float32 = 64 MiB.
SCORE_BUDGET = 1 << 24
QUERY_BATCH = 1024


class ExactIndex:
    """Exact top-k by matrix product. ``search`` walks the database in blocks of at most
    ``chunk_size`` rows (and the queries in batches; one score block stays under 64 MiB),
    keeping a running top-k, so memory is bounded independently of the index size. Ties are broken by insertion
    order (earlier first) among the candidates kept."""

    kind = "exact"

    def __init__(self, dim: int, metric: str = "cosine", chunk_size: int = DEFAULT_CHUNK):
        self.dim = check_dim(dim)
        self.metric = check_metric(metric)
        if chunk_size < 1:
            raise PolymodalError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        self._ids = IdTable()
        self._buf = np.empty((0, self.dim), dtype=np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"ExactIndex(dim={self.dim}, metric={self.metric!r}, size={self._n})"

    @property
    def params(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size}

    @property
    def ids(self) -> list[str]:
        """The string ids in insertion order (do not modify)."""
        return self._ids.ids

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors [len, dim] (normalised when metric is cosine); a view."""
        return self._buf[: self._n]

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        """Append ``vectors`` [n, dim] with their string ``ids`` (unique, not yet present)."""
        arr = as_matrix(vectors, self.dim, "vectors", self.metric)
        ids = self._ids.check_new(ids, len(arr))
        need = self._n + len(arr)
        if need > len(self._buf):
            grown = np.empty((max(need, int(len(self._buf) * 1.5)), self.dim), dtype=np.float32)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n: need] = arr
        self._n = need
        self._ids.extend(ids)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """Top-``k`` by inner product (cosine when ``metric="cosine"``): ``(scores [q, k] float32
        sorted descending, ids as q lists of k strings)``."""
        k = check_k(k, self._n)
        q = as_matrix(queries, self.dim, "queries", self.metric)
        scores, labels = topk_inner_product(q, self.vectors, k, self.chunk_size)
        return scores, self._ids.lookup(labels)

    def save(self, directory: str | Path) -> Path:
        """Write ``vectors.npy``, ``ids.json`` and ``index.json`` (last) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / VECTORS_FILE) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, self.vectors, allow_pickle=False)
        write_ids(directory, self._ids.ids)
        write_meta(directory, self.kind, self.dim, self.metric, self.params, self._n)
        remove_stale(directory, VECTORS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "ExactIndex":
        """Read an index written by :meth:`save`."""
        directory = Path(directory)
        meta = read_meta(directory, (cls.kind,), "'exact'")
        chunk = meta["params"].get("chunk_size", DEFAULT_CHUNK)
        index = cls(meta["dim"], meta["metric"], chunk_size=int(chunk))
        path = directory / VECTORS_FILE
        if not path.is_file():
            raise PolymodalError(f"{path}: not found (index directory incomplete)")
        try:
            vecs = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise PolymodalError(f"{path}: corrupt vectors file ({exc})") from None
        if vecs.dtype != np.float32 or vecs.shape != (meta["count"], meta["dim"]):
            raise PolymodalError(f"{path}: expected float32 [{meta['count']}, {meta['dim']}], "
                                 f"got {vecs.dtype} {list(vecs.shape)}")
        index._ids = read_ids(directory, meta["count"])
        index._buf = np.ascontiguousarray(vecs)
        index._n = len(vecs)
        return index


def topk_inner_product(queries: np.ndarray, database: np.ndarray, k: int,
                       chunk_size: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``database`` by inner product with each query.

    Returns ``(scores float32 [q, k], positions int64 [q, k])`` sorted by score descending, ties
    by position ascending. Walks the database in blocks of at most ``chunk_size`` rows and the
    queries in batches of at most 1024 (a block is also capped so one score block holds at most
    2**24 floats, 64 MiB): numpy matmul into a reused buffer, then torch.topk and a running
    merge (measured faster here than torch matmul or numpy argpartition)."""
    import torch

    n, q_total = len(database), len(queries)
    if not 0 < k <= n:
        raise PolymodalError(f"k={k} must be between 1 and the database size {n}")
    q_batch = max(1, min(q_total, QUERY_BATCH))
    chunk = max(1, min(chunk_size, n, SCORE_BUDGET // q_batch))
    buf = np.empty((q_batch, chunk), dtype=np.float32)
    out_s = np.empty((q_total, k), dtype=np.float32)
    out_i = np.empty((q_total, k), dtype=np.int64)
    with torch.inference_mode():
        for q0 in range(0, q_total, q_batch):
            qs = queries[q0: q0 + q_batch]
            best_s = best_i = None
            for start in range(0, n, chunk):
                block = database[start: start + chunk]
                scores = buf[: len(qs), : len(block)]
                np.matmul(qs, block.T, out=scores)
                s, i = torch.topk(torch.from_numpy(scores), min(k, len(block)), dim=1)
                i += start
                if best_s is not None:
                    s, i = _merge(torch.cat([best_s, s], 1), torch.cat([best_i, i], 1), k)
                best_s, best_i = s, i
            # final order: score descending, position ascending among equal scores
            order = np.lexsort((best_i.numpy(), -best_s.numpy()), axis=1)
            out_s[q0: q0 + q_batch] = np.take_along_axis(best_s.numpy(), order, 1)
            out_i[q0: q0 + q_batch] = np.take_along_axis(best_i.numpy(), order, 1)
    return out_s, out_i


def _merge(scores: Any, idx: Any, k: int) -> tuple[Any, Any]:
    """Keep the ``k`` best of candidate (scores, positions); earlier candidates win ties."""
    import torch

    s, order = torch.sort(scores, dim=1, descending=True, stable=True)
    return s[:, :k], torch.gather(idx, 1, order[:, :k])
