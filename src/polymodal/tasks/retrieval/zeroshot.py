"""Zero-shot classification through a text <-> X retrieval run: each class name becomes a text
prompt, each item (image / audio) gets the class whose prompt is nearest in the shared space.
No training on the labels: the run only ever saw (item, caption) pairs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from polymodal.data.manifest import read_manifest
from polymodal.core.splits import assign_splits, run_splits, split_cells
from polymodal.core.errors import UsageError
from polymodal.tasks.retrieval.predict import RetrievalRun, run_features


def class_prompts(classes: list[str], prompt: str) -> list[str]:
    """``prompt`` with ``{}`` replaced by each class name (underscores read as spaces)."""
    if "{}" not in prompt:
        raise UsageError(f"--prompt must contain '{{}}' where the class name goes, got '{prompt}'")
    return [prompt.replace("{}", str(c).replace("_", " ")) for c in classes]


def zero_shot_run(run: RetrievalRun, column: str = "label", prompt: str = "{}",
                  manifest: str | Path | None = None, split: str | None = "test",
                  progress: bool = True) -> dict:
    """Zero-shot accuracy of ``run`` on ``column`` (``label`` or an extra manifest column).

    Classes are every distinct value of the column in the whole manifest; items are the rows of
    ``split`` (``None``: all) that have both the column and the non-text modality. Returns
    accuracy, chance (1 / classes), the majority-class rate on the same items, counts and the
    prompts used."""
    from polymodal.metrics.scores import zero_shot_accuracy

    cfg = run.config
    if "text" not in (cfg.query, cfg.target):
        raise UsageError(f"zero-shot needs a run that aligns text with something; this one "
                         f"aligns {cfg.query} and {cfg.target}")
    text_side, other = ("query", cfg.target) if cfg.query == "text" else ("target", cfg.query)
    m = read_manifest(manifest or cfg.manifest, columns=cfg.columns)
    values = [r.label if column == "label" else r.extra.get(column) for r in m.records]
    if all(v is None for v in values):
        raise UsageError(f"--zero-shot {column}: the manifest has no such column (or it is empty)")
    classes = sorted({str(v) for v in values if v is not None})
    if len(classes) < 2:
        raise UsageError(f"--zero-shot {column}: needs at least 2 classes, found {classes}")
    prompts = class_prompts(classes, prompt)
    x, present = run_features(run, m, (other,), manifest is None, progress).per_row(other)
    splits = assign_splits(split_cells(m.records, run_splits(run.root) if manifest is None
                                       else None), m.ids)
    keep = present & np.array([v is not None for v in values])
    if split is not None:
        keep &= splits == split
    if not keep.any():
        raise UsageError(f"no {split or ''} rows with both {other} and '{column}' in {m.path}")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[str(values[i])] for i in np.flatnonzero(keep)])
    with torch.inference_mode():
        t = run.model.embed(run.encoder("text").encode(prompts).float(), text_side).numpy()
    xe = run.model.embed_numpy(x[keep], "target" if text_side == "query" else "query")
    acc = zero_shot_accuracy(xe, t, y)
    majority = Counter(y.tolist()).most_common(1)[0][1] / len(y)
    return {"accuracy": acc, "chance": 1 / len(classes), "majority": majority,
            "n_items": int(len(y)), "n_classes": len(classes), "column": column,
            "split": split or "all", "prompts": prompts}
