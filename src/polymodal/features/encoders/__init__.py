"""Pretrained encoders for text, image and audio, looked up by a flat name.

``build_encoder("minilm")``, ``build_encoder("efficientnet-lite0")``, ``build_encoder("logmel")``,
``build_encoder("whisper-tiny")``, ``build_encoder("hf:<model name or dir>", modality="text")``.
The table (`ENCODERS`, `polymodal list encoders`) and the names below load lazily: importing
this package imports no torch.
"""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_ENCODERS": "polymodal.features.encoders.registry",
    "ENCODERS": "polymodal.features.encoders.registry",
    "build_encoder": "polymodal.features.encoders.registry",
    "Encoder": "polymodal.features.encoders.base",
    "encode_items": "polymodal.features.encoders.base",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
