"""``pixels`` / ``pixels:<side>``: the image itself as a small pixel array (no weights).

Each image is converted to RGB, resized to ``side`` x ``side`` (default 75; box filter when
shrinking, so thin shapes keep their colour mass; JPEGs decoded at a reduced DCT scale that
keeps both sides >= 2 x side, `polymodal.data.image_input`) and flattened channel-first: the
vector is ``[3, side, side]`` in C order with values in [0, 1]. The id records that layout
(``pixels|size=S|layout=chw|scale=1/255``) and ``shape`` holds ``(3, S, S)``, so a spatial
fusion (``film``, ``relation``) can fold the vector back into an image and train its own CNN on
it end to end. Meant for small synthetic images (Sort-of-CLEVR): the dimension grows as 3 S².
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from polymodal.core.errors import UsageError
from polymodal.data.image_input import SquareInput
from polymodal.features.encoders.base import encode_items

DEFAULT_SIDE = 75
MAX_SIDE = 128


def parse_side(arg: str | int | None) -> int:
    """The side of ``pixels:<side>`` (default 75); a one-line `UsageError` when bad."""
    if arg in (None, ""):
        return DEFAULT_SIDE
    try:
        side = int(str(arg).strip())
    except ValueError:
        side = 0
    if not 4 <= side <= MAX_SIDE:
        raise UsageError(f"encoder 'pixels:{arg}': the side must be an integer from 4 to "
                         f"{MAX_SIDE}")
    return side


def image_shape(dim: int) -> tuple[int, int, int] | None:
    """``(3, S, S)`` when ``dim`` is the width of a ``pixels`` vector (3 S²), else None."""
    side = int(round((dim / 3) ** 0.5))
    return (3, side, side) if 3 * side * side == dim and side >= 4 else None


class PixelsEncoder:
    """An image as its ``[3, S, S]`` pixels in [0, 1], flattened (no model)."""

    modality = "image"
    backends: dict = {}  # no model
    batch_size = 256

    def __init__(self, side: str | int | None = None, jpeg_draft: bool = True):
        self.side = parse_side(side)
        self.input = SquareInput(self.side, "box", jpeg_draft)
        self.name = "pixels" if side in (None, "") else f"pixels:{self.side}"
        self.shape = (3, self.side, self.side)
        self.dim = 3 * self.side * self.side

    @property
    def id(self) -> str:
        return f"pixels|size={self.side}|layout=chw|scale=1/255{self.input.id}"

    def prepare(self, item: Any) -> np.ndarray:
        """Decode + box-resize one image (a path or a PIL image) -> ``uint8 [S, S, 3]``."""
        return self.input(item)

    def preparer(self) -> SquareInput:
        """`prepare` as a picklable, torch-free callable (for decode processes)."""
        return self.input

    def encode_prepared(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        if not len(batch):
            return torch.empty(0, self.dim)
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
        return x.reshape(len(batch), self.dim)

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        return encode_items(self, items, batch_size, normalize, numpy)


__all__ = ["PixelsEncoder", "image_shape", "parse_side"]
