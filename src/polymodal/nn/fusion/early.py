"""Early fusion: concatenate the modality features, then an MLP.

A missing modality's features are replaced by a learned "missing" embedding of the same width
(one per modality), so the MLP always sees a full-width input and never the garbage rows.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.nn.fusion._inputs import (ModalityInputs, check_dropout, check_positive,
                                      fill_missing, mlp)


class EarlyFusion(nn.Module):
    """``concat([x_m or missing_m for m]) -> Linear -> ReLU -> Dropout -> Linear -> [B, out_dim]``.

    Options: ``hidden`` (MLP width, default 256), ``dropout`` (0.1), ``norm`` (per-modality
    LayerNorm on the inputs, True).
    """

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int, hidden: int = 256,
                 dropout: float = 0.1, norm: bool = True):
        super().__init__()
        self.inputs = ModalityInputs(dims, norm=norm)
        self.out_dim = check_positive("out_dim", out_dim)
        hidden = check_positive("hidden", hidden)
        self.missing = nn.ParameterDict({
            n: nn.Parameter(torch.zeros(d)) for n, d in self.inputs.dims.items()
        })
        self.net = mlp(sum(self.inputs.dims.values()), hidden, self.out_dim, check_dropout(dropout))

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse ``features`` (modality -> ``[B, d_m]``) with ``mask [B, M]`` -> ``[B, out_dim]``."""
        xs, mask = self.inputs(features, mask)
        parts = [fill_missing(x, mask[:, i:i + 1], self.missing[n])
                 for i, (n, x) in enumerate(zip(self.inputs.names, xs))]
        return self.net(torch.cat(parts, dim=1))
