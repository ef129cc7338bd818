"""Canonical correlation analysis: regularised linear CCA (numpy) and deep CCA (torch).

Linear CCA finds ``Wx, Wy`` maximising ``corr(X Wx[:, k], Y Wy[:, k])`` with uncorrelated
components. Solved by whitening: ``T = Cxx^-1/2 Cxy Cyy^-1/2 = U S V^T``; ``Wx = Cxx^-1/2 U``,
``Wy = Cyy^-1/2 V`` and the canonical correlations are ``S`` (Hotelling 1936; ridge-regularised
as in Vinod 1976).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.errors import DataError, PolymodalError, UsageError
from polymodal.core.estimator import Estimator
from polymodal.train.config import TrainConfig
from polymodal.train.loop import fit_loop, train_settings

# DeepCCA's own loop defaults (its earlier fixed recipe: constant lr 1e-3, light decay, no
# gradient clipping, quiet); a task passes its TrainConfig instead.
DCCA_TRAIN = {"epochs": 30, "lr": 1e-3, "weight_decay": 1e-5, "grad_clip": None,
              "lr_schedule": "constant", "progress": False}


def as_matrix(X: object, name: str = "X") -> np.ndarray:
    """``X`` as a finite float64 ``[n, d]`` array, or a `DataError` saying what is wrong."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D [n, d] feature matrix, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{name} has a non-finite value (NaN or inf) at row {r}, column {c}")
    return arr


def robust_std(x: torch.Tensor) -> torch.Tensor:
    """Per-feature std floored at 10% of the mean std, so that (nearly) constant features such
    as blank image borders are not blown up when new data varies there."""
    std = x.std(0)
    return std.clamp(min=max(0.1 * float(std.mean()), 1e-8))


