"""Pooling a clip's frame vectors into one clip vector: the masked mean, and `AttentionPool`,
a learned scoring MLP whose softmax over the real (unpadded) frames weights their sum.

Input of both: frames ``[N, F, d]`` padded to the longest clip, ``mask`` ``[N, F]`` bool (True =
a real frame; None = all real). A padded frame never reaches the output, whatever its values.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.core.errors import UsageError


def _mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise UsageError(f"frame mask {tuple(mask.shape)} does not match frames "
                         f"{tuple(x.shape)}")
    return mask.bool()


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the real frames of each clip ``[N, d]`` (0 for a clip without any)."""
    m = _mask(x, mask)
    x = torch.where(m[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum(1) / m.sum(1, keepdim=True).clamp(min=1).to(x.dtype)


class AttentionPool(nn.Module):
    """``sum_i softmax(s(x_i)) x_i`` over the real frames, ``s = w2 . tanh(W1 x + b1)``.

    The last layer starts at zero, so an untrained pool is the mean of the frames; training
    moves it away from the mean only as far as the loss asks. `weights` returns the attention
    weights (``[N, F]``, 0 on padding, each clip's real frames sum to 1)."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        if dim < 1 or hidden < 1:
            raise UsageError(f"attention pool needs dim, hidden >= 1 (got {dim}, {hidden})")
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score[2].weight)
        nn.init.zeros_(self.score[2].bias)
        self.spec: dict[str, Any] = {"dim": dim, "hidden": hidden}

    def weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = _mask(x, mask)
        x = torch.where(m[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        s = self.score(x).squeeze(-1).masked_fill(~m, float("-inf"))
        w = torch.softmax(s, dim=1)
        return torch.nan_to_num(w, nan=0.0) * m  # a clip without real frames: all 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weights(x, mask)
        x = torch.where(_mask(x, mask)[..., None], x,
                        torch.zeros((), dtype=x.dtype, device=x.device))
        return (w[..., None] * x).sum(1)
