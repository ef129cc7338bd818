"""Robustness sweeps: how a model's test metric degrades when a modality goes missing or gets
noisy at test time. Pure functions over ``evaluate(x, mask) -> float`` (any model, any metric).

* missing: the modality is masked for a fraction of the rows that have it (rows chosen with a
  seeded generator; fraction 1.0 masks it everywhere).
* noise: Gaussian noise is added to the modality's features at a signal-to-noise ratio in dB,
  per dimension: dimension d gets noise of variance ``var_d / 10^(snr/10)``, where ``var_d`` is
  its variance across the rows that have the modality. Not the raw mean square (pooled CNN
  features carry a large constant offset) and not one isotropic level (feature variances differ
  by orders of magnitude and models standardise each dimension, so low-variance dimensions
  would be swamped and "20 dB" would already be destructive).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from polymodal.core.errors import UsageError

Evaluate = Callable[[Mapping[str, np.ndarray], np.ndarray], float]


def mask_missing(mask: np.ndarray, column: int, fraction: float, seed: int = 0) -> np.ndarray:
    """A copy of bool ``mask [N, M]`` with column ``column`` set False for
    ``round(fraction * present)`` of the rows where it is True (chosen with ``seed``)."""
    if not 0 <= fraction <= 1:
        raise UsageError(f"missing fraction must be in [0, 1], got {fraction}")
    out = np.array(mask, bool, copy=True)
    rows = np.flatnonzero(out[:, column])
    k = int(round(fraction * len(rows)))
    if k:
        out[np.random.default_rng(seed).choice(rows, size=k, replace=False), column] = False
    return out


def add_noise(x: np.ndarray, snr_db: float, present: np.ndarray | None = None,
              seed: int = 0) -> np.ndarray:
    """``x [N, d]`` plus Gaussian noise of variance ``var_d / 10^(snr_db/10)`` in dimension d,
    ``var_d`` being its variance over the rows in ``present`` (default all). ``snr_db = inf``
    returns a copy."""
    x = np.asarray(x, np.float32)
    if np.isinf(snr_db) and snr_db > 0:
        return x.copy()
    rows = x if present is None else x[np.asarray(present, bool)]
    var = rows.astype(np.float64).var(axis=0) if len(rows) > 1 else np.zeros(x.shape[1])
    sigma = np.sqrt(var / 10 ** (snr_db / 10)).astype(np.float32)
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    return x + sigma * noise


def parse_levels(specs: Sequence[str] | None, kind: str) -> dict[str, list[float]]:
    """``["audio:0,0.5,1"]`` (missing) or ``["image:snr=20,10,0"]`` (noise) -> levels per modality."""
    out: dict[str, list[float]] = {}
    for spec in specs or []:
        mod, sep, rest = spec.partition(":")
        if kind == "noise" and rest.startswith("snr="):
            rest = rest[4:]
        try:
            levels = [float(v) for v in rest.split(",") if v.strip()]
        except ValueError:
            levels = []
        if not sep or not mod or not levels:
            example = "image:snr=20,10,0" if kind == "noise" else "audio:0,0.25,0.5,0.75,1"
            raise UsageError(f"--{kind} expects MODALITY:LEVELS such as {example}, got '{spec}'")
        if kind == "missing" and not all(0 <= v <= 1 for v in levels):
            raise UsageError(f"--missing fractions must be in [0, 1], got '{spec}'")
        out.setdefault(mod.strip(), []).extend(levels)
    return out


def robustness_sweep(evaluate: Evaluate, x: Mapping[str, np.ndarray], mask: np.ndarray,
                     modalities: Sequence[str], missing: Mapping[str, Sequence[float]] = {},
                     noise: Mapping[str, Sequence[float]] = {}, seed: int = 0,
                     repeats: int = 1) -> list[dict]:
    """Metric at every level: rows ``{"kind": "missing"|"noise", "modality", "level",
    "value"}`` (``value`` averaged over ``repeats`` seeded draws). ``modalities`` names the
    mask columns; unknown modalities raise a `UsageError`."""
    mods = list(modalities)
    for m in list(missing) + list(noise):
        if m not in mods:
            raise UsageError(f"unknown modality '{m}' for robustness; this model uses "
                             f"{', '.join(mods)}")
    rows = []
    for m, levels in missing.items():
        j = mods.index(m)
        for lev in levels:
            vals = [evaluate(x, mask_missing(mask, j, lev, seed + r)) for r in range(repeats)]
            rows.append({"kind": "missing", "modality": m, "level": float(lev),
                         "value": float(np.mean(vals))})
    for m, levels in noise.items():
        j = mods.index(m)
        for lev in levels:
            vals = []
            for r in range(repeats):
                noisy = dict(x)
                noisy[m] = add_noise(x[m], lev, mask[:, j], seed + r)
                vals.append(evaluate(noisy, mask))
            rows.append({"kind": "noise", "modality": m, "level": float(lev),
                         "value": float(np.mean(vals))})
    return rows


__all__ = ["add_noise", "mask_missing", "parse_levels", "robustness_sweep"]
