"""Choose, build and load an index of any kind."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.index.common import VectorIndex, check_dim, check_metric, read_meta
from polymodal.index.exact import ExactIndex
from polymodal.index.faiss_index import KINDS as FAISS_KINDS
from polymodal.index.faiss_index import FaissIndex, faiss_available, import_faiss
from polymodal.index.lance_index import KIND as LANCE_KIND
from polymodal.index.lance_index import LanceIndex, import_lancedb

KINDS = ("auto", "exact", *FAISS_KINDS, LANCE_KIND)
# kind="auto": exact below this many expected vectors, HNSW from here on.
AUTO_EXACT_MAX = 100_000


def choose_kind(expected_size: int | None) -> str:
    """The kind ``build_index(kind="auto")`` picks: "exact" when ``expected_size`` is unknown or
    below ``AUTO_EXACT_MAX`` (100k) vectors, else "hnsw" (falling back to "exact", with a
    warning, when faiss is not installed)."""
    if expected_size is None or expected_size < AUTO_EXACT_MAX:
        return "exact"
    if not faiss_available():
        warnings.warn(f"{expected_size} vectors would use an HNSW index but faiss is not "
                      f"installed (pip install 'polymodal[faiss]'); using exact search",
                      stacklevel=3)
        return "exact"
    return "hnsw"


def check_kind(kind: str) -> str:
    """``kind`` if it is a known index kind whose engine is installed (checked before a fit,
    not after it): UsageError for an unknown kind, the install hint for a missing engine."""
    if kind not in KINDS:
        raise UsageError(f"unknown index kind '{kind}'; choose one of {', '.join(KINDS)}")
    if kind == LANCE_KIND:
        import_lancedb()
    elif kind in FAISS_KINDS:
        import_faiss()
    return kind


def build_index(dim: int, kind: str = "auto", metric: str = "cosine",
                expected_size: int | None = None, **params: Any) -> VectorIndex:
    """A new empty index. ``kind``: "auto" (see :func:`choose_kind`), "exact", "hnsw" or
    "ivfpq" (FAISS, in memory) or "lancedb" (on disk, IVF-PQ); ``metric``: "cosine" (vectors
    L2-normalised) or "ip"; ``params`` go to the index (``chunk_size`` for exact; ``M``,
    ``ef_construction``, ``ef_search`` for hnsw; ``nlist``, ``pq_m``, ``nbits``, ``nprobe``,
    ``refine``, ``train_size`` for ivfpq; ``path``, ``nlist``, ``pq_m``, ``nprobe``,
    ``refine``, ``ivf_min``, ``write_batch`` for lancedb)."""
    if kind not in KINDS:
        raise UsageError(f"unknown index kind '{kind}'; choose one of {', '.join(KINDS)}")
    check_dim(dim)
    check_metric(metric)
    if expected_size is not None and (isinstance(expected_size, bool) or expected_size < 0):
        raise UsageError(f"expected_size must be >= 0, got {expected_size!r}")
    if kind == "auto":
        kind = choose_kind(expected_size)
    try:
        if kind == "exact":
            return ExactIndex(dim, metric, **params)
        if kind == LANCE_KIND:
            return LanceIndex(dim, metric, **params)
        if kind == "ivfpq":
            params.setdefault("expected_size", expected_size)
        return FaissIndex(dim, kind, metric, **params)
    except TypeError as exc:
        raise UsageError(f"bad parameter for a {kind} index: {exc}") from None


def load_index(directory: str | Path) -> VectorIndex:
    """Load an index of any kind saved with ``index.save(directory)``; PolymodalError naming
    the file when the directory is missing, incomplete or corrupt."""
    meta = read_meta(directory)
    if meta["kind"] == "exact":
        return ExactIndex.load(directory)
    if meta["kind"] in FAISS_KINDS:
        return FaissIndex.load(directory)
    if meta["kind"] == LANCE_KIND:
        return LanceIndex.load(directory)
    raise PolymodalError(f"{Path(directory) / 'index.json'}: unknown index kind "
                         f"{meta['kind']!r}")
