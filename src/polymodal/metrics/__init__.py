"""Pure metric functions, chance levels and simple baselines. Imported lazily."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'retrieval_metrics': 'polymodal.metrics.scores',
    'retrieval_metrics_from_embeddings': 'polymodal.metrics.scores',
    'relevance_from_labels': 'polymodal.metrics.scores',
    'chance_retrieval': 'polymodal.metrics.scores',
    'zero_shot_accuracy': 'polymodal.metrics.scores',
    'accuracy': 'polymodal.metrics.scores',
    'macro_f1': 'polymodal.metrics.scores',
    'auroc': 'polymodal.metrics.scores',
    'confusion_matrix': 'polymodal.metrics.scores',
    'mae': 'polymodal.metrics.scores',
    'r2': 'polymodal.metrics.scores',
    'RidgeMap': 'polymodal.metrics.baselines',
    'CCAMap': 'polymodal.metrics.baselines',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
