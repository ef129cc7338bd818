"""A small REAL retrieval run shared by the serve and report tests.

64 OpenClipart drawings of the bundled sample (40 train / 8 val / 16 test), encoded with the
real pretrained encoders (minilm, efficientnet-lite0) and aligned with InfoNCE for a few epochs.
The manifest is written with absolute image paths in its own temp folder, the way a dataset
built with "reference in place" points outside its folder. The run is fitted once per test
session, in pytest's base temp folder, whichever test asks first.
"""
from __future__ import annotations

import json
from pathlib import Path

N_ROWS = {"train": 40, "val": 8, "test": 16}


def small_manifest(folder: Path) -> Path:
    """Write a manifest of the first rows of each split of the bundled OpenClipart sample."""
    from polymodal.data.datasets import sample_path

    src = sample_path("openclipart")
    taken = dict.fromkeys(N_ROWS, 0)
    rows = []
    for line in src.read_text().splitlines():
        r = json.loads(line)
        if taken.get(r["split"], 10**9) < N_ROWS[r["split"]]:
            taken[r["split"]] += 1
            r["image"] = str((src.parent / r["image"]).resolve())
            rows.append(r)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "manifest.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def fit_small_run(folder: Path) -> Path:
    """Fit a quick text->image retrieval run into ``folder/run``; returns the run folder."""
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.train.config import TrainConfig

    manifest = small_manifest(folder / "data")
    cfg = RetrievalConfig(manifest=str(manifest), query="text", target="image", loss="infonce",
                          relevance="caption_group", head="mlp", dim=64, hidden=256,
                          batch_size=32, index="exact", cache_dir=str(folder / "cache"),
                          train=TrainConfig(epochs=8, patience=8, progress=False))
    fit_retrieval(cfg, folder / "run", with_baselines=False, progress=False)
    return folder / "run"


def ensure_small_run(base: Path) -> Path:
    """The small run under ``base/polymodal_small_run`` (fitted on first use)."""
    folder = base / "polymodal_small_run"
    run = folder / "run"
    if not (run / "config.yaml").is_file() or not (run / "metrics.json").is_file():
        fit_small_run(folder)
    return run


CLASSIFY_ROWS = {"train": 40, "val": 10, "test": 10}


def fit_small_classify_run(folder: Path) -> Path:
    """A quick audio+image digit classifier (attention fusion, real encoders) on the first rows
    of each split of the bundled av-digits sample; returns the run folder ``folder/run``."""
    from polymodal.data.datasets import sample_path
    from polymodal.tasks.classify.config import ClassifierConfig
    from polymodal.tasks.classify.fit import fit_classifier
    from polymodal.train.config import TrainConfig

    src = sample_path("av-digits")
    taken = dict.fromkeys(CLASSIFY_ROWS, 0)
    rows = []
    for line in src.read_text().splitlines():
        r = json.loads(line)
        if taken[r["split"]] < CLASSIFY_ROWS[r["split"]]:
            taken[r["split"]] += 1
            for m in ("image", "audio"):
                r[m] = str((src.parent / r[m]).resolve())
            rows.append(r)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    manifest = folder / "data" / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = ClassifierConfig(manifest=str(manifest), modalities=["audio", "image"],
                           fusion="attention", hidden=64, cache_dir=str(folder / "cache"),
                           train=TrainConfig(epochs=20, patience=6, lr=3e-3, progress=False))
    fit_classifier(cfg, folder / "run", progress=False)
    return folder / "run"


def ensure_small_classify_run(base: Path) -> Path:
    """The small classification run under ``base/polymodal_small_classify`` (fitted once)."""
    run = base / "polymodal_small_classify" / "run"
    if not (run / "metrics.json").is_file():
        fit_small_classify_run(run.parent)
    return run
