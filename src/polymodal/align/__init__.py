"""Aligning modalities in a shared space: losses, projection heads, CCA, deep CCA and a
multimodal autoencoder. Submodules are imported lazily (torch is only loaded when used)."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "infonce_loss": "losses", "siglip_loss": "losses", "triplet_loss": "losses",
    "contrastive_loss": "losses", "mse_loss": "losses", "cosine_loss": "losses",
    "LOSSES": "losses", "LOSS_PARAMS": "losses", "get_loss": "losses", "loss_params": "losses",
    "LinearHead": "heads", "MLPHead": "heads", "build_head": "heads",
    "LinearCCA": "cca", "DeepCCA": "cca", "dcca_loss": "cca",
    "MultimodalAutoencoder": "autoencoder", "autoencoder_loss": "autoencoder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
