"""Shared pieces of the spatial fusions (``film``, ``relation``): image + question vector.

The image modality holds flattened pixels (the ``pixels`` encoder: ``[3, S, S]``, C order);
`SpatialInputs` folds them back, runs a small strided CNN stem (trained end to end) **once per
distinct image of the batch** (rows are keyed by a fixed random projection, so the questions
of one image share one stem pass: batch them together, ``batch_by`` in the classify config)
and appends two coordinate channels in [-1, 1]. The other modality is the conditioning vector
(e.g. a MiniLM question embedding). A missing image gives an all-zero map, a missing question
a zero vector.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.core.errors import UsageError
from polymodal.nn.fusion._inputs import check_dims, check_positive


def pixel_shape(dim: int) -> tuple[int, int, int] | None:
    """``(3, S, S)`` when ``dim`` = 3 S² (a ``pixels`` vector), else None."""
    side = int(round((dim / 3) ** 0.5))
    return (3, side, side) if 3 * side * side == dim and side >= 4 else None


def split_modalities(dims: Mapping[str, int], image: str) -> tuple[str, str, tuple]:
    """(image modality, conditioning modality, pixel shape), or a one-line `UsageError`."""
    names = check_dims(dims)
    if len(names) != 2 or image not in names:
        raise UsageError(f"spatial fusions need exactly two modalities, '{image}' (pixels) and "
                         f"one vector to condition on; got {names}")
    shape = pixel_shape(int(dims[image]))
    if shape is None:
        raise UsageError(f"modality '{image}': width {dims[image]} is not 3 x S x S pixels; "
                         f"encode it with --encoder {image}=pixels:<side>")
    return image, next(n for n in names if n != image), shape


def coord_channels(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """``[1, 2, h, w]``: x then y in [-1, 1]."""
    ys = torch.linspace(-1, 1, h, dtype=like.dtype, device=like.device)
    xs = torch.linspace(-1, 1, w, dtype=like.dtype, device=like.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy]).unsqueeze(0)


class SpatialInputs(nn.Module):
    """``forward(features, mask) -> (map [B, C+2, h, w], cond [B, d_cond])``."""

    def __init__(self, dims: Mapping[str, int], image: str = "image", channels: int = 32,
                 map_size: int = 5):
        super().__init__()
        self.image, self.cond, self.shape = split_modalities(dims, image)
        self.names = sorted(dims)
        self.cond_dim = int(dims[self.cond])
        channels = check_positive("channels", channels)
        map_size = check_positive("map_size", map_size)
        layers, side, c_in = [], self.shape[1], 3
        while side > map_size or not layers:
            layers += [nn.Conv2d(c_in, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels),
                       nn.ReLU()]
            side, c_in = (side + 1) // 2, channels
        self.stem = nn.Sequential(*layers)
        self.side = side
        self.channels = channels + 2
        g = torch.Generator().manual_seed(0)
        self.register_buffer("_key", torch.randn(int(dims[image]), generator=g,
                                                 dtype=torch.float64), persistent=False)

    def question_projection(self, width: int) -> nn.Module:
        """LayerNorm -> Linear(cond_dim, width) -> ReLU: how a spatial fusion reads the
        conditioning (question) vector."""
        return nn.Sequential(nn.LayerNorm(self.cond_dim), nn.Linear(self.cond_dim, width),
                             nn.ReLU())

    def forward(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        img, cond = features.get(self.image), features.get(self.cond)
        if img is None:
            raise UsageError(f"spatial fusion: no '{self.image}' features given")
        b = img.shape[0]
        if img.dim() != 2 or img.shape[1] != self._key.shape[0]:
            raise UsageError(f"modality '{self.image}': expected [batch, {self._key.shape[0]}], "
                             f"got {tuple(img.shape)}")
        if mask is None:
            mask = torch.ones(b, 2, dtype=torch.bool, device=img.device)
            if cond is None:
                mask[:, self.names.index(self.cond)] = False
        if cond is None:
            cond = img.new_zeros(b, self.cond_dim)
        with torch.autocast(img.device.type, enabled=False):
            key = img.detach().double() @ self._key
        uniq, inverse = torch.unique(key, return_inverse=True)
        first = torch.full((len(uniq),), b, dtype=torch.long, device=img.device)
        first = first.scatter_reduce(0, inverse, torch.arange(b, device=img.device), "amin")
        pix = img[first].reshape(len(uniq), *self.shape)
        fmap = self.stem(pix)[inverse]
        keep_img = mask[:, self.names.index(self.image)].to(fmap.dtype).view(b, 1, 1, 1)
        fmap = fmap * keep_img
        keep_c = mask[:, self.names.index(self.cond)].unsqueeze(1)
        cond = torch.where(keep_c, cond, torch.zeros_like(cond))
        coords = coord_channels(fmap.shape[2], fmap.shape[3], fmap).expand(b, -1, -1, -1)
        return torch.cat([fmap, coords], 1), cond
