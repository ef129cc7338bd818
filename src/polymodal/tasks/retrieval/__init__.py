"""Cross-modal retrieval: config.py (torch-free) · data.py (pairs, relevance) · fit.py (train,
evaluate, index) · predict.py (load a run, search, evaluate). Imported lazily."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'RetrievalConfig': 'polymodal.tasks.retrieval.config',
    'fit_retrieval': 'polymodal.tasks.retrieval.fit',
    'load_run': 'polymodal.tasks.retrieval.predict',
    'search_run': 'polymodal.tasks.retrieval.predict',
    'eval_run': 'polymodal.tasks.retrieval.predict',
    'RetrievalRun': 'polymodal.tasks.retrieval.predict',
    'Hit': 'polymodal.tasks.retrieval.predict',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
