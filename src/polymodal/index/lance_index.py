"""An on-disk vector index on LanceDB (embedded; IVF-PQ built in): the vectors live in files,
not in RAM, so an index can outgrow memory.

LanceDB is optional (``pip install 'polymodal[lancedb]'``) and imported only when used. The
vectors, their string ids and their insertion positions are rows of one Lance table; ``add``
streams them there in batches of ``write_batch`` rows (only one batch is held in memory), so
an index is built from a memmapped array or a feature folder chunk by chunk. A saved index
directory holds ``index.json`` (written last) and ``lance/`` (the LanceDB database, table
``vectors``: ``pos`` int64, ``id`` string, ``vector`` fixed_size_list<float32>[dim]).

Sizes, chosen from the number of vectors N and the dim when the IVF-PQ index is built (at
``save`` or the first search): below ``ivf_min`` vectors (10,000) there is no ANN index and
LanceDB scans the table flat (exact); from there ``nlist`` = N / 4096 IVF partitions (at
least 16, at most 65,536; LanceDB trains k-means on ``sample_rate`` vectors a partition:
256, fewer above 1024 partitions so the training sample stays under 2**18 vectors), ``pq_m`` = dim / 8 sub-vectors of
``nbits`` = 8 bits (dim / 8 bytes of code a vector), k-means of ``max_iterations`` = 10
(50 took 65 s instead of 13 s for 200k x 256 on 2 cores; recall@10 0.900 vs 0.911),
``nprobe`` = max(32, nlist / 8) partitions visited per query (at 200k x 256, nlist 48:
recall@10 0.91 with nprobe 16, 0.976 with 32) and ``refine`` = 16: the 16 * k best PQ
candidates are re-ranked with the exact vectors read from the table (``refine=0``: PQ
distances only). At 2M x 256 (benchmarks/lancedb_scale.py, nlist 488) refine decides the
recall: 0.908 / 0.912 with refine 8 at nprobe 61 / 122, 0.977 with refine 16 at nprobe 122.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.lazy import need
from polymodal.index.common import (IDS_FILE, IdTable, SearchResult, as_matrix, check_dim,
                                    check_k, check_metric, default_pq_m, read_meta,
                                    remove_stale, write_meta)

KIND = "lancedb"
LANCE_DIR = "lance"
TABLE = "vectors"
INSTALL_HINT = "pip install 'polymodal[lancedb]'  (or: pip install lancedb)"
IVF_MIN = 10_000  # fewer vectors: no ANN index, a flat (exact) scan
WRITE_BATCH = 65_536  # rows buffered before they are written to the table
QUERY_BATCH = 256  # query vectors sent to LanceDB in one search call


def import_lancedb() -> Any:
    """Import lancedb (its Rust logging kept to errors) or raise a PolymodalError with the hint."""
    os.environ.setdefault("LANCEDB_LOG", "error")
    return need("lancedb", message=f"index kind 'lancedb' needs LanceDB, which is not installed; "
                                   f"install it with: {INSTALL_HINT}; or use kind='exact'")


def lancedb_available() -> bool:
    try:
        import_lancedb()
    except PolymodalError:
        return False
    return True


def default_nlist(n: int) -> int:
    """IVF partitions for ``n`` vectors: about 4096 vectors a partition, 16 to 65,536."""
    return int(min(65_536, max(16, n // 4096)))


def default_sample_rate(nlist: int) -> int:
    """k-means training vectors per IVF partition: 256, fewer (at least 16) once the sample
    would pass 2**18 vectors (256 MiB at dim 256), so the build's memory stays bounded."""
    return int(max(16, min(256, (1 << 18) // max(nlist, 1))))


def _hashes(ids: Sequence[str]) -> np.ndarray:
    """64-bit blake2b of each id: the duplicate check keeps these, not the strings."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8)
                                       .digest(), "little", signed=True) for s in ids),
                       np.int64, len(ids))


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class LanceIndex:
    """Vectors in a LanceDB table with an IVF-PQ index; scores are inner products (cosine when
    ``metric="cosine"``: vectors L2-normalised on add and search). ``path``: the LanceDB
    database folder to build in (default: a temporary folder, moved into the index directory
    by ``save``). ``nprobe`` and ``refine`` may be changed between searches; the other sizes
    (see the module docstring) are fixed when the ANN index is built. Vectors added after
    that are searched exactly until the next ``save`` rebuilds the index."""

    kind = KIND

    def __init__(self, dim: int, metric: str = "cosine", *, path: str | Path | None = None,
                 nlist: int | None = None, pq_m: int | None = None, nbits: int = 8,
                 nprobe: int | None = None, refine: int = 16, ivf_min: int = IVF_MIN,
                 sample_rate: int | None = None, max_iterations: int = 10,
                 write_batch: int = WRITE_BATCH, expected_size: int | None = None):
        self.dim = check_dim(dim)
        self.metric = check_metric(metric)
        self.nlist = int(nlist) if nlist else None
        self.pq_m = int(pq_m) if pq_m else default_pq_m(self.dim)
        if self.dim % self.pq_m:
            raise UsageError(f"pq_m={self.pq_m} must divide the dim {self.dim}")
        self.nbits, self.refine, self.ivf_min = int(nbits), int(refine), int(ivf_min)
        self.nprobe = int(nprobe) if nprobe else None
        self.sample_rate = int(sample_rate) if sample_rate else None
        self.max_iterations = int(max_iterations)
        if write_batch < 1 or self.refine < 0:
            raise UsageError("write_batch must be >= 1 and refine >= 0")
        self.write_batch, self.expected_size = int(write_batch), expected_size
        self._lancedb = import_lancedb()
        self._temp = path is None
        self._path = Path(tempfile.mkdtemp(prefix="polymodal-lance-") if path is None else path)
        self._db = self._lancedb.connect(str(self._path))
        self._table: Any = None
        self._count = 0  # rows written to the table
        self._buf: list[np.ndarray] = []
        self._buf_ids: list[str] = []
        self._known: np.ndarray | None = np.empty(0, np.int64)  # sorted id hashes (None: unread)
        self._indexed = 0  # rows covered by the ANN index (0: none)
        # unit vectors: L2 ranks like the inner product and gives LanceDB's k-means balanced
        # partitions (dot k-means did not: recall@10 0.744 at 2M with nprobe 61 of 488)
        self._distance = "l2" if self.metric == "cosine" else "dot"

    def __len__(self) -> int:
        return self._count + len(self._buf_ids)

    def __repr__(self) -> str:
        return f"LanceIndex(dim={self.dim}, metric={self.metric!r}, size={len(self)}, " \
               f"path={str(self._path)!r})"

    def __del__(self) -> None:  # a temporary build folder never saved
        if getattr(self, "_temp", False):
            shutil.rmtree(self._path, ignore_errors=True)

    @property
    def params(self) -> dict[str, Any]:
        return {"nlist": self.nlist, "pq_m": self.pq_m, "nbits": self.nbits,
                "nprobe": self.nprobe, "refine": self.refine, "ivf_min": self.ivf_min,
                "sample_rate": self.sample_rate, "max_iterations": self.max_iterations,
                "write_batch": self.write_batch}

    @property
    def probes(self) -> int:
        """IVF partitions a search visits: ``nprobe``, by default max(32, nlist / 8)."""
        nlist = self.nlist or default_nlist(len(self))
        return min(self.nprobe or max(32, nlist // 8), nlist)

    @property
    def has_ann_index(self) -> bool:
        """True when searches use the IVF-PQ index (False: a flat exact scan)."""
        return self._indexed > 0

    # ------------------------------------------------------------ writing
    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None:
        """Append ``vectors`` [n, dim] with their string ``ids`` (unique, not yet present);
        written to the table in batches of ``write_batch`` rows."""
        arr = as_matrix(vectors, self.dim, "vectors", self.metric)
        ids = IdTable().check_new(ids, len(arr))  # strings, unique within the batch
        if not len(arr):
            return
        self._check_known(ids)
        self._buf.append(arr)
        self._buf_ids.extend(ids)
        if len(self._buf_ids) >= self.write_batch:
            self._flush()

    def _check_known(self, ids: list[str]) -> None:
        """Raise on an id already in the index (hash hits are confirmed on the strings)."""
        if self._known is None:
            self._known = np.sort(np.concatenate([_hashes(b.column("id").to_pylist()) for b in
                                                  self._scan(["id"])] or [np.empty(0, np.int64)]))
        h = _hashes(ids)
        if len(self._known):
            at = np.minimum(np.searchsorted(self._known, h), len(self._known) - 1)
            for i in np.flatnonzero(self._known[at] == h):
                if self._contains(ids[i]):
                    raise PolymodalError(f"duplicate id {ids[i]!r}: already in the index")
        self._known = np.sort(np.concatenate([self._known, h]), kind="stable")

    def _contains(self, id_: str) -> bool:
        if id_ in self._buf_ids:
            return True
        return self._table is not None and self._table.count_rows(f"id = {_sql_str(id_)}") > 0

    def _scan(self, columns: list[str]) -> Iterator[Any]:
        """The table's ``columns`` in record batches (streamed, never the whole table)."""
        if self._table is None:
            return iter(())
        return iter(self._table.search().select(columns).limit(None).to_batches(self.write_batch))

    def _flush(self) -> None:
        """Write the buffered rows to the table."""
        if not self._buf_ids:
            return
        import pyarrow as pa

        arr = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
        n = len(arr)
        data = pa.table({
            "pos": pa.array(np.arange(self._count, self._count + n, dtype=np.int64)),
            "id": pa.array(self._buf_ids, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), self.dim)})
        if self._table is None:
            self._table = self._db.create_table(TABLE, data=data, mode="overwrite")
        else:
            self._table.add(data)
        self._count += n
        self._buf, self._buf_ids = [], []

    def build(self) -> None:
        """Write what is buffered and (re)build the IVF-PQ index when the table has at least
        ``ivf_min`` rows not yet covered by it (called by ``save`` and the first search)."""
        self._flush()
        n = self._count
        if n < max(self.ivf_min, 1 << self.nbits) or self._indexed == n:
            return
        from lancedb.index import IvfPq

        nlist = self.nlist or default_nlist(n)
        self._table.create_index("vector", replace=True, config=IvfPq(
            distance_type=self._distance, num_partitions=nlist, num_sub_vectors=self.pq_m,
            num_bits=self.nbits, sample_rate=self.sample_rate or default_sample_rate(nlist),
            max_iterations=self.max_iterations))
        self.nlist, self._indexed = nlist, n

    def save(self, directory: str | Path) -> Path:
        """Build the index if needed, put the LanceDB folder at ``directory/lance`` (moved
        from a temporary build folder, copied from another saved index) and write
        ``index.json`` last."""
        if len(self) == 0:
            raise PolymodalError("cannot save an empty lancedb index; add vectors first")
        self.build()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / LANCE_DIR
        if self._path.resolve() != target.resolve():
            tmp = Path(tempfile.mkdtemp(prefix=".lance.", dir=directory))
            tmp.rmdir()
            (shutil.move if self._temp else shutil.copytree)(str(self._path), str(tmp))
            old = directory / f".lance.old.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
            self._temp, self._path = False, target
            self._db = self._lancedb.connect(str(target))
            self._table = self._db.open_table(TABLE)
        (directory / IDS_FILE).unlink(missing_ok=True)  # another kind's, stale here
        write_meta(directory, self.kind, self.dim, self.metric, self.params, len(self))
        remove_stale(directory, LANCE_DIR)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "LanceIndex":
        """Open an index written by :meth:`save` (nothing is read into memory but metadata)."""
        directory = Path(directory)
        meta = read_meta(directory, (KIND,), "'lancedb'")
        path = directory / LANCE_DIR
        if not (path / f"{TABLE}.lance").is_dir():
            raise PolymodalError(f"{path / (TABLE + '.lance')}: not found (index directory "
                                 f"incomplete)")
        try:
            index = cls(meta["dim"], meta["metric"], path=path, **meta["params"])
        except (TypeError, ValueError, UsageError) as exc:
            raise PolymodalError(f"{directory / 'index.json'}: bad params ({exc})") from None
        try:
            index._table = index._db.open_table(TABLE)
            index._count = index._table.count_rows()
            indexed = [i for i in index._table.list_indices() if "vector" in i.columns]
        except Exception as exc:  # lance raises several types for a damaged table
            raise PolymodalError(f"{path}: corrupt lancedb table ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:200]})") from None
        if index._count != meta["count"]:
            raise PolymodalError(f"{path}: holds {index._count} vectors but index.json says "
                                 f"{meta['count']}")
        index._indexed = index._count if indexed else 0
        index._known = None  # read from the table when something is added
        return index

    # ------------------------------------------------------------ searching
    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """Top-``k``: ``(scores [q, k] float32 sorted descending, ids as q lists of strings)``;
        approximate when the IVF-PQ index is used (a row is shorter than ``k``, its missing
        scores -inf, only when the partitions visited hold fewer than ``k`` vectors)."""
        k = check_k(k, len(self))
        q = as_matrix(queries, self.dim, "queries", self.metric)
        if self._indexed:  # rows added since the index was built: LanceDB scans them flat
            self._flush()
        else:
            self.build()
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids: list[list[str]] = []
        for q0 in range(0, len(q), QUERY_BATCH):
            block = q[q0: q0 + QUERY_BATCH]
            s, names = self._search_block(block, k)
            for j, (row_s, row_n) in enumerate(zip(s, names)):
                scores[q0 + j, : len(row_s)] = row_s
                ids.append(row_n)
        return scores, ids

    def _search_block(self, q: np.ndarray, k: int) -> tuple[list[np.ndarray], list[list[str]]]:
        query = self._table.search(list(q) if len(q) > 1 else q[0], vector_column_name="vector")
        query = query.distance_type(self._distance).limit(k).select(["id", "pos", "_distance"])
        if self._indexed:
            query = query.nprobes(self.probes)
            if self.refine:
                query = query.refine_factor(self.refine)
        res = query.to_arrow()
        qi = res["query_index"].to_numpy() if "query_index" in res.column_names else \
            np.zeros(res.num_rows, np.int64)
        dist = res["_distance"].to_numpy().astype(np.float64)
        # lance: l2 is the squared distance, 2 - 2 a.b for unit vectors; dot is 1 - a.b
        score = 1.0 - dist / 2 if self._distance == "l2" else 1.0 - dist
        pos = res["pos"].to_numpy()
        names = res["id"].to_pylist()
        order = np.lexsort((pos, -score, qi))  # per query: score descending, then insertion
        out_s: list[list[float]] = [[] for _ in range(len(q))]
        out_n: list[list[str]] = [[] for _ in range(len(q))]
        for i in order.tolist():
            if len(out_n[qi[i]]) < k:
                out_s[qi[i]].append(score[i])
                out_n[qi[i]].append(names[i])
        return [np.asarray(s, np.float32) for s in out_s], out_n

