"""Retrieval baselines on fixed features: no training beyond a closed-form fit.

Both follow ``fit(Xq, Yt) -> self`` on paired rows (query features, target features) and
``score(Xq, Yt) -> sim [Q, T]`` (cosine similarity, higher = better), to be fed to
`polymodal.metrics.scores.retrieval_metrics`.
"""
from __future__ import annotations

import numpy as np

from polymodal.core.errors import DataError, UsageError


def _matrix(X: object, name: str) -> np.ndarray:
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()  # type: ignore[union-attr]
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f"{name} must be a non-empty [n, d] feature matrix, got {arr.shape}")
    if not np.isfinite(arr).all():
        r, c = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(f"{name} has a non-finite value at row {r}, column {c}")
    return arr


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def _paired(Xq: object, Yt: object) -> tuple[np.ndarray, np.ndarray]:
    X, Y = _matrix(Xq, "query features"), _matrix(Yt, "target features")
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"fit needs paired rows: {X.shape[0]} queries vs {Y.shape[0]} targets")
    return X, Y


class RidgeMap:
    """Ridge regression of query features onto target features; scores are cosines between the
    predicted and the real target vectors. ``W = (Xc'Xc + alpha I)^-1 Xc'Yc`` on centred data
    (dual form ``Xc'(XcXc' + alpha I)^-1 Yc`` when there are fewer rows than features).
    Learned state: ``coef_ [dq, dt]``, ``x_mean_``, ``y_mean_``."""

    def __init__(self, alpha: float = 1.0):
        if alpha < 0:
            raise UsageError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha

    def fit(self, Xq: object, Yt: object) -> "RidgeMap":
        X, Y = _paired(Xq, Yt)
        self.x_mean_, self.y_mean_ = X.mean(0), Y.mean(0)
        Xc, Yc = X - self.x_mean_, Y - self.y_mean_
        n, d = Xc.shape
        if n >= d:
            A = Xc.T @ Xc + self.alpha * np.eye(d)
            self.coef_ = np.linalg.lstsq(A, Xc.T @ Yc, rcond=None)[0]
        else:
            K = Xc @ Xc.T + self.alpha * np.eye(n)
            self.coef_ = Xc.T @ np.linalg.lstsq(K, Yc, rcond=None)[0]
        return self

    def predict(self, Xq: object) -> np.ndarray:
        """Predicted target-space vectors ``[Q, dt]``."""
        if not hasattr(self, "coef_"):
            raise UsageError("RidgeMap is not fitted yet: call fit(Xq, Yt) first")
        X = _matrix(Xq, "query features")
        if X.shape[1] != self.coef_.shape[0]:
            raise DataError(f"query features have {X.shape[1]} columns, fitted on "
                            f"{self.coef_.shape[0]}")
        return (X - self.x_mean_) @ self.coef_ + self.y_mean_

    def score(self, Xq: object, Yt: object) -> np.ndarray:
        """Cosine similarity ``[Q, T]`` between predicted and real target vectors."""
        pred = self.predict(Xq)
        Y = _matrix(Yt, "target features")
        if Y.shape[1] != pred.shape[1]:
            raise DataError(f"target features have {Y.shape[1]} columns, fitted on "
                            f"{pred.shape[1]}")
        return _cosine(pred, Y)


class CCAMap:
    """Linear CCA between the two feature spaces; scores are cosines between canonical variates
    (optionally weighted by the canonical correlations). Learned state: ``cca_``."""

    def __init__(self, n_components: int = 32, reg: float = 1e-3, weight_by_corr: bool = False):
        self.n_components, self.reg, self.weight_by_corr = n_components, reg, weight_by_corr

    def fit(self, Xq: object, Yt: object) -> "CCAMap":
        from polymodal.objectives.cca import LinearCCA

        X, Y = _paired(Xq, Yt)
        self.cca_ = LinearCCA(self.n_components, self.reg).fit(X, Y)
        return self

    def score(self, Xq: object, Yt: object) -> np.ndarray:
        """Cosine similarity ``[Q, T]`` in the canonical space."""
        if not hasattr(self, "cca_"):
            raise UsageError("CCAMap is not fitted yet: call fit(Xq, Yt) first")
        a = self.cca_.transform_x(_matrix(Xq, "query features"))
        b = self.cca_.transform_y(_matrix(Yt, "target features"))
        if self.weight_by_corr:
            w = np.sqrt(self.cca_.correlations_)
            a, b = a * w, b * w
        return _cosine(a, b)
