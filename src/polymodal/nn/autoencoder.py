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

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.objectives.cca import as_matrix, robust_std
from polymodal.objectives.losses import get_loss, loss_params
from polymodal.core.errors import DataError, UsageError
from polymodal.train.config import TrainConfig
from polymodal.train.loop import fit_loop, train_settings

# the autoencoder's own loop defaults (its earlier fixed recipe: constant lr 1e-3, light
# decay, no gradient clipping, quiet); a task passes its TrainConfig instead.
AUTOENCODER_TRAIN = {"epochs": 30, "lr": 1e-3, "weight_decay": 1e-5, "grad_clip": None,
                     "lr_schedule": "constant", "progress": False}


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

    def _paired(self, data: Mapping[str, object]) -> dict[str, torch.Tensor]:
        xs = {m: torch.as_tensor(as_matrix(data[m], m), dtype=torch.float32)
              for m in self.dims if m in data}
        if set(xs) != set(self.dims):
            raise DataError(f"fit needs features for {sorted(self.dims)}, got {sorted(data)}")
        n = {x.shape[0] for x in xs.values()}
        if len(n) != 1:
            raise DataError(f"paired features must have the same number of rows, got "
                            f"{ {m: x.shape[0] for m, x in xs.items()} }")
        if n.pop() < 2:
            raise DataError("autoencoder needs at least 2 paired rows")
        return xs

    def fit(self, data: Mapping[str, object], config: TrainConfig | None = None, *,
            batch_size: int = 128, cross_weight: float = 1.0, align_weight: float = 0.1,
            align: str = "infonce", val: Mapping[str, object] | None = None,
            run_dir: str | Path | None = None, resume: bool = False,
            desc: str = "fit autoencoder", **train: Any) -> "MultimodalAutoencoder":
        """Train on paired rows ``{modality: [n, d_m]}`` through `fit_loop`.

        ``config`` / ``**train``: the loop settings (`TrainConfig` fields such as ``epochs=12``;
        defaults `AUTOENCODER_TRAIN`). Early stopping and the kept epoch use minus the loss on
        ``val`` (paired rows like ``data``; the training rows when None). ``run_dir`` /
        ``resume``: train_log.csv and an exactly resumable checkpoint there. Learned state:
        per-modality standardisation, ``history_`` (mean loss per epoch), ``train_result_``."""
        tc = train_settings(config, AUTOENCODER_TRAIN, **train)
        xs = self._paired(data)
        for m, x in xs.items():
            getattr(self, f"mean_{m}").copy_(x.mean(0))
            getattr(self, f"std_{m}").copy_(robust_std(x))
        vs = self._paired(val) if val is not None else xs
        n_rows = len(next(iter(xs.values())))
        gen = torch.Generator().manual_seed(tc.seed)

        def chunks(rows: dict[str, torch.Tensor], order: torch.Tensor, min_rows: int = 1):
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                if len(idx) >= min_rows:
                    yield {m: x[idx] for m, x in rows.items()}

        def step(model: "MultimodalAutoencoder", batch) -> torch.Tensor:
            return autoencoder_loss(model, batch, cross_weight, align_weight, align)[0]

        def validate(model: "MultimodalAutoencoder") -> float:  # batch-sized chunks, in order
            order = torch.arange(len(next(iter(vs.values()))))
            return -float(np.mean([float(step(model, b)) for b in chunks(vs, order)]))

        self.train_result_ = fit_loop(
            self, step, lambda epoch: chunks(xs, torch.randperm(n_rows, generator=gen), 2),
            validate, tc, run_dir, resume, desc, generator=gen)
        self.history_ = [h["loss"] for h in self.train_result_.history]
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
