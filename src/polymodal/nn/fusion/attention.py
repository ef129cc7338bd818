"""Attention fusion: a softmax over modalities decides how much each one counts, per row.

Each modality is projected to ``out_dim``; a shared scorer ``v^T tanh(W h_m) + b_m`` gives one
score per modality; scores of missing modalities are excluded from the softmax. The weights
are kept in ``last_weights`` (``[B, M]``) after each forward, for explanations.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.nn.fusion._inputs import (ModalityInputs, check_dropout, check_positive,
                                         keep_for_explaining, masked_softmax)


class AttentionFusion(nn.Module):
    """``sum_m a_m * h_m`` with ``h_m = tanh(Linear_m(x_m))`` and ``a = softmax_present(score(h))``.

    Options: ``attn_dim`` (scorer width, 64), ``dropout`` (0.1), ``norm`` (input LayerNorm, True).
    ``last_weights [B, M]`` (detached) sums to 1 over present modalities, 0 for missing ones
    (all 0 for a row with no modality present).
    """

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int, attn_dim: int = 64,
                 dropout: float = 0.1, norm: bool = True):
        super().__init__()
        self.inputs = ModalityInputs(dims, norm=norm)
        self.out_dim = check_positive("out_dim", out_dim)
        attn_dim = check_positive("attn_dim", attn_dim)
        self.proj = nn.ModuleDict({n: nn.Linear(d, self.out_dim) for n, d in self.inputs.dims.items()})
        self.score = nn.Sequential(nn.Linear(self.out_dim, attn_dim), nn.Tanh(),
                                   nn.Linear(attn_dim, 1, bias=False))
        self.modality_bias = nn.Parameter(torch.zeros(self.inputs.n_modalities))
        self.drop = nn.Dropout(check_dropout(dropout))
        self.out = nn.Linear(self.out_dim, self.out_dim)
        self.last_weights: torch.Tensor | None = None

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse ``features`` (modality -> ``[B, d_m]``) with ``mask [B, M]`` -> ``[B, out_dim]``."""
        xs, mask = self.inputs(features, mask)
        h = torch.stack([torch.tanh(self.proj[n](x)) for n, x in zip(self.inputs.names, xs)], dim=1)
        scores = self.score(h).squeeze(-1) + self.modality_bias
        w = masked_softmax(scores, mask)
        keep_for_explaining(self, last_weights=w)
        fused = (w.unsqueeze(-1) * h).sum(dim=1)
        return self.out(self.drop(fused))
