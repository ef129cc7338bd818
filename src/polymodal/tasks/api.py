"""``polymodal.load(RUN)``: a fitted run folder as the model object of its task.

    retrieval       -> `Retriever`       .search(queries, k) .embed(items) .evaluate()
    classification  -> `Classifier`      .predict(items) .predict_manifest(m) .embed(items, m)
    caption         -> `Captioner`       .caption(images, beam=None)
    generate        -> `ImageGenerator`  .generate(text=… | audio=…, n=16, seed=0)

The task comes from the run's config.yaml (`RunFolder`); each object is built on its task's
loader and lives in that task's ``predict.py``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from polymodal.core.errors import PolymodalError
from polymodal.core.runfolder import RunFolder

# run task -> "module:class" of its model object (imported only when a run of it is loaded)
MODEL_CLASSES = {
    "retrieval": "polymodal.tasks.retrieval.predict:Retriever",
    "classification": "polymodal.tasks.classify.predict:Classifier",
    "caption": "polymodal.tasks.caption.predict:Captioner",
    "generate": "polymodal.tasks.generate.predict:ImageGenerator",
}


def model_class(task: str) -> type:
    """The model object class of runs of ``task``."""
    if task not in MODEL_CLASSES:
        raise PolymodalError(f"a '{task}' run cannot be loaded; polymodal loads "
                             f"{', '.join(MODEL_CLASSES)} runs")
    module, name = MODEL_CLASSES[task].split(":")
    return getattr(importlib.import_module(module), name)


def load(run: str | Path) -> Any:
    """Load a run folder as its task's model object (see the module doc); a one-line
    `PolymodalError` when the folder is missing, not a run, or corrupt. An exported folder
    (``polymodal export``) loads without torch as an `ExportedRetriever`."""
    from polymodal.tasks.retrieval.exported import ExportedRetriever, is_export

    if is_export(run):
        return ExportedRetriever.load(run)
    return model_class(RunFolder.open(run).task).load(run)