def _inv_sqrt(C: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(C)
    w = np.clip(w, max(float(w.max()), 1e-300) * 1e-12, None)
    return (V / np.sqrt(w)) @ V.T


def _ridge(C: np.ndarray, reg: float) -> np.ndarray:
    scale = float(np.trace(C)) / C.shape[0]
    return C + reg * (scale if scale > 0 else 1.0) * np.eye(C.shape[0])


class LinearCCA(Estimator):
    """Regularised linear CCA, a scikit-learn estimator (``get_params``, ``clone``, usable as
    the last step of a ``Pipeline``, which passes ``Y`` on to ``fit``) that does not import
    scikit-learn (`polymodal.core.estimator`).

    ``reg`` is a ridge added to each covariance, relative to its mean variance:
    ``Cxx + reg * tr(Cxx)/dx * I``. Learned state: ``x_mean_``, ``y_mean_``, ``x_weights_
    [dx, k]``, ``y_weights_ [dy, k]``, ``correlations_ [k]`` (descending).
    ``transform(X)`` gives the X variates, ``transform(X, Y)`` both (as sklearn's CCA);
    ``fit_transform(X, Y)`` the X variates.
    """

    def __init__(self, n_components: int = 32, reg: float = 1e-3):
        self.n_components = n_components
        self.reg = reg

    def fit(self, X: object, Y: object = None) -> "LinearCCA":
        """Fit on paired rows ``X [n, dx]``, ``Y [n, dy]``; returns self."""
        if self.n_components < 1:
            raise UsageError(f"n_components must be >= 1, got {self.n_components}")
        if self.reg < 0:
            raise UsageError(f"reg must be >= 0, got {self.reg}")
        if Y is None:
            raise UsageError("LinearCCA.fit needs the paired second view: fit(X, Y)")
        X, Y = as_matrix(X, "X"), as_matrix(Y, "Y")
        if X.shape[0] != Y.shape[0]:
            raise DataError(f"X and Y must have the same number of rows, got {X.shape[0]} and "
                            f"{Y.shape[0]}")
        n = X.shape[0]
        k = self.n_components
        if n < 2:
            raise DataError(f"CCA needs at least 2 paired rows, got {n}")
        if k > min(X.shape[1], Y.shape[1]):
            raise UsageError(f"n_components {k} is larger than the smaller feature width "
                             f"{min(X.shape[1], Y.shape[1])}: lower --dim")
        self.n_features_in_ = X.shape[1]
        self.x_mean_, self.y_mean_ = X.mean(0), Y.mean(0)
        Xc, Yc = X - self.x_mean_, Y - self.y_mean_
        Wx = _inv_sqrt(_ridge(Xc.T @ Xc / (n - 1), self.reg))
        Wy = _inv_sqrt(_ridge(Yc.T @ Yc / (n - 1), self.reg))
        T = Wx @ (Xc.T @ Yc / (n - 1)) @ Wy
        U, S, Vt = np.linalg.svd(T, full_matrices=False)
        self.x_weights_ = Wx @ U[:, :k]
        self.y_weights_ = Wy @ Vt.T[:, :k]
        self.correlations_ = np.clip(S[:k], 0.0, 1.0)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "x_weights_"):
            raise UsageError("LinearCCA is not fitted yet: call fit(X, Y) first")

    def transform_x(self, X: object) -> np.ndarray:
        """Project ``X [m, dx]`` to ``[m, k]`` canonical variates."""
        self._check_fitted()
        X = as_matrix(X, "X")
        if X.shape[1] != self.x_weights_.shape[0]:
            raise DataError(f"X has {X.shape[1]} columns, the CCA was fitted on "
                            f"{self.x_weights_.shape[0]}")
        return (X - self.x_mean_) @ self.x_weights_

    def transform_y(self, Y: object) -> np.ndarray:
        """Project ``Y [m, dy]`` to ``[m, k]`` canonical variates."""
        self._check_fitted()
        Y = as_matrix(Y, "Y")
        if Y.shape[1] != self.y_weights_.shape[0]:
            raise DataError(f"Y has {Y.shape[1]} columns, the CCA was fitted on "
                            f"{self.y_weights_.shape[0]}")
        return (Y - self.y_mean_) @ self.y_weights_

    def transform(self, X: object, Y: object = None
                  ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``transform_x(X)``, or ``(transform_x(X), transform_y(Y))`` when ``Y`` is given."""
        if Y is None:
            return self.transform_x(X)
        return self.transform_x(X), self.transform_y(Y)

    def get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays (for saving with safetensors / ``np.savez``)."""
        self._check_fitted()
        return {k: np.asarray(getattr(self, k)) for k in
                ("x_mean_", "y_mean_", "x_weights_", "y_weights_", "correlations_")}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], reg: float = 1e-3) -> "LinearCCA":
        """Rebuild a fitted model from ``get_state()``."""
        obj = cls(int(np.asarray(state["x_weights_"]).shape[1]), reg)
        for k, v in state.items():
            setattr(obj, k, np.asarray(v, dtype=np.float64))
        obj.n_features_in_ = obj.x_weights_.shape[0]
        return obj


def dcca_loss(hx: torch.Tensor, hy: torch.Tensor, reg: float = 1e-3,
              k: int | None = None) -> torch.Tensor:
    """Deep CCA loss: minus the sum of the canonical correlations of ``hx``, ``hy [N, o]``.

    With centred ``H``: ``S11 = H1'H1/(N-1) + reg I``, ``S22`` likewise, ``S12 = H1'H2/(N-1)``;
    ``corr = ||S11^-1/2 S12 S22^-1/2||_tr`` (sum of singular values; the top ``k`` only when
    given). Whitening uses Cholesky factors (same singular values, stable gradients).
    Ref: Andrew, Arora, Bilmes & Livescu 2013, "Deep Canonical Correlation Analysis".
    """
    if hx.ndim != 2 or hx.shape != hy.shape:
        raise UsageError(f"dcca_loss needs two [N, o] batches of the same shape, got "
                         f"{tuple(hx.shape)} and {tuple(hy.shape)}")
    n, o = hx.shape
    if n <= o:
        raise PolymodalError(f"batch {n} must be larger than out_dim {o}: raise --batch-size "
                             f"or lower --dim")
    h1 = hx.double() - hx.double().mean(0)
    h2 = hy.double() - hy.double().mean(0)
    eye = torch.eye(o, dtype=torch.float64, device=hx.device)
    s11 = h1.T @ h1 / (n - 1) + reg * eye
    s22 = h2.T @ h2 / (n - 1) + reg * eye
    s12 = h1.T @ h2 / (n - 1)
    try:
        l1 = torch.linalg.cholesky(s11)
        l2 = torch.linalg.cholesky(s22)
    except torch.linalg.LinAlgError:
        raise PolymodalError("deep CCA covariance is singular (collapsed outputs): raise the "
                             "CCA regulariser --reg or lower --dim") from None
    t = torch.linalg.solve_triangular(l1, s12, upper=False)
    t = torch.linalg.solve_triangular(l2, t.T, upper=False).T
    sv = torch.linalg.svdvals(t)
    if k is not None:
        sv = sv[:k]
    return -sv.sum().to(hx.dtype)


