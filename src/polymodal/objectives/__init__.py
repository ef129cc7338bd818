"""Objectives: alignment losses (pure functions on embeddings), linear and deep CCA.
Submodules are imported lazily (torch is only loaded when used)."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'infonce_loss': 'polymodal.objectives.losses',
    'siglip_loss': 'polymodal.objectives.losses',
    'triplet_loss': 'polymodal.objectives.losses',
    'contrastive_loss': 'polymodal.objectives.losses',
    'mse_loss': 'polymodal.objectives.losses',
    'cosine_loss': 'polymodal.objectives.losses',
    'LOSSES': 'polymodal.objectives.losses',
    'LOSS_PARAMS': 'polymodal.objectives.losses',
    'get_loss': 'polymodal.objectives.losses',
    'loss_params': 'polymodal.objectives.losses',
    'LinearCCA': 'polymodal.objectives.cca',
    'DeepCCA': 'polymodal.objectives.cca',
    'dcca_loss': 'polymodal.objectives.cca',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
