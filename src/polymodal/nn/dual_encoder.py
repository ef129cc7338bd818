"""The dual encoder of retrieval: one projection head per side into one shared space (or a deep
CCA / autoencoder aligner that maps both sides), plus the loss's learnable scalars."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.nn.heads import build_head
from polymodal.nn.pooling import AttentionPool, masked_mean


def _build_aligner(spec: dict) -> nn.Module:
    """A deep CCA or autoencoder aligner by its registry name (`objectives.registry`)."""
    from polymodal.objectives.registry import ALIGNMENTS

    return ALIGNMENTS.build(spec["kind"], **{k: v for k, v in spec.items() if k != "kind"})


class AlignModel(nn.Module):
    """Two projection heads into one space (+ learnable loss scalars). Inputs are centred with
    the training means. A head spec ``{"kind": "identity"}`` keeps that side's features; a spec
    ``"aligner"`` (deep CCA or autoencoder) maps both sides instead of the heads. A spec
    ``{"members": [spec, ...], "weights": [w, ...]}`` is a blend: each member an AlignModel of
    its own (own means), its unit vectors scaled by ``sqrt(w)`` and concatenated, so a dot
    product is the ``w``-weighted sum of the members' cosines (weights sum to 1: still unit
    vectors)."""

    def __init__(self, specs: dict[str, dict], means: dict[str, torch.Tensor],
                 scalars: dict[str, float]):
        super().__init__()
        self.specs = specs
        self.members = nn.ModuleList(AlignModel(sp, {s: torch.zeros_like(m) for s, m in
                                                     means.items()}, {})
                                     for sp in specs.get("members", ()))
        w = specs.get("weights", ())
        if len(w) != len(self.members) or (w and abs(sum(w) - 1) > 1e-6):
            raise ValueError(f"a blend needs one weight per member, summing to 1: {list(w)}")
        self.register_buffer("blend", torch.tensor([float(v) for v in w]).sqrt(),
                             persistent=False)
        self.heads = nn.ModuleDict({s: (nn.Identity() if sp["kind"] == "identity" else
                                        build_head(**sp)) for s, sp in specs.items()
                                    if s in ("query", "target")})
        self.aligner = _build_aligner(specs["aligner"]) if "aligner" in specs else None
        # ``specs["pools"]``: {side: AttentionPool spec} for a side fed padded frames [N, F, d]
        self.pools = nn.ModuleDict({s: AttentionPool(**sp)
                                    for s, sp in specs.get("pools", {}).items()})
        for s, m in means.items():
            self.register_buffer(f"mean_{s}", m.float())
        self.scalars = nn.ParameterDict({k: nn.Parameter(torch.tensor(float(v)))
                                         for k, v in scalars.items()})

    def embed(self, x: torch.Tensor, side: str, mask: torch.Tensor | None = None
              ) -> torch.Tensor:
        """L2-normalised shared-space vectors for ``side`` ("query" or "target"). ``x``
        ``[N, d]``, or padded frames ``[N, F, d]`` with ``mask`` ``[N, F]``: pooled first by the
        side's `AttentionPool` (the masked mean when it has none)."""
        if len(self.members):
            return torch.cat([b * m.embed(x, side, mask) for b, m in
                              zip(self.blend, self.members)], -1)
        if x.dim() == 3:
            x = self.pools[side](x, mask) if side in self.pools else masked_mean(x, mask)
        if self.aligner is not None:  # deep CCA / autoencoder: both share this interface
            return self.aligner.embed(x, side)
        y = self.heads[side](x - getattr(self, f"mean_{side}"))
        return F.normalize(y, dim=-1)

    def embed_numpy(self, x: np.ndarray, side: str, batch: int = 8192,
                    mask: np.ndarray | None = None) -> np.ndarray:
        self.eval()
        outs = []
        with torch.inference_mode():
            for s in range(0, len(x), batch):
                m = None if mask is None else torch.from_numpy(np.asarray(mask[s:s + batch]))
                outs.append(self.embed(torch.from_numpy(np.asarray(x[s:s + batch], np.float32)),
                                       side, m).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)
