"""Gated fusion: the Gated Multimodal Unit (Arevalo et al. 2017) generalised to M modalities.

``h_m = tanh(W_m x_m)``; gates ``z = softmax_m(W_z [x_1; ...; x_M; mask])`` per output unit;
output ``sum_m z_m * h_m``. With two modalities the softmax over modalities is exactly the
paper's ``z * h_1 + (1 - z) * h_2`` with ``z = sigmoid(...)``. Missing modalities enter the gate
input as zeros plus a 0 in the mask indicator, and get gate 0 (softmax over present only).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.nn.fusion._inputs import (ModalityInputs, check_dropout, check_positive,
                                         keep_for_explaining, masked_softmax)


class GatedFusion(nn.Module):
    """GMU over M modalities -> ``[B, out_dim]`` (values in [-1, 1]).

    Options: ``dropout`` (0.1, on the output), ``norm`` (per-modality input LayerNorm, True).
    After ``forward``: ``last_gates [B, M, out_dim]`` and ``last_weights [B, M]`` (gates averaged
    over units: sums to 1 over present modalities), both detached.
    """

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int, dropout: float = 0.1,
                 norm: bool = True):
        super().__init__()
        self.inputs = ModalityInputs(dims, norm=norm)
        self.out_dim = check_positive("out_dim", out_dim)
        m = self.inputs.n_modalities
        self.proj = nn.ModuleDict({n: nn.Linear(d, self.out_dim) for n, d in self.inputs.dims.items()})
        self.gate = nn.Linear(sum(self.inputs.dims.values()) + m, m * self.out_dim)
        self.drop = nn.Dropout(check_dropout(dropout))
        self.last_gates: torch.Tensor | None = None
        self.last_weights: torch.Tensor | None = None

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse ``features`` (modality -> ``[B, d_m]``) with ``mask [B, M]`` -> ``[B, out_dim]``."""
        xs, mask = self.inputs(features, mask)
        h = torch.stack([torch.tanh(self.proj[n](x)) for n, x in zip(self.inputs.names, xs)], dim=1)
        gate_in = torch.cat(xs + [mask.to(h.dtype)], dim=1)
        z = self.gate(gate_in).view(h.shape[0], h.shape[1], self.out_dim)
        z = masked_softmax(z, mask.unsqueeze(-1), dim=1)
        keep_for_explaining(self, last_gates=z, last_weights=z.detach().mean(dim=-1))
        return self.drop((z * h).sum(dim=1))
