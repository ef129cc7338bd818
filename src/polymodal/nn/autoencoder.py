"""Multimodal autoencoder with a shared latent and cross-reconstruction.

Each modality ``m`` has an encoder ``E_m`` into a shared latent ``z`` and a decoder ``D_m`` back.
For a batch of paired rows ``{m: x_m}`` (inputs standardised per feature):

``loss = mean_m ||D_m(E_m(x_m)) - x_m||^2                       (self-reconstruction)
       + cross_weight * mean_{m != n} ||D_m(E_n(x_n)) - x_m||^2  (cross-reconstruction)
       + align_weight * mean_{m < n} align(E_m(x_m), E_n(x_n))    (optional latent alignment)``

so that one modality's latent carries what is needed to rebuild the other
(Ngiam et al. 2011, "Multimodal Deep Learning"; Wang et al. 2015 on cross-reconstruction).
``embed(x, modality)`` returns the L2-normalised shared-space vector, so a fitted model is usable
as an aligner for retrieval.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.objectives.cca import as_matrix, robust_std
from polymodal.objectives.losses import get_loss, loss_params
from polymodal.core.errors import DataError, UsageError


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim))


class MultimodalAutoencoder(nn.Module):
    """Encoders/decoders per modality around one shared latent of width ``latent_dim``.

    ``dims`` maps modality name -> input feature width, e.g. ``{"image": 1280, "text": 384}``.
    Learned state after ``fit``: the weights, per-modality standardisation buffers, ``history_``.
    """

    def __init__(self, dims: Mapping[str, int], latent_dim: int = 64, hidden: int = 256,
                 dropout: float = 0.0):
        super().__init__()
        if len(dims) < 2:
            raise UsageError(f"a multimodal autoencoder needs >= 2 modalities, got {list(dims)}")
        for m, d in dims.items():
            if not m.isidentifier() or d < 1:
                raise UsageError(f"bad modality {m!r} with width {d}: names must be identifiers "
                                 f"and widths >= 1")
        if latent_dim < 1 or hidden < 1:
            raise UsageError("latent_dim and hidden must be >= 1")
        self.dims = dict(dims)
        self.latent_dim = latent_dim
        self.spec = {"dims": dict(dims), "latent_dim": latent_dim, "hidden": hidden,
                     "dropout": dropout}
        self.encoders = nn.ModuleDict({m: _mlp(d, hidden, latent_dim, dropout)
                                       for m, d in dims.items()})
        self.decoders = nn.ModuleDict({m: _mlp(latent_dim, hidden, d, dropout)
                                       for m, d in dims.items()})
        for m, d in dims.items():
            self.register_buffer(f"mean_{m}", torch.zeros(d))
            self.register_buffer(f"std_{m}", torch.ones(d))

    def _check(self, modality: str) -> None:
        if modality not in self.dims:
            raise UsageError(f"unknown modality {modality!r}: this model has "
                             f"{', '.join(self.dims)}")

    def standardize(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """``(x - mean_m) / std_m`` with the statistics stored by ``fit``."""
        self._check(modality)
        if x.ndim != 2 or x.shape[1] != self.dims[modality]:
            raise DataError(f"{modality} features must be [n, {self.dims[modality]}], got "
                            f"{tuple(x.shape)}")
        return (x - getattr(self, f"mean_{modality}")) / getattr(self, f"std_{modality}")

    def encode(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Raw features -> shared latent ``[n, latent_dim]`` (not normalised)."""
        x = self.standardize(x, modality)
        return self.encoders[modality](x)

    def decode(self, z: torch.Tensor, modality: str) -> torch.Tensor:
        """Latent -> standardised features of ``modality``."""
        self._check(modality)
        return self.decoders[modality](z)

    def embed(self, x: torch.Tensor | np.ndarray, modality: str) -> torch.Tensor | np.ndarray:
        """L2-normalised shared-space vectors; numpy in -> numpy out (inference mode)."""
        if isinstance(x, torch.Tensor):
            return F.normalize(self.encode(x, modality), dim=-1)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            z = self.encode(torch.as_tensor(as_matrix(x, modality), dtype=torch.float32),
                            modality)
        self.train(was_training)
        return F.normalize(z, dim=-1).numpy()

    def fit(self, data: Mapping[str, object], epochs: int = 30, batch_size: int = 128,
            lr: float = 1e-3, cross_weight: float = 1.0, align_weight: float = 0.1,
            align: str = "infonce", weight_decay: float = 1e-5, seed: int = 0
            ) -> "MultimodalAutoencoder":
        """Train on paired rows ``{modality: [n, d_m]}``; stores per-modality standardisation and
        ``history_`` (mean total loss per epoch)."""
        xs = {m: torch.as_tensor(as_matrix(data[m], m), dtype=torch.float32)
              for m in self.dims if m in data}
        if set(xs) != set(self.dims):
            raise DataError(f"fit needs features for {sorted(self.dims)}, got {sorted(data)}")
        n = {x.shape[0] for x in xs.values()}
        if len(n) != 1:
            raise DataError(f"paired features must have the same number of rows, got "
                            f"{ {m: x.shape[0] for m, x in xs.items()} }")
        n_rows = n.pop()
        if n_rows < 2:
            raise DataError("autoencoder needs at least 2 paired rows")
        for m, x in xs.items():
            getattr(self, f"mean_{m}").copy_(x.mean(0))
            getattr(self, f"std_{m}").copy_(robust_std(x))
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        self.history_: list[float] = []
        self.train()
        for _ in range(epochs):
            perm = torch.randperm(n_rows, generator=gen)
            total, count = 0.0, 0
            for s in range(0, n_rows, batch_size):
                idx = perm[s:s + batch_size]
                if len(idx) < 2:
                    continue
                loss, _ = autoencoder_loss(self, {m: x[idx] for m, x in xs.items()},
                                           cross_weight, align_weight, align)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, count = total + float(loss.detach()) * len(idx), count + len(idx)
            self.history_.append(total / max(count, 1))
        self.eval()
        return self


def autoencoder_loss(model: MultimodalAutoencoder, batch: Mapping[str, torch.Tensor],
                     cross_weight: float = 1.0, align_weight: float = 0.0,
                     align: str = "infonce") -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (see module docstring) and its parts ``{"self", "cross", "align"}`` as floats.

    ``align`` names any loss in `polymodal.objectives.losses.LOSSES`; its scalars (temperature, bias)
    are fixed at their usual initial values."""
    mods = list(model.dims)
    targets = {m: model.standardize(batch[m], m) for m in mods}
    zs = {m: model.encoders[m](targets[m]) for m in mods}
    self_rec = torch.stack([F.mse_loss(model.decoders[m](zs[m]), targets[m]) for m in mods]).mean()
    cross = torch.stack([F.mse_loss(model.decoders[m](zs[n]), targets[m])
                         for m in mods for n in mods if m != n]).mean()
    loss = self_rec + cross_weight * cross
    parts = {"self": float(self_rec.detach()), "cross": float(cross.detach()), "align": 0.0}
    if align_weight:
        fn, params = get_loss(align), loss_params(align)
        al = torch.stack([fn(zs[m], zs[n], **params)
                          for i, m in enumerate(mods) for n in mods[i + 1:]]).mean()
        loss = loss + align_weight * al
        parts["align"] = float(al.detach())
    return loss, parts
