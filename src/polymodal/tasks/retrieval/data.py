"""Paired cross-modal data on top of an encoded feature folder: which vectors pair up, in which
split, and which query/target vectors count as relevant to each other."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polymodal.features.cache.features import FeatureSet
from polymodal.data.manifest import Manifest
from polymodal.core.errors import UsageError
from polymodal.core.splits import assign_splits, check_split_counts, split_cells


@dataclass
class Side:
    """All vectors of one modality: features [M, d] (float32), their manifest row [M]."""

    modality: str
    x: np.ndarray
    rows: np.ndarray
    frames: np.ndarray | None = None  # video + attention pooling: padded frames [M, F, d]
    mask: np.ndarray | None = None  # [M, F] bool, True = a real frame

    def select(self, row_mask: np.ndarray) -> "Side":
        keep = row_mask[self.rows]
        if self.frames is None:
            return Side(self.modality, self.x[keep], self.rows[keep])
        return Side(self.modality, self.x[keep], self.rows[keep], self.frames[keep],
                    self.mask[keep])


def frame_bags(features: FeatureSet, side: Side) -> Side:
    """``side`` (a video modality) with its clips' frame vectors (the feature folder's side
    files) padded to the longest clip, in the order of ``side.rows``. A clip without frame
    vectors gets its clip vector as its one frame."""
    v, r, _ = features.frames(side.modality)
    order = np.argsort(r, kind="stable")
    starts = np.searchsorted(np.asarray(r)[order], np.arange(len(features.ids) + 1))
    counts = np.maximum(starts[side.rows + 1] - starts[side.rows], 1)
    width = int(counts.max()) if len(counts) else 1
    frames = np.zeros((len(side.rows), width, side.x.shape[1]), np.float32)
    mask = np.zeros((len(side.rows), width), bool)
    for i, row in enumerate(side.rows):
        a, b = starts[row], starts[row + 1]
        frames[i, :max(b - a, 1)] = np.asarray(v[order[a:b]], np.float32) if b > a else side.x[i]
        mask[i, :max(b - a, 1)] = True
    return Side(side.modality, side.x, side.rows, frames, mask)


def with_frame_bags(data: "PairedData", features: FeatureSet, video_pool: str) -> "PairedData":
    """``data`` with padded frames on its video side(s) when ``video_pool`` is 'attention'."""
    if video_pool != "attention":
        return data
    for name in ("query", "target"):
        side = getattr(data, name)
        if side.modality == "video":
            setattr(data, name, frame_bags(features, side))
    return data


@dataclass
class PairedData:
    query: Side
    target: Side
    split: np.ndarray  # [N] "train" / "val" / "test"
    groups: np.ndarray  # [N] int: rows with the same group count as relevant to each other
    ids: list[str]
    paired: np.ndarray | None = None  # [N] bool: the row has both modalities

    def side_split(self, side: Side, name: str) -> Side:
        """The vectors of one split, from rows that have both modalities (a row with only one
        side has no answer to be scored against under 'row' relevance)."""
        keep = self.split == name
        return side.select(keep if self.paired is None else keep & self.paired)

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
               relevance: str = "row", splits: dict[str, str] | None = None) -> PairedData:
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
    usable = np.zeros(len(recs), bool)  # rows with both modalities: the ones that can pair
    usable[np.intersect1d(sides[0].rows, sides[1].rows)] = True
    split = assign_splits(split_cells(recs, splits), features.ids, usable)
    if relevance == "row":
        groups = np.arange(len(recs))
    else:
        vals = relevance_values(manifest, relevance)
        codes: dict = {}
        groups = np.array([codes.setdefault(("v", v) if v is not None else ("row", i), len(codes))
                           for i, v in enumerate(vals)])
    return PairedData(sides[0], sides[1], split, groups, features.ids, usable)


def check_pairs(manifest: Manifest, query: str, target: str, relevance: str = "row") -> None:
    """Everything about the manifest that can fail, checked before any encoding: both
    modalities have a column, the relevance column exists, and the shared split policy leaves
    at least 2 training pairs and 1 test pair among rows that have both cells."""
    if query == target:
        raise UsageError(f"query and target modality are both '{query}'")
    for m in (query, target):
        if m not in manifest.modalities:
            raise UsageError(f"{manifest.path}: no '{m}' column (it has "
                             f"{', '.join(manifest.modalities) or 'no modality column'})")
    if relevance != "row":
        relevance_values(manifest, relevance)
    recs = manifest.records
    both = np.array([r.get(query) is not None and r.get(target) is not None for r in recs], bool)
    check_split_counts(manifest.path, [r.split for r in recs], manifest.ids, both,
                       f"both {query} and {target}", {"train": 2, "test": 1})


def relevance_values(manifest: Manifest, relevance: str) -> list:
    """Each record's value of the relevance column (``label`` or an extra column); a one-line
    error when the column is absent or empty."""
    vals = [r.label if relevance == "label" else r.extra.get(relevance) for r in manifest.records]
    if all(v is None for v in vals):
        raise UsageError(f"--relevance {relevance}: {manifest.path} has no such column (or it "
                         "is empty); use 'row', 'label' or an extra column")
    return vals
