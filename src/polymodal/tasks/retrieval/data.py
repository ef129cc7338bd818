"""Paired cross-modal data on top of an encoded feature folder: which vectors pair up, in which
split, and which query/target vectors count as relevant to each other."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from polymodal.features.cache.features import FeatureSet
from polymodal.data.manifest import Manifest
from polymodal.core.errors import UsageError


def hash_split(ids: list[str], val: float = 0.1, test: float = 0.1) -> np.ndarray:
    """Deterministic train/val/test split from a hash of each id (for manifests without one)."""
    u = np.array([int(hashlib.md5(i.encode()).hexdigest()[:8], 16) / 2**32 for i in ids])
    return np.where(u < test, "test", np.where(u < test + val, "val", "train"))


@dataclass
class Side:
    """All vectors of one modality: features [M, d] (float32), their manifest row [M]."""

    modality: str
    x: np.ndarray
    rows: np.ndarray

    def select(self, row_mask: np.ndarray) -> "Side":
        keep = row_mask[self.rows]
        return Side(self.modality, self.x[keep], self.rows[keep])


@dataclass
class PairedData:
    query: Side
    target: Side
    split: np.ndarray  # [N] "train" / "val" / "test"
    groups: np.ndarray  # [N] int: rows with the same group count as relevant to each other
    ids: list[str]

    def side_split(self, side: Side, name: str) -> Side:
        return side.select(self.split == name)

    def pairs(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (query vector i, target vector j) of the same row within a split."""
        q = np.flatnonzero(self.split[self.query.rows] == name)
        t = np.flatnonzero(self.split[self.target.rows] == name)
        by_row: dict[int, list[int]] = {}
        for j in t:
            by_row.setdefault(int(self.target.rows[j]), []).append(int(j))
        qi, tj = [], []
        for i in q:
            for j in by_row.get(int(self.query.rows[i]), []):
                qi.append(int(i))
                tj.append(j)
        return np.array(qi, dtype=np.int64), np.array(tj, dtype=np.int64)

    def relevance(self, q: Side, t: Side) -> np.ndarray:
        """Bool [Q, T]: target j is relevant to query i (same group)."""
        return self.groups[q.rows][:, None] == self.groups[t.rows][None, :]


def load_pairs(features: FeatureSet, manifest: Manifest, query: str, target: str,
               relevance: str = "row") -> PairedData:
    """Vectors of two modalities with splits and relevance groups.

    ``relevance``: ``"row"`` (a query's own row is its answer) or a manifest column (``label``,
    ``caption_group``, …): rows sharing its value are all correct answers."""
    if query == target:
        raise UsageError(f"query and target modality are both '{query}'")
    for m in (query, target):
        if m not in features.modalities:
            raise UsageError(f"no '{m}' features in this dataset (it has "
                             f"{', '.join(features.modalities)})")
    sides = []
    for m in (query, target):
        v, r = features.vectors(m)
        sides.append(Side(m, np.asarray(v, dtype=np.float32), np.asarray(r)))
    recs = manifest.records
    if [r.id for r in recs] != features.ids:
        raise UsageError("the feature folder does not match the manifest (ids differ); re-encode")
    splits = [r.split for r in recs]
    split = np.array(splits) if all(splits) else hash_split(features.ids)
    if relevance == "row":
        groups = np.arange(len(recs))
    else:
        vals = [r.label if relevance == "label" else r.extra.get(relevance) for r in recs]
        if all(v is None for v in vals):
            raise UsageError(f"--relevance {relevance}: the manifest has no such column (or it "
                             "is empty); use 'row', 'label' or an extra column")
        codes: dict = {}
        groups = np.array([codes.setdefault(("v", v) if v is not None else ("row", i), len(codes))
                           for i, v in enumerate(vals)])
    return PairedData(sides[0], sides[1], split, groups, features.ids)
