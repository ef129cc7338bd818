"""Pooled clip vectors of a retrieval side (``video_pool``): the embedding of a side that carries
padded frames (`data.frame_bags`) goes through the model's `AttentionPool`; the training inputs
are those padded frames + mask."""
from __future__ import annotations

import numpy as np
import torch

from polymodal.nn.dual_encoder import AlignModel
from polymodal.tasks.retrieval.data import Side


def embed_side(model: AlignModel, side: Side, which: str) -> np.ndarray:
    """Shared-space vectors of a side: its padded frames through the pool when it has them."""
    if side.frames is not None:
        return model.embed_numpy(side.frames, which, batch=1024, mask=side.mask)
    return model.embed_numpy(side.x, which)


def bags(side: Side, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training inputs of a side: ``x`` [M', d] as it is, or (attention pooling) the side's
    padded frames [M, F, d] + mask, with the rows ``x`` has beyond the side's M vectors (the
    single frames of --frame-pairs) appended as one-frame clips."""
    if side.frames is None:
        return x, None
    frames, mask = torch.from_numpy(side.frames), torch.from_numpy(side.mask)
    extra = x[len(side.x):]
    if len(extra):
        one = torch.zeros((len(extra),) + frames.shape[1:], dtype=frames.dtype)
        one[:, 0] = extra
        solo = torch.zeros((len(extra), mask.shape[1]), dtype=torch.bool)
        solo[:, 0] = True
        frames, mask = torch.cat([frames, one]), torch.cat([mask, solo])
    return frames, mask
