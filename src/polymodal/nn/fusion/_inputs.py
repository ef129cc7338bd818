"""Shared input handling for every fusion (used by composition, not inheritance).

`ModalityInputs` checks the ``features`` dict and the ``mask`` against the modality dims,
optionally layer-normalises each modality, and returns one tensor per modality (in
``sorted(dims)`` order) whose rows for *missing* modalities are exactly zero. Because missing
rows are replaced with ``torch.where`` (not multiplied by 0), NaN / inf garbage in a missing
row can never leak into the output or its gradient.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from polymodal.core.errors import UsageError


def check_dims(dims: Mapping[str, int]) -> list[str]:
    """Validate ``dims`` (modality name -> feature width) and return the sorted names."""
    if not isinstance(dims, Mapping):
        raise UsageError(f"fusion dims must be a dict of modality -> width, got {type(dims).__name__}")
    if len(dims) < 2:
        raise UsageError(f"fusion needs at least 2 modalities, got {sorted(dims)}")
    for name, d in dims.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"modality names must be non-empty strings, got {name!r}")
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise UsageError(f"modality '{name}': width must be a positive integer, got {d!r}")
    return sorted(dims)


def check_positive(name: str, value: object) -> int:
    """Return ``value`` if it is a positive int, else raise a `UsageError` naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"fusion option '{name}' must be a positive integer, got {value!r}")
    return value


def check_dropout(value: object) -> float:
    """Return ``value`` if it is a probability in [0, 1), else raise a `UsageError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UsageError(f"fusion option 'dropout' must be in [0, 1), got {value!r}")
    return float(value)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` restricted to ``mask``; masked entries get weight 0.

    Rows with nothing present get all-zero weights (never NaN). ``mask`` broadcasts to scores.
    """
    mask = mask.expand_as(scores)
    filled = scores.masked_fill(~mask, float("-inf"))
    any_present = mask.any(dim=dim, keepdim=True)
    filled = torch.where(any_present, filled, torch.zeros_like(filled))
    weights = torch.softmax(filled, dim=dim)
    return torch.where(mask, weights, torch.zeros_like(weights))


def masked_mean(stacked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``stacked [B, M, D]`` over the present modalities of ``mask [B, M]`` (0 if none)."""
    m = mask.to(stacked.dtype).unsqueeze(-1)
    total = torch.where(mask.unsqueeze(-1), stacked, torch.zeros_like(stacked)).sum(dim=1)
    return total / m.sum(dim=1).clamp_min(1.0)


class ModalityInputs(nn.Module):
    """Validate and normalise per-modality inputs; zero the rows of missing modalities.

    ``features`` may omit a modality entirely: it is then missing for every row. A modality
    whose rows contain non-finite values is *not* auto-masked: pass the mask explicitly.
    """

    def __init__(self, dims: Mapping[str, int], norm: bool = True):
        super().__init__()
        self.names: list[str] = check_dims(dims)
        self.dims: dict[str, int] = {n: int(dims[n]) for n in self.names}
        self.norms = nn.ModuleDict({
            n: (nn.LayerNorm(self.dims[n]) if norm and self.dims[n] > 1 else nn.Identity())
            for n in self.names
        })
        # empty buffer that follows .to(dtype/device): inputs are cast to the module's dtype
        self.register_buffer("_probe", torch.zeros(0), persistent=False)

    @property
    def n_modalities(self) -> int:
        """Number of modalities M."""
        return len(self.names)

    def forward(self, features: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return ``(xs, mask)``: ``xs[m]`` is ``[B, d_m]`` (zero rows where missing), mask ``[B, M]``."""
        if not isinstance(features, Mapping):
            raise UsageError(f"fusion features must be a dict of modality -> tensor, "
                             f"got {type(features).__name__}")
        unknown = sorted(set(features) - set(self.names))
        if unknown:
            raise UsageError(f"unknown modalities {unknown}; this fusion was built for {self.names}")
        batch = None
        ref = None
        for name in self.names:
            x = features.get(name)
            if x is None:
                continue
            if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.dims[name]:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise UsageError(f"modality '{name}': expected features of shape "
                                 f"[batch, {self.dims[name]}], got {shape}")
            if batch is not None and x.shape[0] != batch:
                raise UsageError(f"modality '{name}': batch size {x.shape[0]} differs from {batch}")
            batch, ref = x.shape[0], x
        if ref is None:
            raise UsageError(f"no features given; expected some of {self.names}")
        given = [features.get(n) is not None for n in self.names]
        absent = [i for i, g in enumerate(given) if not g]
        if mask is None:
            mask = torch.tensor(given, device=ref.device).unsqueeze(0).expand(batch, -1)
        else:
            if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (batch, len(self.names)):
                shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise UsageError(f"mask must have shape [batch, {len(self.names)}] "
                                 f"(columns {self.names}), got {shape}")
            mask = mask.to(ref.device) != 0
            if absent:  # (no data-dependent check when every modality is given: it compiles)
                marked = mask[:, absent].any(0)
                if bool(marked.any()):
                    cols = [self.names[absent[i]] for i in marked.nonzero().flatten().tolist()]
                    raise UsageError(f"mask marks modalities {cols} present but no features "
                                     f"were given")
        dtype, device = self._probe.dtype, self._probe.device
        mask = mask.to(device)
        xs = []
        for i, name in enumerate(self.names):
            x = features.get(name)
            keep = mask[:, i:i + 1]
            if x is None:
                x = torch.zeros(batch, self.dims[name], dtype=dtype, device=device)
            else:
                x = x.to(device=device, dtype=dtype)
                x = torch.where(keep, x, torch.zeros_like(x))
            x = self.norms[name](x)
            xs.append(torch.where(keep, x, torch.zeros_like(x)))
        return xs, mask


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """A two-layer perceptron ``in -> hidden -> out`` with ReLU and dropout (linear output)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))


def fill_missing(x: torch.Tensor, keep: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
    """Rows of ``x [B, D]`` where ``keep [B, 1]`` is False become the learned vector ``missing [D]``."""
    return torch.where(keep, x, missing.to(x.dtype).unsqueeze(0).expand_as(x))


def keep_for_explaining(module: nn.Module, **values: torch.Tensor) -> None:
    """Store detached ``values`` on ``module`` (``last_weights`` …) for explanations. Skipped
    while ``torch.compile`` traces a training step: a stored tensor would leak out of the
    graph (`polymodal.train.step`); the eager forwards of evaluation still store them."""
    if torch.compiler.is_compiling():
        return
    for name, value in values.items():
        setattr(module, name, value.detach())
