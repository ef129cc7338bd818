"""Training and calibration of `polymodal.nn.no_regret.NoRegretClassifier`
(``unimodal_heads: true``).

* `step_loss`: the fused model's loss on the (modality-dropped) batch plus, for every
  modality, its unimodal head's loss on the rows where that modality is really present:
  labels mixed with the fused output on all modalities as a soft target (``head_distill``;
  cross-modal distillation, which made the image head of av-digits-hard better than a
  separately trained unimodal model). The heads have their own parameters and the teacher is
  detached, so these losses never pull on the fused model.
* `ComponentBest`: the validation callback. It scores the fused output (val rows, real mask)
  and each head (val rows that have its modality) every epoch, keeps a copy of each
  component's weights at *its own* best epoch, and returns the mean score to the loop (so
  early stopping waits for the slowest component). `restore()` loads those copies.
* `calibrate`: for every mask pattern, simulate it on the val rows that have all of the
  pattern's modalities; keep the default (a lone modality: its head; else: fused) unless
  the best candidate (fused / ensemble / a present head) beats it by ``SWITCH_Z`` standard
  errors of the paired per-row gain; store the result in the model's ``choice`` buffer.
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from polymodal.nn.no_regret import NoRegretClassifier, default_choice

SWITCH_Z = 2.0  # standard errors by which a candidate must beat the default on val

Loss = Callable[..., torch.Tensor]  # (problem, out, y[, reduction]) -> loss


def score(problem: str, out: np.ndarray, y: np.ndarray, loss: Loss) -> float:
    """Validation score (higher is better): accuracy with the loss breaking ties
    (classification), else minus the loss."""
    if len(y) == 0:
        return float("-inf")
    lv = float(loss(problem, torch.from_numpy(np.ascontiguousarray(out)), torch.from_numpy(y)))
    if problem == "classification":
        return float(np.mean(out.argmax(1) == y)) - 1e-3 * lv
    return -lv


def _teacher(problem: str, out: torch.Tensor) -> torch.Tensor:
    """The fused output as a soft target: log-probabilities (classification), probabilities
    (multilabel) or the standardised value (regression)."""
    out = out.detach()
    if problem == "classification":
        return torch.log_softmax(out, 1)
    return torch.sigmoid(out) if problem == "multilabel" else out[:, 0]


def _distill_loss(problem: str, loss: Loss, head: torch.Tensor, target: torch.Tensor
                  ) -> torch.Tensor:
    """One loss per row (``[B]``) of ``head`` against the teacher ``target``."""
    if problem == "classification":
        return F.kl_div(torch.log_softmax(head, 1), target, log_target=True,
                        reduction="none").sum(1)
    return loss(problem, head, target, "none")


def _masked_mean(per_row: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_row`` over the rows where ``keep`` is true (0 when none is): the same
    value as indexing the kept rows first, without a data-dependent shape, so that the step
    compiles as one graph (`polymodal.train.step`)."""
    w = keep.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp(min=1)


def step_loss(model: NoRegretClassifier, problem: str, loss: Loss, x: Mapping[str, torch.Tensor],
              dropped: torch.Tensor, real: torch.Tensor, y: torch.Tensor,
              distill: float = 0.0) -> torch.Tensor:
    """Fused loss (mask ``dropped``) + each head's loss on its present rows (mask ``real``):
    ``(1 - distill) * label loss + distill * loss to the fused output on all modalities``
    (a detached teacher: cross-modal distillation into the unimodal heads)."""
    total = loss(problem, model.fused(x, dropped), y)
    teacher = _teacher(problem, model.fused(x, real)) if distill > 0 else None
    for j, m in enumerate(model.names):
        h = model.heads[m](x, real)
        part = loss(problem, h, y, "none")
        if teacher is not None:
            part = (1 - distill) * part + distill * _distill_loss(problem, loss, h, teacher)
        total = total + _masked_mean(part, real[:, j])
    return total


def _outputs(model: NoRegretClassifier, x: Mapping[str, np.ndarray], mask: np.ndarray,
             batch: int = 8192) -> np.ndarray:
    """Candidates ``[N, 2 + M, n_out]`` in eval mode."""
    model.eval()
    parts = []
    with torch.inference_mode():
        for s in range(0, len(mask), batch):
            xb = {m: torch.from_numpy(np.ascontiguousarray(v[s:s + batch], np.float32))
                  for m, v in x.items()}
            parts.append(model.candidates(xb, torch.from_numpy(mask[s:s + batch])).numpy())
    return np.concatenate(parts)


