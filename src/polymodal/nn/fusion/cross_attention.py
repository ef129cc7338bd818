"""Cross-attention fusion: a small transformer encoder over one token per modality.

Token ``t_m = Linear_m(x_m) + type_m`` (learned modality-type embedding), optionally preceded
by a learned CLS token. Missing modalities are excluded through the key padding mask, so no
token attends to them; the output is the CLS token (or the mean of present tokens) projected
to ``out_dim``. The last layer's attention (averaged over heads) is kept for explanations.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.core.errors import UsageError
from polymodal.nn.fusion._inputs import (ModalityInputs, check_dropout, check_positive,
                                         keep_for_explaining, masked_mean)


class _Block(nn.Module):
    """Pre-norm transformer encoder layer that returns its attention weights."""

    def __init__(self, d_model: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, T, D]``, ``pad [B, T]`` (True = ignore) -> (``[B, T, D]``, attn ``[B, T, T]``)."""
        y = self.ln1(x)
        a, w = self.attn(y, y, y, key_padding_mask=pad, need_weights=True,
                         average_attn_weights=True)
        x = x + self.drop(a)
        x = x + self.drop(self.ff(self.ln2(x)))
        return x, w


class CrossAttentionFusion(nn.Module):
    """Transformer encoder over modality tokens -> ``[B, out_dim]``.

    Options: ``d_model`` (64), ``heads`` (4), ``layers`` (2), ``ff_dim`` (2 * d_model),
    ``dropout`` (0.1), ``cls_token`` (True; False = masked mean pooling), ``norm`` (input
    LayerNorm, True). After ``forward``: ``last_attention [B, T, T]`` (last layer, tokens =
    [CLS] + modalities in sorted order) and ``last_weights [B, M]``: the attention the pooled
    output pays to each modality token (CLS row renormalised over modality tokens, or the mean
    over present query tokens), summing to 1 over present modalities, 0 for missing ones.
    Read them in eval mode: in training mode they include attention dropout.
    """

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int, d_model: int = 64, heads: int = 4,
                 layers: int = 2, ff_dim: int | None = None, dropout: float = 0.1,
                 cls_token: bool = True, norm: bool = True):
        super().__init__()
        self.inputs = ModalityInputs(dims, norm=norm)
        self.out_dim = check_positive("out_dim", out_dim)
        d_model = check_positive("d_model", d_model)
        heads = check_positive("heads", heads)
        if d_model % heads:
            raise UsageError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        ff_dim = check_positive("ff_dim", ff_dim if ff_dim is not None else 2 * d_model)
        drop = check_dropout(dropout)
        m = self.inputs.n_modalities
        self.proj = nn.ModuleDict({n: nn.Linear(d, d_model) for n, d in self.inputs.dims.items()})
        self.type_emb = nn.Parameter(torch.randn(m, d_model) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if cls_token else None
        self.blocks = nn.ModuleList([_Block(d_model, heads, ff_dim, drop)
                                     for _ in range(check_positive("layers", layers))])
        self.ln = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, self.out_dim)
        self.last_attention: torch.Tensor | None = None
        self.last_weights: torch.Tensor | None = None

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse ``features`` (modality -> ``[B, d_m]``) with ``mask [B, M]`` -> ``[B, out_dim]``."""
        xs, mask = self.inputs(features, mask)
        tokens = torch.stack([self.proj[n](x) for n, x in zip(self.inputs.names, xs)], dim=1)
        tokens = tokens + self.type_emb.unsqueeze(0)
        # rows with no modality at all: let them attend (to input-independent tokens) to avoid NaN
        pad = ~mask & mask.any(dim=1, keepdim=True)
        if self.cls is not None:
            cls = self.cls.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([cls, tokens], dim=1)
            pad = torch.cat([torch.zeros_like(pad[:, :1]), ~mask], dim=1)
        x = tokens
        attn = None
        for block in self.blocks:
            x, attn = block(x, pad)
        x = self.ln(x)
        keep_for_explaining(self, last_attention=attn)
        if self.cls is not None:
            w = attn[:, 0, 1:]
            w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
            pooled = x[:, 0]
        else:
            fm = mask.to(attn.dtype)
            w = (attn * fm.unsqueeze(-1)).sum(dim=1) / fm.sum(1, keepdim=True).clamp_min(1.0)
            pooled = masked_mean(x, mask)
        keep_for_explaining(self, last_weights=w)
        return self.out(pooled)
