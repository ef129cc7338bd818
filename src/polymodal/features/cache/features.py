"""An encoded dataset on disk: per-modality matrices aligned with manifest ids.

Layout of an ``encode --out DIR`` folder::

    features.json        {"manifest":…, "n_rows":…, "modalities": {mod: {"encoder":…, "dim":…, "count":…}}}
    ids.json             manifest ids, in manifest order (row index i <-> ids[i])
    <mod>.npy            float16 [M, dim] vectors (memory-mapped on read)
    <mod>_rows.npy       int64 [M]: the row index each vector belongs to (several captions of one
                         row give several vectors; a missing modality gives none)
    skipped.jsonl        rows/cells that could not be encoded: file, row, column, reason
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polymodal.core.errors import PolymodalError


@dataclass
class FeatureSet:
    """Read access to an encoded dataset folder."""

    root: Path
    ids: list[str]
    meta: dict
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, root: str | Path) -> "FeatureSet":
        root = Path(root)
        meta_path = root / "features.json"
        if not meta_path.is_file():
            raise PolymodalError(f"{root}: not an encoded feature folder (no features.json); "
                                 "run `polymodal encode` first")
        try:
            meta = json.loads(meta_path.read_text())
            ids = json.loads((root / "ids.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PolymodalError(f"{root}: corrupt feature folder ({e})") from None
        return cls(root=root, ids=ids, meta=meta)

    @property
    def modalities(self) -> list[str]:
        return list(self.meta["modalities"])

    def dim(self, modality: str) -> int:
        return int(self.meta["modalities"][modality]["dim"])

    def encoder_id(self, modality: str) -> str:
        return self.meta["modalities"][modality]["encoder"]

    def vectors(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(vectors [M, dim] memory-mapped float16, row index [M])."""
        if modality not in self.meta["modalities"]:
            raise PolymodalError(f"{self.root}: no '{modality}' features; have "
                                 f"{', '.join(self.modalities) or 'none'}")
        if modality not in self._cache:
            v = np.load(self.root / f"{modality}.npy", mmap_mode="r")
            r = np.load(self.root / f"{modality}_rows.npy")
            self._cache[modality] = (v, r)
        return self._cache[modality]

    def per_row(self, modality: str, rows: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """One float32 vector per manifest row (mean over several vectors of a row) and a bool
        mask of rows that have this modality. ``rows`` selects row indices (default: all)."""
        v, r = self.vectors(modality)
        n = len(self.ids)
        out = np.zeros((n, v.shape[1]), np.float32)
        counts = np.zeros(n, np.int64)
        np.add.at(out, r, np.asarray(v, np.float32))
        np.add.at(counts, r, 1)
        present = counts > 0
        out[present] /= counts[present, None]
        if rows is not None:
            return out[rows], present[rows]
        return out, present
