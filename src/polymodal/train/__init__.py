"""One task-agnostic training loop (``fit_loop``) and its settings (``TrainConfig``, torch-free).
Imported lazily so that configs can be read without torch."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"TrainConfig": "polymodal.train.config", "TrainResult": "polymodal.train.loop",
            "fit_loop": "polymodal.train.loop", "seed_everything": "polymodal.train.loop"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
