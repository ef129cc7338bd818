"""No-regret fusion: a fused model plus one unimodal head per modality, mixed per mask pattern.

`NoRegretClassifier` holds a `FusedClassifier` (``fused``) and a `UnimodalClassifier` per
modality (``heads``), each trained with its own loss on the same batches (the task does that,
`polymodal.tasks.classify.no_regret`). At inference each row's *mask pattern* (which modalities
are present) picks one candidate from a buffer ``choice [2^M]`` that the task fills on the
validation split after training:

* candidate 0: the fused output;
* candidate 1: the ensemble, the mean of the log-probabilities (classification), logits
  (multilabel) or values (regression) of the fused output and the present modalities' heads;
* candidate 1 + j: the head of modality ``names[j]`` (only ever chosen when it is present).

By default (`default_choice`) a lone present modality uses its own head and every other
pattern the fused output; calibration moves a pattern to another candidate only when that
one is significantly better on validation. So with one modality missing the model falls back
to the present modality's own head, and with all present it keeps the fused output.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from polymodal.nn.fused_classifier import FusedClassifier, UnimodalClassifier

FUSED, ENSEMBLE = 0, 1


def pattern_codes(mask: torch.Tensor) -> torch.Tensor:
    """Integer code ``sum_j mask[:, j] << j`` of each row's present modalities ``[B]``."""
    weights = 2 ** torch.arange(mask.shape[1], device=mask.device)
    return (mask.long() * weights).sum(1)


def default_choice(m: int) -> torch.Tensor:
    """The prior choice ``[2^m]`` per pattern: a lone present modality uses its own head,
    every other pattern the fused output."""
    choice = torch.full((2 ** m,), FUSED, dtype=torch.long)
    for j in range(m):
        choice[1 << j] = 2 + j
    return choice


class NoRegretClassifier(nn.Module):
    """``fused`` + ``heads`` (one `UnimodalClassifier` per modality); see the module doc."""

    prior = None  # the heads' priors are never used: a head is chosen only when present

    def __init__(self, fused: FusedClassifier, heads: Mapping[str, UnimodalClassifier],
                 problem: str = "classification"):
        super().__init__()
        self.names = list(fused.names)
        if sorted(heads) != self.names:
            raise ValueError(f"heads {sorted(heads)} must match modalities {self.names}")
        self.fused = fused
        self.heads = nn.ModuleDict({m: heads[m] for m in self.names})
        self.problem = problem
        self.register_buffer("choice", default_choice(len(self.names)))

    @property
    def fusion(self) -> nn.Module:
        """The fused model's fusion (attention / gate weights are read from it)."""
        return self.fused.fusion

    def set_scaling(self, means: Mapping[str, np.ndarray], stds: Mapping[str, np.ndarray]
                    ) -> None:
        self.fused.set_scaling(means, stds)
        for h in self.heads.values():
            h.set_scaling(means, stds)

    def components(self, x: Mapping[str, torch.Tensor], mask: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The fused output and every head's output (rows missing a head's modality get its
        prior; callers only use a head where its modality is present)."""
        return self.fused(x, mask), {m: h(x, mask) for m, h in self.heads.items()}

    def _as_scores(self, out: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(out, 1) if self.problem == "classification" else out

    def candidates(self, x: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """All candidates ``[B, 2 + M, n_out]`` (order: fused, ensemble, heads)."""
        fused, heads = self.components(x, mask)
        hs = torch.stack([heads[m] for m in self.names], 1)
        present = mask.to(fused.dtype).unsqueeze(-1)
        total = self._as_scores(fused) + (self._as_scores(hs) * present).sum(1)
        ens = total / (1.0 + present.sum(1))
        return torch.cat([fused.unsqueeze(1), ens.unsqueeze(1), hs], 1)

    def forward(self, x: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        mask = mask != 0
        cands = self.candidates(x, mask)
        pick = self.choice[pattern_codes(mask)]
        return cands[torch.arange(len(pick), device=pick.device), pick]

    def candidate_names(self) -> list[str]:
        return ["fused", "ensemble"] + [f"unimodal:{m}" for m in self.names]

    def choices(self) -> dict[str, str]:
        """``{"audio+image": "fused", "image": "unimodal:image", ...}`` for every non-empty
        pattern (modalities joined by '+')."""
        names = self.candidate_names()
        out = {}
        for code in range(1, len(self.choice)):
            present = [m for j, m in enumerate(self.names) if code >> j & 1]
            out["+".join(present)] = names[int(self.choice[code])]
        return out


__all__ = ["ENSEMBLE", "FUSED", "NoRegretClassifier", "default_choice", "pattern_codes"]
