"""Cross-modal retrieval: config.py (torch-free) · data.py (pairs, relevance) · fit.py (train,
evaluate, index) · predict.py (load a run, search, evaluate). Imported lazily."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {
    'RetrievalConfig': 'polymodal.tasks.retrieval.config',
    'fit_retrieval': 'polymodal.tasks.retrieval.fit',
    'load_run': 'polymodal.tasks.retrieval.predict',
    'search_run': 'polymodal.tasks.retrieval.predict',
    'eval_run': 'polymodal.tasks.retrieval.predict',
    'RetrievalRun': 'polymodal.tasks.retrieval.predict',
    'Hit': 'polymodal.tasks.retrieval.predict',
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
