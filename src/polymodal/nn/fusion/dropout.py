"""Modality dropout: at training time, randomly hide present modalities (never all of a row)."""
from __future__ import annotations

import torch

from polymodal.core.errors import UsageError


def modality_dropout(mask: torch.Tensor, p: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a copy of bool ``mask [B, M]`` where each present modality is dropped with prob ``p``.

    A row that had at least one modality present keeps at least one (chosen uniformly among
    its present ones when all would be dropped); rows with none present stay empty.
    ``p = 0`` returns the mask unchanged.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise UsageError(f"modality dropout p must be in [0, 1], got {p!r}")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise UsageError("modality dropout expects a [batch, modalities] mask tensor")
    mask = mask != 0
    if p == 0 or mask.numel() == 0:
        return mask.clone()
    gen_device = generator.device if generator is not None else mask.device
    u = torch.rand(mask.shape, generator=generator, device=gen_device).to(mask.device)
    kept = mask & (u >= p)
    emptied = mask.any(dim=1) & ~kept.any(dim=1)
    if bool(emptied.any()):
        pick = torch.rand(mask.shape, generator=generator, device=gen_device).to(mask.device)
        pick = pick.masked_fill(~mask, -1.0).argmax(dim=1)
        rescue = torch.zeros_like(mask)
        rescue[torch.arange(mask.shape[0], device=mask.device), pick] = True
        kept = kept | (rescue & emptied.unsqueeze(1))
    return kept
