"""Low-rank multimodal fusion (LMF, Liu et al. 2018).

The tensor-fusion weight is factorised into rank-``r`` modality-specific factors:
``f = sum_r w_r * prod_m ([h_m, 1] @ W_m^(r)) + b``, linear in each modality and never
materialising the outer product. A missing modality uses ``h_m = 0``, so its factor reduces
to the learned row ``W_m[-1]`` (a learned "missing" term) and its features cannot matter.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.nn.fusion._inputs import ModalityInputs, check_dropout, check_positive


class LowRankFusion(nn.Module):
    """LMF with rank ``rank`` over per-modality sub-networks -> ``[B, out_dim]``.

    Options: ``rank`` (4), ``proj_dim`` (sub-network width, 64), ``dropout`` (0.1),
    ``norm`` (per-modality input LayerNorm, True).
    """

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int, rank: int = 4,
                 proj_dim: int = 64, dropout: float = 0.1, norm: bool = True):
        super().__init__()
        self.inputs = ModalityInputs(dims, norm=norm)
        self.out_dim = check_positive("out_dim", out_dim)
        self.rank = check_positive("rank", rank)
        proj_dim = check_positive("proj_dim", proj_dim)
        drop = check_dropout(dropout)
        self.proj = nn.ModuleDict({n: nn.Sequential(nn.Linear(d, proj_dim), nn.ReLU(),
                                                    nn.Dropout(drop))
                                   for n, d in self.inputs.dims.items()})
        self.factors = nn.ParameterDict()
        for n in self.inputs.names:
            w = torch.empty(self.rank, proj_dim + 1, self.out_dim)
            nn.init.xavier_normal_(w)
            self.factors[n] = nn.Parameter(w)
        self.rank_weights = nn.Parameter(torch.empty(1, self.rank))
        nn.init.xavier_normal_(self.rank_weights)
        self.bias = nn.Parameter(torch.zeros(self.out_dim))

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse ``features`` (modality -> ``[B, d_m]``) with ``mask [B, M]`` -> ``[B, out_dim]``."""
        xs, mask = self.inputs(features, mask)
        fused = None
        for i, (n, x) in enumerate(zip(self.inputs.names, xs)):
            h = self.proj[n](x)
            h = torch.where(mask[:, i:i + 1], h, torch.zeros_like(h))
            h = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
            f = torch.einsum("bp,rpo->bro", h, self.factors[n])
            fused = f if fused is None else fused * f
        return torch.einsum("xr,bro->bo", self.rank_weights, fused) + self.bias
