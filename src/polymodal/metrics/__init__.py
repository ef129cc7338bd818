"""Pure metric functions, chance levels and simple baselines. Imported lazily."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

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

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
