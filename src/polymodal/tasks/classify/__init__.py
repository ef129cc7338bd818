"""Fusion for classification, multi-label and regression: config.py (torch-free) · data.py ·
fit.py · loaded.py · predict.py · compare.py · analysis.py (robustness, importance). Imported lazily."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {
    'ClassifierConfig': 'polymodal.tasks.classify.config',
    'fit_classifier': 'polymodal.tasks.classify.fit',
    'load_classifier': 'polymodal.tasks.classify.loaded',
    'predict': 'polymodal.tasks.classify.loaded',
    'compare_methods': 'polymodal.tasks.classify.compare',
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
