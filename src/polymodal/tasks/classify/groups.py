"""Row groups from manifest columns: batches that keep a group together (``batch_by``) and
test metrics per group (``group_by``).

``batch_by`` (e.g. ``image_id``): each epoch shuffles the groups, then the rows inside each
group, and cuts batches from that order, so the questions about one image mostly share a
batch (the spatial fusions run their CNN stem once per distinct image of a batch).
``group_by`` (e.g. ``question_type``): ``metrics.json`` gains ``test_by_group``:
``{column: {value: {"n": rows, "accuracy": …, …}}}``; the CLI prints one line per value.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from polymodal.core.errors import UsageError
from polymodal.data.manifest import Manifest

MISSING = "(empty)"


def check_columns(manifest: Manifest, columns: Sequence[str], option: str) -> None:
    """A one-line `UsageError` naming the option and manifest when a column is absent."""
    have: set[str] = set()
    for r in manifest.records:
        have.update(r.extra)
    for c in columns:
        if c not in have and c not in ("label", "split"):
            raise UsageError(f"{option} {c}: {manifest.path} has no column '{c}'; its extra "
                             f"columns are {', '.join(sorted(have)) or '(none)'}")


def column_values(manifest: Manifest, ids: Sequence[str], column: str) -> np.ndarray:
    """The ``column`` cell (as str; empty -> ``(empty)``) of each row id, in ``ids`` order."""
    by_id = {}
    for r in manifest.records:
        v = r.label if column == "label" else r.split if column == "split" else \
            r.extra.get(column)
        by_id[r.id] = MISSING if v is None or str(v).strip() == "" else str(v)
    return np.array([by_id.get(i, MISSING) for i in ids], dtype=object)


def grouped_order(groups: np.ndarray, gen: torch.Generator) -> torch.Tensor:
    """A permutation of ``range(len(groups))`` with the rows of each group adjacent (group
    order and the order inside groups both shuffled by ``gen``)."""
    n = len(groups)
    _, codes = np.unique(groups.astype(str), return_inverse=True)
    g_perm = torch.randperm(int(codes.max()) + 1 if n else 0, generator=gen).numpy()
    inner = torch.randperm(n, generator=gen).numpy()
    order = np.lexsort((inner, g_perm[codes]))
    return torch.from_numpy(order)


def batch_indices(n: int, bs: int, gen: torch.Generator,
                  groups: np.ndarray | None = None) -> Iterator[torch.Tensor]:
    """Index batches of an epoch: random rows, or grouped rows (`grouped_order`)."""
    perm = torch.randperm(n, generator=gen) if groups is None else grouped_order(groups, gen)
    for s in range(0, n, bs):
        yield perm[s:s + bs]


def scores_by_group(values: np.ndarray, y: np.ndarray, out: np.ndarray, spec: dict
                    ) -> dict[str, dict]:
    """``{value: {"n": rows, **score_outputs}}`` for each distinct value (sorted)."""
    from polymodal.tasks.classify.data import score_outputs

    res = {}
    for v in sorted(set(values.tolist())):
        idx = np.flatnonzero(values == v)
        res[v] = {"n": int(len(idx)), **score_outputs(y[idx], out[idx], spec)}
    return res


def format_groups(by_group: dict[str, dict[str, dict]]) -> str:
    """One line per column value: ``question_type=relational  n=…  accuracy=…`` (accuracy,
    or r2 and mae for regression; metrics.json holds every metric)."""
    lines = []
    for col, groups in by_group.items():
        for v, m in groups.items():
            keys = [k for k in ("accuracy", "r2", "mae") if isinstance(m.get(k), float)]
            vals = "  ".join(f"{k}={m[k]:.4f}" for k in keys)
            lines.append(f"  {col}={v}  n={m['n']}  {vals}")
    return "\n".join(lines)


__all__ = ["batch_indices", "check_columns", "column_values", "format_groups",
           "grouped_order", "scores_by_group"]
