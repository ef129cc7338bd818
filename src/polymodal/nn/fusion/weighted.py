"""Weighted-sum fusion: project every modality to ``out_dim`` and take a weighted sum.

Weights are fixed (``alphas={"image": 0.7, "audio": 0.3}``) or learned (softmax over one
learned logit per modality). Either way they are renormalised over the modalities present in
each row, so a missing modality gets weight 0 and the others share its weight.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.core.errors import UsageError
from polymodal.nn.fusion._inputs import (ModalityInputs, check_dropout, check_positive,
                                         keep_for_explaining, masked_softmax)


class WeightedSumFusion(nn.Module):
    """``sum_m w_m * Linear_m(x_m)`` with weights renormalised over present modalities.

    Options: ``alphas`` (dict modality -> non-negative weight; ``None`` = learned weights),
    ``dropout`` (0.0, on the projections), ``norm`` (per-modality input LayerNorm, True).
    After ``forward``, ``last_weights`` (``[B, M]``, detached) holds the weights used.
    """

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int,
                 alphas: Mapping[str, float] | None = None, dropout: float = 0.0,
                 norm: bool = True):
        super().__init__()
        self.inputs = ModalityInputs(dims, norm=norm)
        self.out_dim = check_positive("out_dim", out_dim)
        names = self.inputs.names
        self.proj = nn.ModuleDict({n: nn.Linear(d, self.out_dim) for n, d in self.inputs.dims.items()})
        self.drop = nn.Dropout(check_dropout(dropout))
        if alphas is None:
            self.logits = nn.Parameter(torch.zeros(len(names)))
            self.register_buffer("alphas", None)
        else:
            if not isinstance(alphas, Mapping) or set(alphas) != set(names):
                got = sorted(alphas) if isinstance(alphas, Mapping) else alphas
                raise UsageError(f"alphas must give one weight for each of {names}, got {got}")
            vals = []
            for n in names:
                a = alphas[n]
                if isinstance(a, bool) or not isinstance(a, (int, float)) or not a >= 0:
                    raise UsageError(f"alpha for '{n}' must be a non-negative number, got {a!r}")
                vals.append(float(a))
            if sum(vals) <= 0:
                raise UsageError("alphas must not all be zero")
            self.logits = None
            self.register_buffer("alphas", torch.tensor(vals))
        self.last_weights: torch.Tensor | None = None

    def weights(self, mask: torch.Tensor) -> torch.Tensor:
        """Per-row modality weights ``[B, M]`` for a bool ``mask [B, M]`` (0 where missing)."""
        if self.logits is not None:
            return masked_softmax(self.logits.unsqueeze(0).expand(mask.shape[0], -1), mask)
        w = torch.where(mask, self.alphas.unsqueeze(0), torch.zeros((), device=mask.device))
        return w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse ``features`` (modality -> ``[B, d_m]``) with ``mask [B, M]`` -> ``[B, out_dim]``."""
        xs, mask = self.inputs(features, mask)
        h = torch.stack([self.drop(self.proj[n](x)) for n, x in zip(self.inputs.names, xs)], dim=1)
        w = self.weights(mask).to(h.dtype)
        keep_for_explaining(self, last_weights=w)
        return (w.unsqueeze(-1) * h).sum(dim=1)
