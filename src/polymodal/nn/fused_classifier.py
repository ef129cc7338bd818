"""Composed prediction models (TorchMultimodal's ``LateFusion(encoders, fusion, head)`` over a
dict of modalities): every modality is standardised with training statistics, then either fused
and passed to a head (`FusedClassifier`) or, for a unimodal baseline, read by one MLP with a
learned output for rows that miss the modality (`UnimodalClassifier`). Neither class looks at
a method name: the task composes them (`polymodal.tasks.classify.fit.build_classifier`).

``forward(x: {modality: [B, d]}, mask: bool [B, M])`` (mask columns in sorted modality order)
returns logits (classification, multilabel) or standardised values (regression).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn


class Standardized(nn.Module):
    """Per-modality mean / std buffers (``mean_<m>``, ``std_<m>``) and ``standardize``."""

    def __init__(self, dims: Mapping[str, int]):
        super().__init__()
        self.names = sorted(dims)
        for m in self.names:
            self.register_buffer(f"mean_{m}", torch.zeros(dims[m]))
            self.register_buffer(f"std_{m}", torch.ones(dims[m]))

    def set_scaling(self, means: Mapping[str, np.ndarray], stds: Mapping[str, np.ndarray]) -> None:
        """Copy per-modality feature means / standard deviations into the buffers."""
        for m in self.names:
            getattr(self, f"mean_{m}").copy_(torch.from_numpy(np.asarray(means[m], np.float32)))
            getattr(self, f"std_{m}").copy_(torch.from_numpy(np.asarray(stds[m], np.float32)))

    def standardize(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: (x[m] - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")
                for m in self.names if m in x}


class FusedClassifier(Standardized):
    """Standardise → ``fusion`` (any `polymodal.nn.fusion` module) → ``head`` (None when the
    fusion already produces the outputs, e.g. late fusion)."""

    prior = None  # only unimodal baselines learn an output for a missing modality

    def __init__(self, dims: Mapping[str, int], fusion: nn.Module, head: nn.Module | None):
        super().__init__(dims)
        self.fusion, self.head = fusion, head

    def forward(self, x: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        out = self.fusion(self.standardize(x), mask)
        return out if self.head is None else self.head(out)


class UnimodalClassifier(Standardized):
    """Standardise → ``body`` on one ``modality``; rows without it get the learned ``prior``."""

    fusion = None

    def __init__(self, dims: Mapping[str, int], modality: str, body: nn.Module, n_out: int):
        super().__init__(dims)
        self.modality, self.body = modality, body
        self.prior = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        prior = self.prior.unsqueeze(0).expand(mask.shape[0], -1)
        xm = self.standardize(x).get(self.modality)
        if xm is None:
            return prior
        keep = mask[:, self.names.index(self.modality)].unsqueeze(1)
        out = self.body(torch.where(keep, xm, torch.zeros_like(xm)))
        return torch.where(keep, out, prior)
