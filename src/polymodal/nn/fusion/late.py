"""Late fusion: one prediction head per modality, predictions combined afterwards.

``out_dim`` is the number of *outputs* (classes for classification): each head already
produces logits, so ``produces_logits`` is True and the task must not add another head.
Heads of missing modalities are excluded: ``mean`` and ``weighted`` renormalise over present
modalities; ``stack`` zeroes the missing heads' logits and feeds the mask to the combiner.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.core.errors import UsageError
from polymodal.nn.fusion._inputs import (ModalityInputs, check_dropout, check_positive,
                                         keep_for_explaining, masked_softmax, mlp)

COMBINES = ("mean", "weighted", "stack")


class LateFusion(nn.Module):
    """Per-modality MLP heads ``x_m -> logits_m [B, out_dim]`` combined by ``combine``.

    Options: ``combine`` ("mean" | "weighted" | "stack"), ``hidden`` (head width, 128;
    0 = linear heads), ``dropout`` (0.1), ``norm`` (per-modality input LayerNorm, True).
    After ``forward``: ``last_weights [B, M]`` (combination weights; for "stack" the present
    mask normalised to sum 1) and ``last_head_logits [B, M, out_dim]``, both detached.
    """

    produces_logits = True

    def __init__(self, dims: Mapping[str, int], out_dim: int, combine: str = "mean",
                 hidden: int = 128, dropout: float = 0.1, norm: bool = True):
        super().__init__()
        if combine not in COMBINES:
            raise UsageError(f"unknown late-fusion combine '{combine}'; valid: {', '.join(COMBINES)}")
        self.inputs = ModalityInputs(dims, norm=norm)
        self.out_dim = check_positive("out_dim", out_dim)
        self.combine = combine
        drop = check_dropout(dropout)
        if hidden == 0:
            self.heads = nn.ModuleDict({n: nn.Linear(d, self.out_dim)
                                        for n, d in self.inputs.dims.items()})
        else:
            hidden = check_positive("hidden", hidden)
            self.heads = nn.ModuleDict({n: mlp(d, hidden, self.out_dim, drop)
                                        for n, d in self.inputs.dims.items()})
        m = self.inputs.n_modalities
        self.logits = nn.Parameter(torch.zeros(m)) if combine == "weighted" else None
        self.stacker = nn.Linear(m * self.out_dim + m, self.out_dim) if combine == "stack" else None
        self.last_weights: torch.Tensor | None = None
        self.last_head_logits: torch.Tensor | None = None

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse ``features`` (modality -> ``[B, d_m]``) with ``mask [B, M]`` -> logits ``[B, out_dim]``."""
        xs, mask = self.inputs(features, mask)
        heads = torch.stack([self.heads[n](x) for n, x in zip(self.inputs.names, xs)], dim=1)
        heads = torch.where(mask.unsqueeze(-1), heads, torch.zeros_like(heads))
        keep_for_explaining(self, last_head_logits=heads)
        fm = mask.to(heads.dtype)
        if self.combine == "stack":
            keep_for_explaining(self, last_weights=fm / fm.sum(1, keepdim=True).clamp_min(1.0))
            return self.stacker(torch.cat([heads.flatten(1), fm], dim=1))
        if self.combine == "weighted":
            w = masked_softmax(self.logits.unsqueeze(0).expand(mask.shape[0], -1), mask)
        else:
            w = fm / fm.sum(1, keepdim=True).clamp_min(1.0)
        w = w.to(heads.dtype)
        keep_for_explaining(self, last_weights=w)
        return (w.unsqueeze(-1) * heads).sum(dim=1)
