"""The files of an encode's output folder (see `FeatureSet` for the layout).

Everything is written into the staging folder of `feature_folder`, which replaces ``out`` only
once complete: ``<modality>.npy`` and ``<modality>_rows.npy`` per modality, then
``skipped.jsonl``, ``notes.jsonl``, ``ids.json`` and last ``features.json``, which lists the
others with their sizes (a folder whose files do not match it is refused as half-written).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from polymodal.core.atomic import atomic_path, atomic_write_text
from polymodal.core.errors import PolymodalError, Problem
from polymodal.data.manifest import Manifest
from polymodal.features.cache.features import file_sizes
from polymodal.features.cache.store import FeatureStore

WRITE_ROWS = 16384  # vectors copied from the cache into the output matrix at a time


def write_matrix(out: Path, modality: str, good: Sequence[tuple[int, str]],
                 store: FeatureStore, dim: int) -> None:
    """``out/<modality>.npy`` (float16, one row per ``(row index, key)`` of ``good``, copied
    from the cache and verified again as it is copied) and ``out/<modality>_rows.npy`` (the
    row indices)."""
    with atomic_path(out / f"{modality}.npy") as tmp:
        mat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(good), dim))
        for s in range(0, len(good), WRITE_ROWS):
            part = good[s:s + WRITE_ROWS]
            vec, ok = store.fetch([k for _, k in part], dim)  # verified again as it is copied
            if not ok.all():
                raise PolymodalError(f"{store.root}: {int((~ok).sum())} cache entries changed "
                                     "while the output was written (another process or a "
                                     "failing disk); re-run `polymodal encode`")
            mat[s:s + len(part)] = vec
        mat.flush()
        del mat
    with atomic_path(out / f"{modality}_rows.npy") as tmp:
        np.save(tmp, np.array([i for i, _ in good], dtype=np.int64))


def write_folder(stage: Path, manifest: Manifest, modalities: dict[str, dict],
                 skipped: Sequence[Problem], notes: Sequence[Problem]) -> None:
    """The lists and the metadata of a staged folder whose matrices are written;
    ``features.json`` last (it lists the others)."""
    atomic_write_text(stage / "skipped.jsonl",
                      "".join(json.dumps(p.to_dict()) + "\n" for p in skipped))
    atomic_write_text(stage / "notes.jsonl",
                      "".join(json.dumps(p.to_dict()) + "\n" for p in notes))
    atomic_write_text(stage / "ids.json", json.dumps(manifest.ids))
    atomic_write_text(stage / "features.json", json.dumps({  # last: lists the others
        "manifest": str(manifest.path), "n_rows": len(manifest), "modalities": modalities,
        "columns": manifest.columns, "files": file_sizes(stage)}, indent=1))
