"""One flat table: encoder name -> (modality, builder). Builders import lazily."""
from __future__ import annotations

import importlib
from typing import Any

from polymodal.features.encoders.base import Encoder
from polymodal.core.errors import UsageError

# name -> (modality, "module:function")
ENCODERS: dict[str, tuple[str, str]] = {
    "minilm": ("text", "polymodal.features.encoders.text:MiniLMEncoder"),
    "efficientnet-lite0": ("image", "polymodal.features.encoders.image:EfficientNetLite0Encoder"),
    "logmel": ("audio", "polymodal.features.encoders.audio:LogMelEncoder"),
    "whisper-tiny": ("audio", "polymodal.features.encoders.whisper:WhisperEncoder"),
}
DEFAULT_ENCODERS = {"text": "minilm", "image": "efficientnet-lite0", "audio": "logmel"}
HF_PREFIX = "hf:"


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def build_encoder(name: str, modality: str | None = None, **kwargs: Any) -> Encoder:
    """Build an encoder by table name, or ``hf:<model>`` for any Hugging Face model
    (``modality`` required for ``hf:``: text, image or audio)."""
    if name.startswith(HF_PREFIX):
        if modality is None:
            raise UsageError(f"encoder '{name}' needs a modality (e.g. --encoder text={name})")
        return _load("polymodal.features.encoders.hf:HFEncoder")(name[len(HF_PREFIX):], modality,
                                                        **kwargs)
    if name not in ENCODERS:
        raise UsageError(f"unknown encoder '{name}'; choose one of {', '.join(ENCODERS)} "
                         f"or hf:<model name or local dir>")
    table_modality, target = ENCODERS[name]
    if modality is not None and modality != table_modality:
        raise UsageError(f"encoder '{name}' is a {table_modality} encoder, not {modality}")
    return _load(target)(**kwargs)
