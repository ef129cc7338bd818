"""Pieces shared by every index kind: input checks, the string-id table, on-disk metadata.

On-disk layout of a saved index directory (every file written atomically, ``index.json`` last)::

    index.json     {"format": "polymodal-index", "version": 1, "kind", "dim", "metric",
                    "params", "count"}
    ids.json       JSON list of the string ids, in insertion order (position = internal id)
    vectors.npy    float32 [count, dim]            (kind "exact")
    faiss.index    faiss.write_index output        (kinds "hnsw", "ivfpq")
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError, UsageError

METRICS = ("cosine", "ip")
FORMAT = "polymodal-index"
VERSION = 1
META_FILE = "index.json"
IDS_FILE = "ids.json"
DATA_FILES = ("vectors.npy", "faiss.index")
SearchResult = tuple[np.ndarray, list[list[str]]]


@runtime_checkable
class VectorIndex(Protocol):
    """What every index kind offers. ``search`` returns ``(scores, ids)``: ``scores`` is a
    float32 array [q, k] sorted descending per row, ``ids`` a list of q lists of string ids
    aligned with ``scores``."""

    kind: str
    dim: int
    metric: str

    def add(self, vectors: np.ndarray, ids: Sequence[str]) -> None: ...
    def search(self, queries: np.ndarray, k: int) -> SearchResult: ...
    def save(self, directory: str | Path) -> Path: ...
    def __len__(self) -> int: ...
    @property
    def params(self) -> dict[str, Any]: ...


def check_metric(metric: str) -> str:
    """Return ``metric`` if supported, else raise UsageError."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}")
    return metric


def check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise UsageError(f"index dim must be a positive integer, got {dim!r}")
    return int(dim)


