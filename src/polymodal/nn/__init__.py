"""Neural building blocks (heads, fusions) and the models composed from them
(dual encoder, fused classifier, autoencoder, captioners, generators). Imported lazily."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {
    'LinearHead': 'polymodal.nn.heads',
    'MLPHead': 'polymodal.nn.heads',
    'build_head': 'polymodal.nn.heads',
    'MultimodalAutoencoder': 'polymodal.nn.autoencoder',
    'autoencoder_loss': 'polymodal.nn.autoencoder',
    'build_fusion': 'polymodal.nn.fusion',
    'FUSIONS': 'polymodal.nn.fusion',
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
