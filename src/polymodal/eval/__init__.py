"""Evaluation: retrieval / classification / regression metrics, chance levels and simple
retrieval baselines (ridge map, CCA map). Submodules are imported lazily."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    **{n: "metrics" for n in (
        "retrieval_metrics", "retrieval_metrics_from_embeddings", "relevance_from_labels",
        "chance_retrieval", "zero_shot_accuracy", "accuracy", "macro_f1", "auroc",
        "confusion_matrix", "mae", "r2")},
    "RidgeMap": "baselines", "CCAMap": "baselines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
