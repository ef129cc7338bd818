"""Vector indexes with string ids: exact (chunked matrix product), FAISS (HNSW, IVF-PQ) and
LanceDB (on disk, IVF-PQ: indexes larger than RAM).

All kinds share one API::

    index = build_index(dim, kind="auto", metric="cosine", expected_size=n)
    index.add(vectors [n, dim], ids)            # several calls allowed
    scores, ids = index.search(queries [q, dim], k)
    # scores: float32 [q, k], descending per row; ids: list of q lists of str
    index.save(directory); index = load_index(directory)

``kind="auto"`` is exact below 100k expected vectors (or when the size is unknown), HNSW above.
"""
from polymodal.index.build import AUTO_EXACT_MAX, KINDS, build_index, choose_kind, load_index
from polymodal.index.common import METRICS, VectorIndex
from polymodal.index.exact import ExactIndex, topk_inner_product
from polymodal.index.faiss_index import FaissIndex, faiss_available
from polymodal.index.lance_index import LanceIndex, lancedb_available

__all__ = ["AUTO_EXACT_MAX", "ExactIndex", "FaissIndex", "KINDS", "LanceIndex", "METRICS",
           "VectorIndex", "build_index", "choose_kind", "faiss_available", "lancedb_available",
           "load_index", "topk_inner_product"]
