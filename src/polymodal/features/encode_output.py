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


def write_frames(stage: Path, manifest: Manifest, modality: str, encoder, hasher) -> dict:
    """The per-frame side files of a video modality whose clip vectors are in ``stage``:
    ``<modality>_frames.npy`` (float16 [F, dim]), ``<modality>_frames_rows.npy`` (int64 [F],
    row index) and ``<modality>_frames_times.npy`` (float32 [F], seconds), read from the frame
    cache (a clip whose frames left the cache is encoded again). Listed with their sizes in
    features.json like every file, so a half-written folder is refused. -> metadata."""
    rows = np.load(stage / f"{modality}_rows.npy")
    vecs, idx, times = [], [], []
    for i in rows.tolist():
        path = Path(manifest.records[i].get(modality))
        got = encoder.frame_vectors(hasher.digest(path))
        if got is None:  # the frame cache lost them (gc, deleted): encode the clip again
            encoder.encode_prepared([encoder.prepare(path)])
            got = encoder.frame_vectors(hasher.digest(path))
            if got is None:
                raise PolymodalError(f"{path}: frame vectors missing from the cache right "
                                     "after they were written; try again")
        t, v = got
        vecs.append(v.astype(np.float16))
        idx.append(np.full(len(t), i, np.int64))
        times.append(t.astype(np.float32))
    dim = int(encoder.dim)
    cat = (lambda xs, d, shape: np.concatenate(xs) if xs else np.zeros(shape, d))
    with atomic_path(stage / f"{modality}_frames.npy") as tmp:
        np.save(tmp, cat(vecs, np.float16, (0, dim)))
    with atomic_path(stage / f"{modality}_frames_rows.npy") as tmp:
        np.save(tmp, cat(idx, np.int64, (0,)))
    with atomic_path(stage / f"{modality}_frames_times.npy") as tmp:
        np.save(tmp, cat(times, np.float32, (0,)))
    return {"frames": int(sum(len(t) for t in times)), "sampling": encoder.sampling,
            "pooling": "mean"}
