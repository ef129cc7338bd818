"""Pretrained encoders for text, image and audio, looked up by a flat name.

``build_encoder("minilm")``, ``build_encoder("efficientnet-lite0")``, ``build_encoder("logmel")``,
``build_encoder("whisper-tiny")``, ``build_encoder("hf:<model name or dir>", modality="text")``.
The table (`ENCODERS`, `polymodal list encoders`) and the names below load lazily: importing
this package imports no torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_ENCODERS": "polymodal.features.encoders.registry",
    "ENCODERS": "polymodal.features.encoders.registry",
    "build_encoder": "polymodal.features.encoders.registry",
    "Encoder": "polymodal.features.encoders.base",
    "encode_items": "polymodal.features.encoders.base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
