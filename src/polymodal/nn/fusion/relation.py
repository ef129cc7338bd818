"""A Relation Network head (Santoro et al. 2017) anchored on the object the question names.

`SpatialInputs` gives the ``map_size`` x ``map_size`` cells of a CNN stem (trained end to end,
coordinate channels appended) and the question vector ``q``. Each cell is an "object" ``o_j``.
A full RN scores every pair of cells (``n²``); this head first attends over the cells with the
question to find the anchor ``a`` (softmax of ``MLP([o_j, q])``; the anchor is the weighted
mean of the cells, so it holds the named object's features and position), then relates it to
every cell: ``h_j = g([o_j, a, q, r_j])`` (the first layer split per part, so pairs cost one
MLP each), where ``r_j`` is the cell's position relative to the anchor's and its squared
distance ("closest" / "furthest" questions are about it). A cell's position is its centre (the
coordinate channels) moved by a learned offset of at most half a cell, ``tanh(W o_j)``: where
in its cell the object lies (zero at the start; on sort-of-CLEVR it lifted "closest" in 3
seeds and "count" in 1 of 3, docs/RESULTS.md §10); the anchor's is the attention-weighted mean
of them. The relations are aggregated twice, ``sum_j h_j`` (counting) and an
attention-weighted mean with weights ``softmax_j(w · h_j)`` (arg-min / arg-max questions such
as "closest"), and ``f([sums, a, q])`` gives the ``[B, out_dim]`` output (the task adds the
head).
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.nn.fusion._inputs import check_positive
from polymodal.nn.fusion._spatial import SpatialInputs


class RelationFusion(nn.Module):
    """Anchored RN. Options: ``hidden`` (g / f width, 128), ``cond_dim`` (question
    projection, 128), ``channels`` (stem channels, 32), ``map_size`` (stem output side, 5),
    ``image`` (the pixel modality, "image")."""

    produces_logits = False

    def __init__(self, dims: Mapping[str, int], out_dim: int, hidden: int = 128,
                 cond_dim: int = 128, channels: int = 32, map_size: int = 5,
                 image: str = "image"):
        super().__init__()
        self.inputs = SpatialInputs(dims, image, channels, map_size)
        self.out_dim = check_positive("out_dim", out_dim)
        hidden, cond_dim = check_positive("hidden", hidden), check_positive("cond_dim", cond_dim)
        c = self.inputs.channels
        self.q = self.inputs.question_projection(cond_dim)
        self.att = nn.Sequential(nn.Linear(c + cond_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.g_obj, self.g_anchor = nn.Linear(c, hidden), nn.Linear(c, hidden, bias=False)
        self.g_q = nn.Linear(cond_dim, hidden, bias=False)
        self.g_rel = nn.Linear(3, hidden, bias=False)
        self.offset = nn.Linear(c, 2)  # where in its cell the cell's object lies
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.half_cell = 1.0 / max(self.inputs.side - 1, 1)  # coordinates span [-1, 1]
        self.g = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                               nn.Linear(hidden, hidden), nn.ReLU())
        self.score = nn.Linear(hidden, 1)
        self.f = nn.Sequential(nn.Linear(2 * hidden + c + cond_dim, hidden), nn.ReLU(),
                               nn.Linear(hidden, out_dim))

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        fmap, cond = self.inputs(features, mask)
        q = self.q(cond)
        objs = fmap.flatten(2).transpose(1, 2)  # [B, n, c]
        n = objs.shape[1]
        qn = q.unsqueeze(1).expand(-1, n, -1)
        w = torch.softmax(self.att(torch.cat([objs, qn], -1)).squeeze(-1), 1)
        anchor = (w.unsqueeze(-1) * objs).sum(1)  # [B, c]
        pos = objs[..., -2:] + self.half_cell * torch.tanh(self.offset(objs))  # [B, n, 2]
        rel = pos - (w.unsqueeze(-1) * pos).sum(1, keepdim=True)
        rel = torch.cat([rel, (rel * rel).sum(-1, keepdim=True)], -1)
        h = self.g(self.g_obj(objs) + self.g_rel(rel)
                   + (self.g_anchor(anchor) + self.g_q(q)).unsqueeze(1))
        a2 = torch.softmax(self.score(h).squeeze(-1), 1)
        pooled = torch.cat([h.sum(1) / n, (a2.unsqueeze(-1) * h).sum(1), anchor, q], -1)
        return self.f(pooled)


__all__ = ["RelationFusion"]
