"""The Encoder protocol and the name -> builder table.

An encoder turns items of one modality (image paths, audio paths or texts) into vectors.
Decoding is separate from encoding so that a batch job can skip one bad file and go on:
``prepare(item)`` decodes one item (raises `DecodeError` / `PolymodalError` on bad input),
``encode_prepared(list)`` runs the model on a batch of prepared items.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class Encoder(Protocol):
    """What every encoder provides.

    ``id`` names the encoder *and* every preprocessing setting that changes its output (it is
    part of the feature-cache key); ``dim`` is the output width.
    """

    name: str
    modality: str
    dim: int

    @property
    def id(self) -> str: ...

    def prepare(self, item: Any) -> Any:
        """Decode one item (a path for image/audio, a string for text)."""
        ...

    def encode_prepared(self, batch: Sequence[Any]) -> torch.Tensor:
        """Encode prepared items -> float tensor ``[len(batch), dim]``."""
        ...

    def encode(self, items: Sequence[Any]) -> torch.Tensor:
        """Convenience: ``encode_prepared([prepare(i) for i in items])``."""
        ...


def encode_items(encoder: Encoder, items: Sequence[Any]) -> torch.Tensor:
    """Shared implementation of ``Encoder.encode`` (composition, not inheritance)."""
    return encoder.encode_prepared([encoder.prepare(i) for i in items])


EncoderBuilder = Callable[..., Encoder]
