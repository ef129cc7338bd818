"""Fusion of per-modality features for prediction.

Every fusion is an ``nn.Module`` built as ``Fusion(dims, out_dim, **options)`` with
``forward(features: dict[str, Tensor [B, d_m]], mask: Tensor bool [B, M] | None) -> [B, out_dim]``.
Mask columns follow ``sorted(dims)`` (True = present); ``None`` means every modality given in
``features`` is present (a modality left out of ``features`` is missing for all rows).
Features of missing modalities never influence the output.

Each module has ``out_dim`` and ``produces_logits``: False means the output is a feature
vector and the task adds a head; True (``late``) means the output already *is* the
prediction (``out_dim`` = number of classes / outputs) and no head must be added.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from torch import nn

from polymodal.nn.fusion.attention import AttentionFusion
from polymodal.nn.fusion.cross_attention import CrossAttentionFusion
from polymodal.nn.fusion.dropout import modality_dropout
from polymodal.nn.fusion.early import EarlyFusion
from polymodal.nn.fusion.gated import GatedFusion
from polymodal.nn.fusion.late import LateFusion
from polymodal.nn.fusion.lowrank import LowRankFusion
from polymodal.nn.fusion.tensor import TensorFusion
from polymodal.nn.fusion.weighted import WeightedSumFusion
from polymodal.nn.registry import FUSIONS as FUSION_REGISTRY

# name -> class, read-only, derived from the one table in polymodal.nn.registry
FUSIONS: Mapping[str, type[nn.Module]] = MappingProxyType(
    {name: FUSION_REGISTRY.load(name) for name in FUSION_REGISTRY})


def build_fusion(name: str, dims: Mapping[str, int], out_dim: int, **options: Any) -> nn.Module:
    """Build the fusion called ``name`` (`polymodal list fusions`) for ``dims`` -> ``out_dim``.

    Unknown names and unknown / bad options raise `UsageError` (with a did-you-mean).
    """
    return FUSION_REGISTRY.build(name, dims, out_dim, **options)


__all__ = ["FUSIONS", "FUSION_REGISTRY", "build_fusion", "modality_dropout", "EarlyFusion",
           "WeightedSumFusion", "LateFusion", "AttentionFusion", "GatedFusion", "TensorFusion",
           "LowRankFusion", "CrossAttentionFusion"]
