"""Test data for task tests: an encoded feature folder (``polymodal encode --out`` layout) filled
with random vectors, for runs that must be fitted in seconds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polymodal.data.manifest import read_manifest


def write_features(folder: Path, manifest: Path, dims: dict[str, int],
                   names: dict[str, str]) -> Path:
    """A feature folder in the `polymodal encode --out` layout with random vectors."""
    rng = np.random.default_rng(0)
    recs = read_manifest(manifest).records
    folder.mkdir(parents=True)
    mods = {}
    for m, d in dims.items():
        rows = np.repeat(np.arange(len(recs)), [len(r.text) if m == "text" else 1 for r in recs])
        np.save(folder / f"{m}.npy", rng.standard_normal((len(rows), d)).astype(np.float16))
        np.save(folder / f"{m}_rows.npy", rows.astype(np.int64))
        mods[m] = {"encoder": names[m], "name": names[m], "dim": d,
                   "count": len(rows)}
    (folder / "ids.json").write_text(json.dumps([r.id for r in recs]))
    (folder / "features.json").write_text(json.dumps({"manifest": str(manifest),
                                                      "n_rows": len(recs), "modalities": mods}))
    return folder
