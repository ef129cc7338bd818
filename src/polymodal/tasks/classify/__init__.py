"""Fusion for classification, multi-label and regression: config.py (torch-free) · data.py ·
fit.py · predict.py · compare.py · analysis.py (robustness, importance). Imported lazily."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'ClassifierConfig': 'polymodal.tasks.classify.config',
    'fit_classifier': 'polymodal.tasks.classify.fit',
    'load_classifier': 'polymodal.tasks.classify.fit',
    'predict': 'polymodal.tasks.classify.fit',
    'compare_methods': 'polymodal.tasks.classify.compare',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