_CCA_BUFFERS = {"x_mean_": 1, "y_mean_": 1, "x_weights_": 2, "y_weights_": 2,
                "correlations_": 1}  # LinearCCA state on the network outputs: key -> ndim


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), nn.GELU()]
        in_dim = h
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class DeepCCA(nn.Module):
    """Two MLPs ``f(x)``, ``g(y)`` trained with `dcca_loss`, then a linear CCA on their outputs.

    ``fit(X, Y)`` standardises inputs, trains, and fits ``cca_`` (a `LinearCCA`) on the network
    outputs; ``transform_x`` / ``transform_y`` give ``out_dim`` canonical variates. The final CCA
    is kept in buffers too, so ``state_dict()`` (safetensors-friendly) holds the whole model.
    """

    def __init__(self, x_dim: int, y_dim: int, out_dim: int = 10,
                 hidden: int | Sequence[int] = (256,), reg: float = 1e-3):
        super().__init__()
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        if min([x_dim, y_dim, out_dim, *hidden]) < 1:
            raise UsageError("DeepCCA dimensions must be >= 1")
        self.out_dim, self.reg = out_dim, reg
        self.fx = _mlp(x_dim, hidden, out_dim)
        self.fy = _mlp(y_dim, hidden, out_dim)
        for name, d in (("x", x_dim), ("y", y_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(d))
            self.register_buffer(f"{name}_std", torch.ones(d))
        for key, ndim in _CCA_BUFFERS.items():
            self.register_buffer(f"cca_{key}", torch.zeros(
                tuple(out_dim for _ in range(ndim)), dtype=torch.float64))
        self.register_buffer("cca_fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network outputs ``(f(x), g(y))`` on raw (unstandardised) inputs."""
        return (self.fx((x - self.x_mean) / self.x_std),
                self.fy((y - self.y_mean) / self.y_std))

    def fit(self, X: object, Y: object, config: TrainConfig | None = None, *,
            batch_size: int = 256, val: tuple[object, object] | None = None,
            run_dir: str | Path | None = None, resume: bool = False,
            desc: str = "fit deep CCA", **train: Any) -> "DeepCCA":
        """Standardise, train both networks through `fit_loop`, then fit the final linear CCA on
        the training outputs.

        ``config`` / ``**train``: the loop settings (`TrainConfig` fields such as ``epochs=8,
        lr=1e-3``; defaults `DCCA_TRAIN`); ``epochs=0`` only standardises and fits the final CCA
        (an untrained baseline). Early stopping and the kept epoch use the validation score:
        the summed correlations, on ``val = (X_val, Y_val)``, of the network outputs projected
        by a linear CCA fitted on the training outputs (held out: no ``n > out_dim`` need);
        without ``val`` (or with fewer than 2 rows) the training canonical correlations.
        ``run_dir`` / ``resume``: train_log.csv and an exactly resumable checkpoint there.
        Learned state: ``history_`` (mean loss per epoch), ``train_result_``, ``cca_``."""
        untrained = train.get("epochs") == 0
        tc = train_settings(config, DCCA_TRAIN, **({} if untrained else train))
        xt = self._input(X, "X", self.x_mean)
        yt = self._input(Y, "Y", self.y_mean)
        if xt.shape[0] != yt.shape[0]:
            raise DataError(f"X and Y must have the same number of rows, got {xt.shape[0]} and "
                            f"{yt.shape[0]}")
        n = xt.shape[0]
        if min(batch_size, n) <= self.out_dim:
            raise PolymodalError(f"batch {min(batch_size, n)} must be larger than out_dim "
                                 f"{self.out_dim}: raise --batch-size or lower --dim")
        self.x_mean.copy_(xt.mean(0))
        self.x_std.copy_(robust_std(xt))
        self.y_mean.copy_(yt.mean(0))
        self.y_std.copy_(robust_std(yt))
        held_out = None
        if val is not None and len(val[0]) >= 2:
            held_out = (self._input(val[0], "X_val", self.x_mean),
                        self._input(val[1], "Y_val", self.y_mean))
            if len(held_out[0]) != len(held_out[1]):
                raise DataError(f"X_val and Y_val must have the same number of rows, got "
                                f"{len(held_out[0])} and {len(held_out[1])}")
        gen = torch.Generator().manual_seed(tc.seed)

        def batches(epoch: int):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, batch_size):
                idx = perm[s:s + batch_size]
                if len(idx) > self.out_dim:  # a short last batch cannot estimate covariances
                    yield xt[idx], yt[idx]

        def step(model: "DeepCCA", batch) -> torch.Tensor:
            return dcca_loss(*model(*batch), reg=model.reg)

        self.history_: list[float] = []
        if not untrained:
            self.train_result_ = fit_loop(self, step, batches,
                                          lambda m: m._score(xt, yt, held_out), tc, run_dir,
                                          resume, desc, generator=gen)
            self.history_ = [h["loss"] for h in self.train_result_.history]
        self.eval()
        hx, hy = self._outputs(xt, yt)
        self.cca_ = LinearCCA(self.out_dim, self.reg).fit(hx, hy)
        for key, value in self.cca_.get_state().items():
            getattr(self, f"cca_{key}").copy_(torch.as_tensor(value))
        self.cca_fitted.fill_(True)
        return self

    def _score(self, xt: torch.Tensor, yt: torch.Tensor,
               held_out: tuple[torch.Tensor, torch.Tensor] | None) -> float:
        """Validation score of `fit` (see there)."""
        cca = LinearCCA(self.out_dim, self.reg).fit(*self._outputs(xt, yt))
        if held_out is None:
            return float(cca.correlations_.sum())
        a, b = cca.transform(*self._outputs(*held_out))
        a, b = a - a.mean(0), b - b.mean(0)
        den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
        return float(((a * b).sum(0) / np.maximum(den, 1e-12)).sum())

    @torch.no_grad()
    def _outputs(self, xt: torch.Tensor, yt: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        self.eval()
        hx, hy = self(xt, yt)
        return hx.numpy().astype(np.float64), hy.numpy().astype(np.float64)

    @staticmethod
    def _input(X: object, name: str, mean: torch.Tensor) -> torch.Tensor:
        arr = as_matrix(X, name)
        if arr.shape[1] != mean.shape[0]:
            raise DataError(f"{name} has {arr.shape[1]} columns, the model expects {mean.shape[0]}")
        return torch.as_tensor(arr, dtype=torch.float32)

    def _check_fitted(self) -> None:
        if not bool(self.cca_fitted):
            raise UsageError("DeepCCA is not fitted yet: call fit(X, Y) first")
        if not hasattr(self, "cca_"):  # rebuilt after load_state_dict
            self.cca_ = LinearCCA.from_state(
                {k: getattr(self, f"cca_{k}").numpy() for k in _CCA_BUFFERS}, self.reg)

    @torch.no_grad()
    def transform_x(self, X: object) -> np.ndarray:
        """``[m, out_dim]`` canonical variates of ``X``."""
        self._check_fitted()
        self.eval()
        h = self.fx((self._input(X, "X", self.x_mean) - self.x_mean) / self.x_std)
        return self.cca_.transform_x(h.numpy())

    @torch.no_grad()
    def transform_y(self, Y: object) -> np.ndarray:
        """``[m, out_dim]`` canonical variates of ``Y``."""
        self._check_fitted()
        self.eval()
        h = self.fy((self._input(Y, "Y", self.y_mean) - self.y_mean) / self.y_std)
        return self.cca_.transform_y(h.numpy())

    def transform(self, X: object, Y: object) -> tuple[np.ndarray, np.ndarray]:
        """``(transform_x(X), transform_y(Y))``."""
        return self.transform_x(X), self.transform_y(Y)

    def embed(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """L2-normalised canonical variates of a batch of one side ("query" = X, "target" = Y),
        the aligner interface `polymodal.nn.dual_encoder.AlignModel` calls."""
        fn = self.transform_x if side == "query" else self.transform_y
        return F.normalize(torch.from_numpy(np.asarray(fn(x.numpy()), np.float32)), dim=-1)
