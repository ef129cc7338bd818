"""FiLM (Perez et al. 2018): a CNN over the image whose feature maps are scaled and shifted
per channel by the question.

`SpatialInputs` gives a small ``map_size`` x ``map_size`` feature map (strided CNN stem on the
pixels, trained end to end, coordinate channels appended) and the question vector. ``blocks``
residual blocks each run ``1x1 conv -> 3x3 conv -> BatchNorm -> FiLM(gamma, beta from the
question) -> ReLU`` (coordinates re-appended at each block's input), then a 1x1 conv and a
global max pool give the ``[B, out_dim]`` output (the task adds the head).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.nn.fusion._inputs import check_positive
from polymodal.nn.fusion._spatial import SpatialInputs


class _FiLMBlock(nn.Module):
    def __init__(self, c_in: int, width: int, cond: int):
        super().__init__()
        self.inp = nn.Conv2d(c_in, width, 1)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width, affine=False)
        self.film = nn.Linear(cond, 2 * width)

    def forward(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        gamma, beta = self.film(q).chunk(2, dim=1)
        y = self.bn(self.conv(h)) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return h + torch.relu(y)


class FiLMFusion(nn.Module):
    """Question-conditioned CNN. Options: ``width`` (channels, 64), ``blocks`` (4),
    ``channels`` (stem channels, 32), ``map_size`` (stem output side, 5), ``cond_dim``
    (question projection, 128), ``image`` (the pixel modality, "image")."""

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int, width: int = 64, blocks: int = 4,
                 channels: int = 32, map_size: int = 5, cond_dim: int = 128,
                 image: str = "image"):
        super().__init__()
        self.inputs = SpatialInputs(dims, image, channels, map_size)
        self.out_dim = check_positive("out_dim", out_dim)
        width, blocks = check_positive("width", width), check_positive("blocks", blocks)
        cond_dim = check_positive("cond_dim", cond_dim)
        self.q = self.inputs.question_projection(cond_dim)
        self.blocks = nn.ModuleList(
            [_FiLMBlock((self.inputs.channels if i == 0 else width) + (2 if i else 0), width,
                        cond_dim) for i in range(blocks)])
        self.out = nn.Sequential(nn.Conv2d(width + 2, out_dim, 1), nn.ReLU())

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        x, cond = self.inputs(features, mask)
        q = self.q(cond)
        coords = x[:, -2:]
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else torch.cat([x, coords], 1), q)
        x = self.out(torch.cat([x, coords], 1))
        return x.amax(dim=(2, 3))


__all__ = ["FiLMFusion"]
