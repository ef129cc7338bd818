"""The one split policy of every task (retrieval, classification, captioning, generation).

1. A split cell the manifest gives (``train`` / ``val`` / ``test``) is kept, row by row.
2. An empty cell is filled by a hash of the row id (``test`` 10 %, ``val`` 10 %, else ``train``);
   the hash is salted with ``seed`` (0 by default) and never depends on the training seed, so
   every method and seed of a comparison sees the same split.
3. When no usable row is in ``val``, about 10 % of the usable ``train`` rows (chosen by another
   hash of their id) become ``val``. Validation is carved from train only: a ``test`` row never
   moves, so a row the user marked ``test`` is never trained on.

The result is written to ``RUN/splits.csv`` (``id,split``) and every metric is computed on it.
"""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError, UsageError

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1


def unit_hash(ids: Sequence[str], salt: str = "") -> np.ndarray:
    """A number in [0, 1) per id, from md5 (stable across runs, machines and Python versions)."""
    pre = f"{salt}:" if salt else ""
    return np.array([int(hashlib.md5(f"{pre}{i}".encode()).hexdigest()[:8], 16) / 2**32
                     for i in ids], dtype=np.float64)


def hash_split(ids: Sequence[str], val: float = VAL_FRACTION, test: float = TEST_FRACTION,
               seed: int = 0) -> np.ndarray:
    """train / val / test for each id from a hash of the id (``seed`` salts it; 0 = unsalted)."""
    u = unit_hash(ids, f"split{seed}" if seed else "")
    return np.where(u < test, "test", np.where(u < test + val, "val", "train"))


def assign_splits(given: Sequence[str | None], ids: Sequence[str],
                  usable: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """The final split of every row (module doc). ``given``: the manifest's split cells (None or
    "" = empty); ``usable``: bool per row, the rows the task can learn from (labelled, or with
    both modalities): only those count when looking for a validation row."""
    ids = [str(i) for i in ids]
    s = np.array([x or "" for x in given], dtype=object)
    if len(s) != len(ids):
        raise ValueError("assign_splits: one split cell per id")
    bad = sorted({x for x in s if x and x not in SPLITS})
    if bad:
        raise PolymodalError(f"unknown split value '{bad[0]}'; use train, val or test")
    empty = s == ""
    if empty.any():
        s[empty] = hash_split([i for i, e in zip(ids, empty) if e], seed=seed)
    use = np.ones(len(ids), bool) if usable is None else np.asarray(usable, bool)
    if not ((s == "val") & use).any():
        train = np.flatnonzero((s == "train") & use)
        if len(train) >= 2:
            u = unit_hash([ids[i] for i in train], "val")
            pick = train[u < VAL_FRACTION]
            s[pick if len(pick) else train[[int(np.argmin(u))]]] = "val"
    return s.astype(str)


def check_split_counts(path: object, given: Sequence[str | None], ids: Sequence[str],
                       usable: np.ndarray, what: str, need: dict[str, int]) -> None:
    """Before any encoding: the split policy must leave ``need[split]`` usable rows in each
    split (``what`` says what a usable row has, for the message)."""
    split = assign_splits(given, ids, usable)
    for name, n_need in need.items():
        n = int(((split == name) & np.asarray(usable, bool)).sum())
        if n < n_need:
            raise UsageError(f"{path}: {n} {name} rows with {what} (need {n_need}; see the "
                             "split column)")


def write_splits(path: str | Path, ids: Sequence[str], split: Sequence[str]) -> Path:
    """``id,split`` for every row, written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "split"])
    w.writerows(zip(ids, split))
    atomic_write_text(Path(path), buf.getvalue())
    return Path(path)


def run_splits(run: str | Path) -> dict[str, str] | None:
    """id -> split of a run (``RUN/splits.csv``), None for a run written before it existed."""
    path = Path(run) / "splits.csv"
    return read_splits(path) if path.is_file() else None


def split_cells(records: Sequence, splits: dict[str, str] | None) -> list[str | None]:
    """The split cell of each record: the run's recorded split when given (so evaluation uses
    exactly the fit's split), else the manifest's cell."""
    if not splits:
        return [r.split for r in records]
    return [splits.get(r.id, r.split) for r in records]


def read_splits(path: str | Path) -> dict[str, str]:
    """id -> split from a ``splits.csv``."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {r["id"]: r["split"] for r in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error) as e:
        raise PolymodalError(f"{path}: cannot read splits ({e})") from None


def split_grouping(columns: dict[str, Sequence], split: Sequence[str]) -> str | None:
    """The column the train / val split is grouped by, if one is (FSDD: ``speaker``, val and
    test each a held-out speaker): ``columns`` maps a name to one value per row. A grouping
    column has each of its values in one split only, at least 2 values among the train rows and
    1 among the val rows, and fewer distinct values than half the train + val rows (a grouping,
    not a key); of several, the coarsest (fewest values). None when no column is one.
    Cross-validation on train + val must keep such groups whole, or its folds mix what the
    split keeps apart (`polymodal.tasks.retrieval.closed_form.split_groups`)."""
    split = np.asarray(split, dtype=object)
    keep = np.isin(split, ["train", "val"])
    best: tuple[int, str] | None = None
    for name, values in columns.items():
        v = np.asarray([repr(x) for x in values], dtype=object)[keep]
        s = split[keep]
        if len(v) == 0 or any(x == "None" for x in v):
            continue
        pairs = set(zip(v.tolist(), s.tolist()))
        n = len({x for x, _ in pairs})
        if n != len(pairs) or n * 2 >= len(v):
            continue  # a value in both splits, or (nearly) one value per row
        if len({x for x, sp in pairs if sp == "train"}) >= 2 and any(sp == "val" for _, sp in
                                                                      pairs):
            best = min(best or (n, name), (n, name))
    return best[1] if best else None
