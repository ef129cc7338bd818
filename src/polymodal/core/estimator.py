"""`Estimator`: the scikit-learn estimator protocol without importing scikit-learn.

Importing ``sklearn.base`` costs about 2.6 s on this project's 2-core machine (it pulls in
scipy.stats and pandas), and every `fit retrieval` needs `LinearCCA` for its baselines. This
mixin gives the parts of ``BaseEstimator`` / ``TransformerMixin`` an estimator needs to be
used by scikit-learn: ``get_params`` / ``set_params`` from the constructor's signature (so
``sklearn.base.clone`` works), ``fit_transform``, a readable ``repr``, and the two hooks
scikit-learn's validation calls (``__sklearn_tags__``, which imports scikit-learn only then,
when it is already loaded, and ``__sklearn_is_fitted__``).
"""
from __future__ import annotations

import inspect
from typing import Any


class Estimator:
    """Mixin for estimators whose ``__init__`` stores each keyword argument unchanged."""

    @classmethod
    def _param_names(cls) -> list[str]:
        params = inspect.signature(cls.__init__).parameters.values()
        return sorted(p.name for p in params
                      if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments as set on this object."""
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> "Estimator":
        """Set constructor arguments; an unknown name is a ``ValueError`` (as in sklearn)."""
        names = self._param_names()
        for k, v in params.items():
            if k not in names:
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}; "
                                 f"valid parameters: {', '.join(names)}")
            setattr(self, k, v)
        return self

    def fit_transform(self, X: Any, Y: Any = None, **fit_params: Any) -> Any:
        """``fit(X, Y).transform(X)``."""
        return self.fit(X, Y, **fit_params).transform(X)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __sklearn_is_fitted__(self) -> bool:
        return any(k.endswith("_") and not k.startswith("__") for k in vars(self))

    def __sklearn_tags__(self) -> Any:
        from sklearn.base import BaseEstimator, TransformerMixin

        class _Transformer(TransformerMixin, BaseEstimator):
            pass

        return _Transformer().__sklearn_tags__()


__all__ = ["Estimator"]
