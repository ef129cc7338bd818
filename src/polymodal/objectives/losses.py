"""Alignment losses: pure functions on paired embedding batches.

Every loss takes ``a [B, d]`` and ``b [B, d]`` where row ``i`` of ``a`` pairs with row ``i`` of
``b`` and returns a scalar tensor (mean over the batch). Learnable scalars (temperature, bias)
live in the caller and are passed in, open_clip style. The contrastive losses accept optional
``pair_ids [B]``: rows with equal ids are positives of each other (several captions of the same
image, the same caption group), so duplicates in a batch are never pushed apart as negatives.

Names live in `polymodal.objectives.registry.ALIGNMENTS` (`get_loss(name)`, `loss_names()`);
``LOSS_PARAMS`` gives the initial values of the learnable scalars each loss expects as keyword
arguments (``logit_scale``, ``logit_bias``).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F

from polymodal.core.errors import UsageError

MAX_LOGIT_SCALE = math.log(100.0)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape != b.shape:
        raise UsageError(f"paired embeddings must both be [B, d] with the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 1:
        raise UsageError("empty batch")


def positive_mask(batch: int, pair_ids: torch.Tensor | None = None,
                  device: torch.device | None = None) -> torch.Tensor:
    """Bool ``[B, B]``: ``[i, j]`` true when ``a_i`` and ``b_j`` are a positive pair.

    Without ``pair_ids`` only the diagonal is positive; with them, every pair of rows that share
    an id is."""
    if pair_ids is None:
        return torch.eye(batch, dtype=torch.bool, device=device)
    ids = torch.as_tensor(pair_ids, device=device)
    if ids.shape != (batch,):
        raise UsageError(f"pair_ids must have shape [{batch}], got {tuple(ids.shape)}")
    return ids[:, None] == ids[None, :]


def _scale(logit_scale: torch.Tensor | float) -> torch.Tensor:
    s = torch.as_tensor(logit_scale, dtype=torch.float32)
    return s.clamp(max=MAX_LOGIT_SCALE).exp()


def infonce_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float,
                 pair_ids: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) loss.

    ``logits = exp(min(logit_scale, ln 100)) * a @ b.T`` (``a``, ``b`` L2-normalised when
    ``normalize``); ``loss = (CE(logits, diag) + CE(logits.T, diag)) / 2``, which is open_clip's
    ``ClipLoss``. With ``pair_ids`` the other positives of a row (same id, off the diagonal) are
    removed from its softmax denominator, so duplicates are neither targets nor negatives:
    ``l_i = -log(e^{z_ii} / sum_{j: j = i or id_j != id_i} e^{z_ij})``.
    Refs: van den Oord et al. 2018 (CPC); Radford et al. 2021 (CLIP).
    """
    _check_pair(a, b)
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = _scale(logit_scale).to(a) * a @ b.T
    target = torch.arange(a.shape[0], device=a.device)
    if pair_ids is not None:
        pos = positive_mask(a.shape[0], pair_ids, a.device)
        others = pos & ~torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
        logits = logits.masked_fill(others, float("-inf"))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def siglip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float,
                logit_bias: torch.Tensor | float, pair_ids: torch.Tensor | None = None,
                normalize: bool = True) -> torch.Tensor:
    """Pairwise sigmoid loss (SigLIP).

    ``z_ij = exp(logit_scale) * <a_i, b_j> + logit_bias``, ``y_ij = +1`` for positives, ``-1``
    otherwise; ``loss = -(1/B) sum_ij log sigmoid(y_ij z_ij)``.
    Usual initial values: ``logit_scale = ln 10``, ``logit_bias = -10``.
    Ref: Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training".
    """
    _check_pair(a, b)
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    bias = torch.as_tensor(logit_bias, dtype=torch.float32).to(a)
    logits = _scale(logit_scale).to(a) * a @ b.T + bias
    labels = positive_mask(a.shape[0], pair_ids, a.device).to(a.dtype) * 2 - 1
    return -F.logsigmoid(labels * logits).sum() / a.shape[0]


