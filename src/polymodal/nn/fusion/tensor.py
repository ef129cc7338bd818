"""Tensor fusion (Zadeh et al. 2017): the outer product of ``[h_m, 1]`` over all modalities.

Each modality is first projected to a small width ``proj_dim`` (default 16) so the product,
of size ``(proj_dim + 1) ** M``, stays small; a clear `UsageError` is raised at construction if
it would exceed ``max_product`` (default 65,536). A missing modality contributes ``[0, 1]``:
the product then holds exactly the terms of the present modalities (lower-order interactions),
so its garbage features cannot matter.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.core.errors import UsageError
from polymodal.nn.fusion._inputs import ModalityInputs, check_dropout, check_positive, mlp


class TensorFusion(nn.Module):
    """``MLP(flatten(outer_m [relu(Linear_m(x_m)), 1]))`` -> ``[B, out_dim]``.

    Options: ``proj_dim`` (16), ``hidden`` (MLP width, 128), ``dropout`` (0.1),
    ``max_product`` (65536), ``norm`` (per-modality input LayerNorm, True).
    """

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int, proj_dim: int = 16,
                 hidden: int = 128, dropout: float = 0.1, max_product: int = 65536,
                 norm: bool = True):
        super().__init__()
        self.inputs = ModalityInputs(dims, norm=norm)
        self.out_dim = check_positive("out_dim", out_dim)
        proj_dim = check_positive("proj_dim", proj_dim)
        hidden = check_positive("hidden", hidden)
        m = self.inputs.n_modalities
        self.product_size = (proj_dim + 1) ** m
        if self.product_size > check_positive("max_product", max_product):
            largest = int(max_product ** (1.0 / m)) - 1
            hint = f"use proj_dim <= {largest}, " if largest >= 1 else ""
            raise UsageError(f"tensor fusion product ({proj_dim}+1)^{m} = {self.product_size:,} "
                             f"exceeds max_product={max_product:,}; {hint}raise max_product, "
                             f"or use the 'lowrank' fusion")
        drop = check_dropout(dropout)
        self.proj = nn.ModuleDict({n: nn.Sequential(nn.Linear(d, proj_dim), nn.ReLU(),
                                                    nn.Dropout(drop))
                                   for n, d in self.inputs.dims.items()})
        self.net = mlp(self.product_size, hidden, self.out_dim, drop)

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse ``features`` (modality -> ``[B, d_m]``) with ``mask [B, M]`` -> ``[B, out_dim]``."""
        xs, mask = self.inputs(features, mask)
        prod = None
        for i, (n, x) in enumerate(zip(self.inputs.names, xs)):
            h = self.proj[n](x)
            h = torch.where(mask[:, i:i + 1], h, torch.zeros_like(h))
            h = torch.cat([h, torch.ones_like(h[:, :1])], dim=1)
            prod = h if prod is None else (prod.unsqueeze(2) * h.unsqueeze(1)).flatten(1)
        return self.net(prod)