class ComponentBest:
    """Validation callback keeping each component's best weights (see module doc)."""

    def __init__(self, model: NoRegretClassifier, problem: str, loss: Loss,
                 x: Mapping[str, np.ndarray], mask: np.ndarray, y: np.ndarray):
        self.model, self.problem, self.loss = model, problem, loss
        self.x, self.mask, self.y = x, np.asarray(mask, bool), y
        self.best: dict[str, tuple[float, dict]] = {}

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"fused": self.model.fused, **{f"head:{m}": h for m, h in self.model.heads.items()}}

    def __call__(self, mdl: torch.nn.Module) -> float:
        cands = _outputs(self.model, self.x, self.mask)
        scores = {"fused": score(self.problem, cands[:, 0], self.y, self.loss)}
        for j, m in enumerate(self.model.names):
            rows = self.mask[:, j]
            scores[f"head:{m}"] = score(self.problem, cands[rows, 2 + j], self.y[rows], self.loss)
        mods = self._modules()
        for k, v in scores.items():
            if k not in self.best or v > self.best[k][0]:
                self.best[k] = (v, copy.deepcopy(mods[k].state_dict()))
        finite = [v for v in scores.values() if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("-inf")

    def restore(self) -> dict[str, float]:
        """Load every component's best weights; returns their best validation scores."""
        mods = self._modules()
        for k, (_, state) in self.best.items():
            mods[k].load_state_dict(state)
        return {k: round(v, 6) for k, (v, _) in self.best.items()}


def row_scores(problem: str, out: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row score (higher is better): correct or not (classification), minus the mean
    per-label BCE (multilabel) or minus the squared error (regression, standardised)."""
    if problem == "classification":
        return (out.argmax(1) == y).astype(np.float64)
    if problem == "multilabel":
        o = torch.from_numpy(np.ascontiguousarray(out))
        bce = F.binary_cross_entropy_with_logits(o, torch.from_numpy(y), reduction="none")
        return -bce.mean(1).double().numpy()
    return -((out[:, 0] - y) ** 2).astype(np.float64)


def significantly_better(candidate: np.ndarray, default: np.ndarray, z: float = SWITCH_Z
                         ) -> bool:
    """Paired test on per-row scores: the mean gain exceeds ``z`` standard errors."""
    d = candidate - default
    if len(d) < 2:
        return False
    se = d.std(ddof=1) / np.sqrt(len(d))
    return bool(d.mean() > z * se and d.mean() > 0)


def calibrate(model: NoRegretClassifier, problem: str, loss: Loss, x: Mapping[str, np.ndarray],
              mask: np.ndarray, y: np.ndarray) -> dict[str, str]:
    """Fill ``model.choice`` from the val split (see module doc); returns `model.choices()`.

    Each pattern starts from `default_choice` and moves to the candidate with the best mean
    per-row score only if that one beats the default significantly (`significantly_better`):
    the val split is small and may come from other speakers / sources than test, so a
    switch on a noise-level gain would be a gamble."""
    mask = np.asarray(mask, bool)
    m = len(model.names)
    choice = default_choice(m)
    for code in range(1, 2 ** m):
        pattern = np.array([bool(code >> j & 1) for j in range(m)])
        rows = mask[:, pattern].all(1)
        if not rows.any():
            continue  # never seen on val: keep the default
        sim = np.broadcast_to(pattern, (int(rows.sum()), m)).copy()
        cands = _outputs(model, {k: v[rows] for k, v in x.items()}, sim)
        allowed = [0, 1] + [2 + j for j in range(m) if pattern[j]]
        per = {c: row_scores(problem, cands[:, c], y[rows]) for c in allowed}
        best = max(allowed, key=lambda c: per[c].mean())
        if best != int(choice[code]) and significantly_better(per[best], per[int(choice[code])]):
            choice[code] = best
    with torch.no_grad():
        model.choice.copy_(choice)
    return model.choices()


__all__ = ["ComponentBest", "SWITCH_Z", "calibrate", "row_scores", "score",
           "significantly_better", "step_loss"]
