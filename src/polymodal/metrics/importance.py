"""Modality importance: permutation, ablation and exact Shapley values over modalities.

Pure functions over ``evaluate(x, mask) -> float`` (a dataset metric) or
``value(x, mask) -> [N]`` (a per-example value, e.g. the predicted class probability). The
*value of a coalition* S of modalities is the metric with only the modalities in S present
(the others masked, as if missing). Shapley values then split ``v(all) - v(none)`` exactly
among the modalities (efficiency); a modality a row lacks gets 0 for that row.
"""
from __future__ import annotations

from itertools import combinations
from math import factorial
from typing import Callable, Mapping, Sequence

import numpy as np

from polymodal.core.errors import UsageError

Evaluate = Callable[[Mapping[str, np.ndarray], np.ndarray], "float | np.ndarray"]
MAX_EXACT = 8  # 2^M coalitions; manifests have at most 3 modalities (image, text, audio)


def coalition_mask(mask: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """``mask`` with every column not in ``keep`` set False."""
    out = np.zeros_like(np.asarray(mask, bool))
    idx = list(keep)
    out[:, idx] = np.asarray(mask, bool)[:, idx]
    return out


def coalition_values(evaluate: Evaluate, x: Mapping[str, np.ndarray], mask: np.ndarray,
                     n_modalities: int) -> dict[frozenset, "float | np.ndarray"]:
    """``v(S)`` for every subset S of the modality columns (2^M evaluations)."""
    if n_modalities > MAX_EXACT:
        raise UsageError(f"exact Shapley values over {n_modalities} modalities need "
                         f"2^{n_modalities} evaluations; at most {MAX_EXACT} supported")
    cols = range(n_modalities)
    return {frozenset(s): evaluate(x, coalition_mask(mask, s))
            for k in range(n_modalities + 1) for s in combinations(cols, k)}


def shapley_from_values(values: Mapping[frozenset, "float | np.ndarray"], n: int
                        ) -> list["float | np.ndarray"]:
    """Exact Shapley value of each of ``n`` players from all coalition values
    (``phi_i = sum_S |S|!(n-|S|-1)!/n! * (v(S+i) - v(S))``). Works on floats or arrays."""
    phi = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        total = 0.0
        for k in range(n):
            w = factorial(k) * factorial(n - k - 1) / factorial(n)
            for s in combinations(others, k):
                s = frozenset(s)
                total = total + w * (np.asarray(values[s | {i}]) - np.asarray(values[s]))
        phi.append(total)
    return phi


def shapley_values(evaluate: Evaluate, x: Mapping[str, np.ndarray], mask: np.ndarray,
                   modalities: Sequence[str]) -> dict:
    """Exact Shapley values: ``{"values": {modality: phi}, "v_all", "v_none"}`` (floats for a
    dataset metric, ``[N]`` arrays for a per-example value)."""
    mods = list(modalities)
    vals = coalition_values(evaluate, x, mask, len(mods))
    phi = shapley_from_values(vals, len(mods))
    return {"values": dict(zip(mods, phi)), "v_all": vals[frozenset(range(len(mods)))],
            "v_none": vals[frozenset()]}


def ablation_importance(evaluate: Evaluate, x: Mapping[str, np.ndarray], mask: np.ndarray,
                        modalities: Sequence[str]) -> dict[str, float]:
    """Metric drop when one modality is masked everywhere (``v(all) - v(all - m)``)."""
    mods = list(modalities)
    base = float(evaluate(x, mask))
    return {m: base - float(evaluate(x, coalition_mask(mask, [j for j in range(len(mods))
                                                               if j != i])))
            for i, m in enumerate(mods)}


def permutation_importance(evaluate: Evaluate, x: Mapping[str, np.ndarray], mask: np.ndarray,
                           modalities: Sequence[str], repeats: int = 5, seed: int = 0
                           ) -> dict[str, dict[str, float]]:
    """Metric drop when one modality's features (and its mask column) are shuffled across
    rows: ``{modality: {"mean", "std"}}`` over ``repeats`` seeded permutations."""
    mods = list(modalities)
    mask = np.asarray(mask, bool)
    base = float(evaluate(x, mask))
    rng = np.random.default_rng(seed)
    out = {}
    for i, m in enumerate(mods):
        drops = []
        for _ in range(max(1, repeats)):
            perm = rng.permutation(len(mask))
            xp = dict(x)
            xp[m] = np.asarray(x[m])[perm]
            mp = mask.copy()
            mp[:, i] = mask[perm, i]
            drops.append(base - float(evaluate(xp, mp)))
        out[m] = {"mean": float(np.mean(drops)), "std": float(np.std(drops))}
    return out


__all__ = ["ablation_importance", "coalition_mask", "coalition_values", "permutation_importance",
           "shapley_from_values", "shapley_values"]
