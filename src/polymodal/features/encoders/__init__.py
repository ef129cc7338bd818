"""Pretrained encoders for text, image and audio, looked up by a flat name.

``build_encoder("minilm")``, ``build_encoder("efficientnet-lite0")``, ``build_encoder("logmel")``,
``build_encoder("whisper-tiny")``, ``build_encoder("hf:<model name or dir>", modality="text")``.
Builders import their heavy dependencies lazily, so importing this package is cheap.
"""
from __future__ import annotations

from polymodal.features.encoders.base import Encoder, encode_items
from polymodal.features.encoders.registry import DEFAULT_ENCODERS, ENCODERS, build_encoder

__all__ = ["DEFAULT_ENCODERS", "ENCODERS", "Encoder", "build_encoder", "encode_items"]
