"""Approximate indexes on faiss-cpu: HNSW (``IndexHNSWFlat``) and IVF-PQ (``IndexIVFPQ``).

faiss is optional (``pip install 'polymodal[faiss]'``) and imported only when an index is built.
Our string ids map to faiss' sequential int64 labels: label ``i`` is the ``i``-th id added.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polymodal.core.atomic import atomic_path
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.lazy import need
from polymodal.index.common import (IdTable, SearchResult, as_matrix, check_dim, check_k,
                                    check_metric, default_nlist, default_pq_m, read_ids,
                                    read_meta, remove_stale, write_ids, write_meta)

FAISS_FILE = "faiss.index"
KINDS = ("hnsw", "ivfpq")
INSTALL_HINT = "pip install 'polymodal[faiss]'  (or: pip install faiss-cpu)"


def import_faiss() -> Any:
    """Import faiss or raise a PolymodalError with the install hint."""
    return need("faiss", message=f"this index kind needs FAISS, which is not installed; install "
                                 f"it with: {INSTALL_HINT}; or use kind='exact'")


def faiss_available() -> bool:
    """True when faiss can be imported."""
    try:
        import_faiss()
    except PolymodalError:
        return False
    return True


class FaissIndex:
    """HNSW or IVF-PQ index with string ids; scores are inner products (cosine when
    ``metric="cosine"``: vectors are L2-normalised on add and search).

    HNSW: ``M`` links per node, ``ef_construction`` build beam, ``ef_search`` search beam (raised
    to ``k`` when smaller). IVF-PQ: ``nlist`` inverted lists (default ~4*sqrt(n), from
    ``expected_size`` or the vectors seen at training), ``pq_m`` sub-quantizers of ``nbits`` bits
    (default dim/8), ``nprobe`` lists visited per query, ``refine`` > 0 re-ranks
    ``refine * k`` PQ candidates with the exact vectors (stored too, only when ``refine`` > 0 at
    training; setting it to 0 later searches the PQ codes alone). ``refine=0`` keeps only the
    compact codes (dim/8 bytes a vector by default) at a large recall cost: recall@10 0.52
    vs 0.97 with refine=8 on the 1M benchmark, hence the default 8. IVF-PQ is trained on
    a sample of up to ``train_size`` vectors when first needed (search/save, or once
    ``train_size`` vectors are waiting); vectors added before that are buffered.
    ``ef_search``, ``nprobe`` and ``refine`` may be changed between searches."""

    def __init__(self, dim: int, kind: str = "hnsw", metric: str = "cosine", *, M: int = 32,
                 ef_construction: int = 80, ef_search: int = 64, nlist: int | None = None,
                 pq_m: int | None = None, nbits: int = 8, nprobe: int = 8, refine: int = 8,
                 train_size: int = 100_000, expected_size: int | None = None, seed: int = 0):
        if kind not in KINDS:
            raise UsageError(f"unknown faiss index kind '{kind}'; choose one of {', '.join(KINDS)}")
        self.dim = check_dim(dim)
        self.kind = kind
        self.metric = check_metric(metric)
        self.M, self.ef_construction, self.ef_search = int(M), int(ef_construction), int(ef_search)
        self.nlist = nlist
        self.pq_m = int(pq_m) if pq_m else default_pq_m(self.dim)
        if self.dim % self.pq_m:
            raise UsageError(f"pq_m={self.pq_m} must divide the dim {self.dim}")
        self.nbits, self.nprobe, self.refine = int(nbits), int(nprobe), int(refine)
        self.train_size, self.expected_size, self.seed = int(train_size), expected_size, seed
        if kind == "ivfpq" and self.train_size < max(nlist or 1, 1 << self.nbits):
            raise UsageError(f"train_size={self.train_size} is below nlist={nlist} or "
                             f"2**nbits={1 << self.nbits}; an ivfpq index cannot train on it")
        self._faiss = import_faiss()
        self._ids = IdTable()
        self._pending: list[np.ndarray] = []  # IVF-PQ vectors waiting for training
        self._ivf: Any = None  # the IndexIVFPQ inside (for nprobe)
        self._index: Any = None
        self._keep: Any = None  # python wrappers the faiss index points into
        if kind == "hnsw":
            self._index = self._faiss.IndexHNSWFlat(self.dim, self.M,
                                                    self._faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction = self.ef_construction

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"FaissIndex(kind={self.kind!r}, dim={self.dim}, metric={self.metric!r}, " \
               f"size={len(self)})"

    @property
    def params(self) -> dict[str, Any]:
        if self.kind == "hnsw":
            return {"M": self.M, "ef_construction": self.ef_construction,
                    "ef_search": self.ef_search}
        return {"nlist": self.nlist, "pq_m": self.pq_m, "nbits": self.nbits,
                "nprobe": self.nprobe, "refine": self.refine, "train_size": self.train_size,
                "expected_size": self.expected_size, "seed": self.seed}

    @property
    def ids(self) -> list[str]:
        """The string ids in insertion order (do not modify)."""
        return self._ids.ids

    @property
    def is_trained(self) -> bool:
        return self._index is not None

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        """Append ``vectors`` [n, dim] with their string ``ids`` (unique, not yet present)."""
        arr = as_matrix(vectors, self.dim, "vectors", self.metric)
        ids = self._ids.check_new(ids, len(arr))
        if not len(arr):
            return
        if self._index is None:
            self._pending.append(arr)
            self._ids.extend(ids)
            if sum(map(len, self._pending)) >= self.train_size:
                self._train()
            return
        self._index.add(arr)
        self._ids.extend(ids)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """Approximate top-``k``: ``(scores [q, k] float32 sorted descending, ids as q lists of
        strings)``. A row of ids is shorter than ``k`` (and its missing scores are -inf) only when
        the search visited fewer than ``k`` vectors (IVF-PQ with a small ``nprobe``)."""
        k = check_k(k, len(self))
        q = as_matrix(queries, self.dim, "queries", self.metric)
        self._train()
        index = self._index
        if self.kind == "hnsw":
            index.hnsw.efSearch = max(self.ef_search, k)
        else:
            self._ivf.nprobe = min(self.nprobe, self._ivf.nlist)
            if index is not self._ivf:  # built with refine: re-rank unless refine is now 0
                index.k_factor = float(max(self.refine, 1))
                index = index if self.refine else self._ivf
        scores, labels = index.search(q, k)
        scores = np.where(labels < 0, -np.inf, scores).astype(np.float32)
        return scores, self._ids.lookup(labels)

    def save(self, directory: str | Path) -> Path:
        """Write ``faiss.index``, ``ids.json`` and ``index.json`` (last) into ``directory``."""
        if len(self) == 0:
            raise PolymodalError("cannot save an empty faiss index; add vectors first")
        self._train()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / FAISS_FILE) as tmp:
            self._faiss.write_index(self._index, str(tmp))
        write_ids(directory, self._ids.ids)
        write_meta(directory, self.kind, self.dim, self.metric, self.params, len(self))
        remove_stale(directory, FAISS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "FaissIndex":
        """Read an index written by :meth:`save`."""
        directory = Path(directory)
        meta = read_meta(directory, KINDS, "a faiss kind")
        try:
            index = cls(meta["dim"], meta["kind"], meta["metric"], **meta["params"])
        except (TypeError, ValueError, UsageError) as exc:
            raise PolymodalError(f"{directory / 'index.json'}: bad params ({exc})") from None
        path = directory / FAISS_FILE
        if not path.is_file():
            raise PolymodalError(f"{path}: not found (index directory incomplete)")
        try:
            raw = index._faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PolymodalError(f"{path}: corrupt faiss index ({first})") from None
        index._attach(raw, path)
        if raw.ntotal != meta["count"]:
            raise PolymodalError(f"{path}: holds {raw.ntotal} vectors but index.json says "
                                 f"{meta['count']}")
        index._ids = read_ids(directory, meta["count"])
        return index

    # -- internals ---------------------------------------------------------------------------

    def _attach(self, raw: Any, path: Path) -> None:
        """Adopt a faiss index read from ``path`` after checking it matches kind/dim/metric."""
        faiss = self._faiss  # read_index returns the concrete class, owning its parts
        if raw.d != self.dim or raw.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise PolymodalError(f"{path}: faiss index has dim {raw.d} / metric "
                                 f"{raw.metric_type}, expected dim {self.dim} inner product")
        if self.kind == "hnsw" and isinstance(raw, faiss.IndexHNSWFlat):
            self._index = raw
            return
        inner = faiss.downcast_index(raw.base_index) if isinstance(raw, faiss.IndexRefineFlat) \
            else raw
        if self.kind == "ivfpq" and isinstance(inner, faiss.IndexIVFPQ):
            self._index, self._ivf, self._keep = raw, inner, None
            self.nlist = inner.nlist
            return
        raise PolymodalError(f"{path}: faiss index is a {type(raw).__name__}, which does not "
                             f"match kind {self.kind!r} in index.json")

    def _train(self) -> None:
        """Build and train the IVF-PQ index on the buffered vectors, then add them."""
        if self._index is not None:
            return
        faiss = self._faiss
        data = np.concatenate(self._pending) if self._pending else \
            np.empty((0, self.dim), np.float32)
        n = len(data)
        n_train = min(n, self.train_size)
        nlist = self.nlist or min(default_nlist(max(self.expected_size or 0, n)),
                                  max(1, n_train // 39))
        need = max(nlist, 1 << self.nbits)
        if n_train < need:
            raise PolymodalError(f"an ivfpq index needs at least {need} vectors to train "
                                 f"(nlist={nlist}, nbits={self.nbits}) but has {n_train}; add "
                                 f"more vectors or use kind='exact' or 'hnsw'")
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_m, self.nbits,
                               faiss.METRIC_INNER_PRODUCT)
        ivf.cp.min_points_per_centroid = 1  # small data: no clustering warnings on stderr
        ivf.pq.cp.min_points_per_centroid = 1
        index = faiss.IndexRefineFlat(ivf) if self.refine else ivf
        self._keep = (quantizer, ivf)  # the wrappers do not own what they are built from
        rng = np.random.default_rng(self.seed)
        sample = data if n <= n_train else data[np.sort(rng.choice(n, n_train, replace=False))]
        index.train(sample)
        index.add(data)
        self._index, self._ivf, self.nlist = index, ivf, nlist
        self._pending = []
