"""Decode + resize an image file to the square ``uint8 [S, S, 3]`` array an image encoder
consumes: the ``prepare`` step of ``efficientnet-lite0`` and ``pixels``.

`SquareInput` is a small frozen dataclass, torch-free and picklable, so that decode processes
(``encode --decode processes``, `polymodal.features.decode_pool`) can run it without building
the model. Its `id` is the part of the encoder id that names the preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from polymodal.data.loaders import JPEG_DRAFT_FACTOR, load_image

NATIVE = "native"
NATIVE_MIN, NATIVE_MAX = 64, 224


def native_side(width: int, height: int, min_side: int = NATIVE_MIN,
                max_side: int = NATIVE_MAX) -> int:
    """Square side an image is encoded at in ``image_size="native"`` mode: its longer side
    rounded up to a multiple of 32 (the network's stride, so every "same" padding is the one the
    weights were trained with), at least ``min_side``, at most ``max_side``."""
    side = -(-max(int(width), int(height)) // 32) * 32
    return int(min(max(side, min_side), max_side))


def resize_rgb(image: Any, size: int, resample: str = "bilinear") -> np.ndarray:
    """PIL image -> ``uint8 [size, size, 3]`` (the whole image, no crop; Pillow's bilinear or
    box filter, both antialiased when shrinking)."""
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling[resample.upper()])
    return np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True)
class SquareInput:
    """``size``: a side, or ``"native"`` (`native_side` of each image). ``jpeg_draft``: decode
    JPEGs at a reduced DCT scale that keeps both sides >= ``JPEG_DRAFT_FACTOR`` x the largest
    side this input resizes to (`load_image`'s ``draft_for``)."""

    size: int | str
    resample: str = "bilinear"
    jpeg_draft: bool = True

    @property
    def max_side(self) -> int:
        return NATIVE_MAX if self.size == NATIVE else int(self.size)

    @property
    def id(self) -> str:
        """``|jpeg=draft2x`` when JPEGs may be decoded at a reduced scale ('' otherwise)."""
        return f"|jpeg=draft{JPEG_DRAFT_FACTOR}x" if self.jpeg_draft else ""

    def side_for(self, width: int, height: int) -> int:
        # native mode: a drafted JPEG keeps both sides >= 2 x NATIVE_MAX, so its side is
        # NATIVE_MAX as it would be at full scale
        return native_side(width, height) if self.size == NATIVE else int(self.size)

    def __call__(self, item: Any) -> np.ndarray:
        """A path (decoded by `load_image`) or an already decoded PIL image -> the array."""
        if hasattr(item, "convert"):
            image = item
        else:
            image = load_image(item, draft_for=self.max_side if self.jpeg_draft else None)
        return resize_rgb(image, self.side_for(*image.size), self.resample)
