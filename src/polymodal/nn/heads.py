"""Projection heads that map one modality's features into the shared space.

Every head has ``spec`` (a plain dict) so that ``build_head(**head.spec)`` rebuilds the same
architecture before loading saved weights.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.errors import UsageError


class LinearHead(nn.Module):
    """``y = W x + b``, optionally L2-normalised."""

    def __init__(self, in_dim: int, out_dim: int, normalize: bool = True):
        super().__init__()
        _check_dims(in_dim, out_dim)
        self.proj = nn.Linear(in_dim, out_dim)
        self.normalize = normalize
        self.spec: dict[str, Any] = {"kind": "linear", "in_dim": in_dim, "out_dim": out_dim,
                                     "normalize": normalize}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        return F.normalize(y, dim=-1) if self.normalize else y


class MLPHead(nn.Module):
    """``Linear -> GELU -> Dropout -> Linear`` (one hidden layer), optionally
    L2-normalised output."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, dropout: float = 0.1,
                 normalize: bool = True):
        super().__init__()
        _check_dims(in_dim, out_dim)
        if hidden < 1:
            raise UsageError(f"hidden width must be >= 1, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise UsageError(f"dropout must be in [0, 1), got {dropout}")
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim))
        self.normalize = normalize
        self.spec: dict[str, Any] = {"kind": "mlp", "in_dim": in_dim, "out_dim": out_dim,
                                     "hidden": hidden, "dropout": dropout, "normalize": normalize}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return F.normalize(y, dim=-1) if self.normalize else y


def _check_dims(in_dim: int, out_dim: int) -> None:
    if in_dim < 1 or out_dim < 1:
        raise UsageError(f"head dimensions must be >= 1, got in_dim={in_dim}, out_dim={out_dim}")


def build_head(kind: str, in_dim: int, out_dim: int, **kw: Any) -> nn.Module:
    """Build a head by registry name (`polymodal.nn.registry.HEADS`): ``"linear"``
    (``normalize``) or ``"mlp"`` (``hidden``, ``dropout``, ``normalize``); unknown names and
    options are one-line `UsageError`s."""
    from polymodal.nn.registry import HEADS

    return HEADS.build(kind, in_dim, out_dim, **kw)
