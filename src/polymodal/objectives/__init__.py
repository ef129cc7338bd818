"""Objectives: alignment losses (pure functions on embeddings), linear and deep CCA.
Submodules are imported lazily (torch is only loaded when used)."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {
    'infonce_loss': 'polymodal.objectives.losses',
    'siglip_loss': 'polymodal.objectives.losses',
    'triplet_loss': 'polymodal.objectives.losses',
    'contrastive_loss': 'polymodal.objectives.losses',
    'mse_loss': 'polymodal.objectives.losses',
    'cosine_loss': 'polymodal.objectives.losses',
    'loss_names': 'polymodal.objectives.losses',
    'ALIGNMENTS': 'polymodal.objectives.registry',
    'LOSS_PARAMS': 'polymodal.objectives.losses',
    'get_loss': 'polymodal.objectives.losses',
    'loss_params': 'polymodal.objectives.losses',
    'LinearCCA': 'polymodal.objectives.cca',
    'DeepCCA': 'polymodal.objectives.cca',
    'dcca_loss': 'polymodal.objectives.cca',
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