def triplet_loss(a: torch.Tensor, b: torch.Tensor, margin: float = 0.2, mining: str = "hardest",
                 pair_ids: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
    """Bidirectional hinge triplet loss on cosine similarity ``s = a @ b.T``.

    For anchor ``a_i`` with positive ``b_i`` and in-batch negatives ``b_j``:
    ``l_i = [margin + s_ij - s_ii]_+`` (and symmetrically with ``b`` as anchor); the loss is the
    mean over anchors of both directions. ``mining``:
    ``"hardest"``: the hardest negative per anchor (VSE++, Faghri et al. 2018);
    ``"semihard"``: the most similar negative that is still less similar than the positive, or the
    least similar negative when there is none (FaceNet, Schroff et al. 2015);
    ``"all"``: mean over all negatives (VSE0 / Kiros et al. 2014).
    """
    _check_pair(a, b)
    if mining not in ("hardest", "semihard", "all"):
        raise UsageError(f"unknown triplet mining {mining!r}: use hardest, semihard or all")
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    sim = a @ b.T
    pos = positive_mask(a.shape[0], pair_ids, a.device)
    d = sim.diagonal()
    return (_triplet_dir(sim, d, pos, margin, mining)
            + _triplet_dir(sim.T, d, pos.T, margin, mining)) / 2


def _triplet_dir(sim: torch.Tensor, d: torch.Tensor, pos: torch.Tensor, margin: float,
                 mining: str) -> torch.Tensor:
    """Rows are anchors, columns candidates; ``d[i]`` the anchor's positive similarity."""
    neg = ~pos
    has_neg = neg.any(1)
    if not has_neg.any():
        return sim.sum() * 0.0
    cost = (margin + sim - d[:, None]).clamp(min=0)
    if mining == "all":
        per = (cost * neg).sum(1) / neg.sum(1).clamp(min=1)
        return per[has_neg].mean()
    if mining == "hardest":
        s_neg = sim.masked_fill(~neg, float("-inf")).amax(1)
    else:  # semihard
        below = neg & (sim < d[:, None])
        semi = sim.masked_fill(~below, float("-inf")).amax(1)
        easiest = sim.masked_fill(~neg, float("inf")).amin(1)
        s_neg = torch.where(below.any(1), semi, easiest)
    per = (margin + s_neg - d).clamp(min=0)
    return per[has_neg].mean()


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, margin: float = 1.0,
                     pair_ids: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
    """Pairwise contrastive loss with a margin over all in-batch pairs.

    With Euclidean distance ``D_ij = ||a_i - b_j||`` (on unit vectors when ``normalize``):
    ``loss = mean_{positives} D^2 + mean_{negatives} [margin - D]_+^2`` (positive and negative
    terms averaged separately so the B^2 - B negatives do not swamp the B positives).
    Ref: Hadsell, Chopra & LeCun 2006, "Dimensionality Reduction by Learning an Invariant Mapping".
    """
    _check_pair(a, b)
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    dist = torch.cdist(a, b).clamp(min=1e-12)
    pos = positive_mask(a.shape[0], pair_ids, a.device)
    loss = dist[pos].pow(2).mean()
    if (~pos).any():
        loss = loss + (margin - dist[~pos]).clamp(min=0).pow(2).mean()
    return loss


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error ``mean_ij (pred_ij - target_ij)^2`` (regress one modality on the other)."""
    _check_pair(pred, target)
    return F.mse_loss(pred, target)


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i (1 - cos(pred_i, target_i))``: direction-only regression onto the target."""
    _check_pair(pred, target)
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


LossFn = Callable[..., torch.Tensor]

# Learnable scalars each loss expects as keyword arguments, with their initial values.
LOSS_PARAMS: dict[str, dict[str, float]] = {
    "infonce": {"logit_scale": math.log(1 / 0.07)},
    "siglip": {"logit_scale": math.log(10.0), "logit_bias": -10.0},
}

def loss_names() -> list[str]:
    """The alignment methods that are loss functions (`polymodal.objectives.registry`)."""
    from polymodal.objectives.registry import ALIGNMENTS

    return [n for n, _, meta in ALIGNMENTS.rows() if meta.get("kind") in ("loss", "regression")]


def get_loss(name: str) -> LossFn:
    """The loss function called ``name`` (with its registry preset, e.g. semi-hard mining); a
    `UsageError` listing the known names otherwise."""
    from polymodal.objectives.registry import ALIGNMENTS

    if name not in loss_names():
        raise UsageError(f"unknown loss {name!r}: choose one of {', '.join(loss_names())}")
    preset = ALIGNMENTS.get(name).preset
    fn = ALIGNMENTS.load(name)
    return functools.partial(fn, **preset) if preset else fn


def loss_params(name: str) -> dict[str, float]:
    """Initial values of the learnable scalars (``logit_scale``, ``logit_bias``) of loss ``name``."""
    get_loss(name)
    return dict(LOSS_PARAMS.get(name, {}))
