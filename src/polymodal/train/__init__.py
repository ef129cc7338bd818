"""One task-agnostic training loop (``fit_loop``) and its settings (``TrainConfig``, torch-free).
Imported lazily so that configs can be read without torch."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {"TrainConfig": "polymodal.train.config", "TrainResult": "polymodal.train.loop",
            "fit_loop": "polymodal.train.loop", "seed_everything": "polymodal.train.loop"}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