def as_matrix(x: Any, dim: int, what: str, metric: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 [n, dim] array (a 1-D vector becomes one row), L2-normalised
    when ``metric == "cosine"``. Raises PolymodalError on a wrong shape, NaN/inf or (cosine) a
    zero vector, naming the row."""
    try:
        arr = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PolymodalError(f"{what} must be a numeric array: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise PolymodalError(f"{what} must be a 2-D array [n, dim], got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise PolymodalError(f"{what} have dim {arr.shape[1]} but the index has dim {dim}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise PolymodalError(f"{what} row {int(np.argmax(bad))} contains NaN or inf")
    if metric == "cosine" and len(arr):
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        zero = norms[:, 0] == 0
        if zero.any():
            raise PolymodalError(f"{what} row {int(np.argmax(zero))} is all zeros; "
                                 f"a zero vector has no cosine similarity")
        arr = arr / norms
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_k(k: Any, size: int) -> int:
    """Validate ``k`` against an index holding ``size`` vectors."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise UsageError(f"k must be an integer, got {k!r}")
    if k <= 0:
        raise UsageError(f"k must be >= 1, got k={k}")
    if size == 0:
        raise PolymodalError("cannot search an empty index; add vectors first")
    if k > size:
        raise UsageError(f"k={k} exceeds index size {size}")
    return int(k)


class IdTable:
    """String ids in insertion order; the position of an id is its internal int64 id."""

    def __init__(self, ids: Sequence[str] = ()):
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.check_new(ids)
        self.extend(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def check_new(self, ids: Sequence[str], n_rows: int | None = None) -> list[str]:
        """Raise PolymodalError unless ``ids`` are strings, unique, not in the table and (when
        given) as many as ``n_rows``."""
        if isinstance(ids, str):
            raise PolymodalError("ids must be a sequence of strings, not a single string")
        ids = list(ids)
        if n_rows is not None and len(ids) != n_rows:
            raise PolymodalError(f"got {n_rows} vectors but {len(ids)} ids")
        seen: set[str] = set()
        for i, id_ in enumerate(ids):
            if not isinstance(id_, str):
                raise PolymodalError(f"ids must be strings; position {i} is "
                                     f"{type(id_).__name__} {id_!r}")
            if id_ in self.pos:
                raise PolymodalError(f"duplicate id {id_!r}: already in the index")
            if id_ in seen:
                raise PolymodalError(f"duplicate id {id_!r} at position {i} of this batch")
            seen.add(id_)
        return ids

    def extend(self, ids: Sequence[str]) -> None:
        start = len(self.ids)
        self.ids.extend(ids)
        self.pos.update((id_, start + i) for i, id_ in enumerate(ids))

    def lookup(self, labels: np.ndarray) -> list[list[str]]:
        """Map an int array [q, k] of positions to string ids; negative labels (an approximate
        index that found fewer than k vectors) end the row early."""
        out = []
        for row in labels.tolist():
            names = []
            for lab in row:
                if lab < 0:
                    break
                names.append(self.ids[lab])
            out.append(names)
        return out


def write_meta(directory: Path, kind: str, dim: int, metric: str, params: dict[str, Any],
               count: int) -> None:
    meta = {"format": FORMAT, "version": VERSION, "kind": kind, "dim": dim, "metric": metric,
            "params": params, "count": count}
    atomic_write_text(directory / META_FILE, json.dumps(meta, indent=2) + "\n")


def remove_stale(directory: Path, keep: str) -> None:
    """After a save, delete the data file another index kind may have left in ``directory``."""
    for name in DATA_FILES:
        if name != keep:
            (directory / name).unlink(missing_ok=True)


def write_ids(directory: Path, ids: list[str]) -> None:
    atomic_write_text(directory / IDS_FILE, json.dumps(ids, ensure_ascii=False))


def read_meta(directory: str | Path, kinds: Sequence[str] | None = None, expected: str = ""
              ) -> dict[str, Any]:
    """Read and validate ``index.json``; PolymodalError naming the file when missing/corrupt,
    or (``kinds`` given) when its kind is not one of ``kinds`` (``expected`` says which, as
    the message's "not …")."""
    directory = Path(directory)
    path = directory / META_FILE
    if not directory.is_dir():
        raise PolymodalError(f"{directory}: index directory not found")
    if not path.is_file():
        raise PolymodalError(f"{path}: not found; is {directory} a saved polymodal index?")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolymodalError(f"{path}: corrupt index metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PolymodalError(f"{path}: not a polymodal index file (format field missing)")
    if meta.get("version") != VERSION:
        raise PolymodalError(f"{path}: unsupported index version {meta.get('version')!r}")
    try:
        check_dim(meta["dim"])
        check_metric(meta["metric"])
        count = meta["count"]
        if not isinstance(meta["kind"], str) or not isinstance(meta.get("params", {}), dict):
            raise TypeError("bad kind or params")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"bad count {count!r}")
    except (KeyError, TypeError, ValueError, PolymodalError) as exc:
        raise PolymodalError(f"{path}: corrupt index metadata ({exc})") from None
    meta.setdefault("params", {})
    if kinds is not None and meta["kind"] not in kinds:
        raise PolymodalError(f"{path}: kind is {meta['kind']!r}, not {expected}; use "
                             f"polymodal.index.load_index")
    return meta


def read_ids(directory: Path, count: int) -> IdTable:
    path = directory / IDS_FILE
    if not path.is_file():
        raise PolymodalError(f"{path}: not found (index directory incomplete)")
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(ids, list):
            raise ValueError("expected a JSON list of strings")
        table = IdTable(ids)
    except (OSError, UnicodeDecodeError, ValueError, PolymodalError) as exc:
        raise PolymodalError(f"{path}: corrupt ids ({exc})") from None
    if len(table) != count:
        raise PolymodalError(f"{path}: has {len(table)} ids but index.json says {count}")
    return table


def default_pq_m(dim: int) -> int:
    """Number of PQ sub-quantizers: about 8 dims each, a divisor of ``dim``."""
    for sub in (8, 4, 16, 2, 12, 6, 10, 32, 3, 5, 7, 1):
        if dim % sub == 0 and dim // sub >= 1:
            return dim // sub
    return dim


def default_nlist(n: int) -> int:
    """IVF list count: ~4*sqrt(n), at most n/39 (faiss wants 39 training points per list)."""
    return max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39, 65536))
