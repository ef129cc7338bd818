"""Neural building blocks (heads, fusions) and the models composed from them
(dual encoder, fused classifier, autoencoder, captioners, generators). Imported lazily."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'LinearHead': 'polymodal.nn.heads',
    'MLPHead': 'polymodal.nn.heads',
    'build_head': 'polymodal.nn.heads',
    'MultimodalAutoencoder': 'polymodal.nn.autoencoder',
    'autoencoder_loss': 'polymodal.nn.autoencoder',
    'build_fusion': 'polymodal.nn.fusion',
    'FUSIONS': 'polymodal.nn.fusion',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
