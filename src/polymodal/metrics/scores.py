"""Evaluation metrics: pure functions, numpy in, floats out.

Retrieval: ``sim [Q, T]`` scores (higher = better) and the relevant targets of each query, in
one of three forms: a bool matrix ``[Q, T]``; a sequence of ``Q`` sets of target indices
(several captions per image, the same caption group, the same digit); or a 1-D int array with the
one correct target of each query. Ties are broken against the query (pessimistically): a relevant
target that ties with an irrelevant one is ranked after it, so constant scores never look good.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from polymodal.core.errors import DataError, UsageError

_COMPARE_MAX_RELEVANT = 16  # up to this many relevant targets per query: count, don't sort
_COMPARE_BUDGET = 1 << 25  # elements per comparison block


def _as_sim(sim: object) -> np.ndarray:
    if hasattr(sim, "detach"):
        sim = sim.detach().cpu().numpy()  # type: ignore[union-attr]
    arr = np.asarray(sim)
    if arr.ndim != 2 or 0 in arr.shape:
        raise DataError(f"scores must be a non-empty [queries, targets] matrix, got {arr.shape}")
    return arr


def _relevance_fn(relevant: object, n_queries: int, n_targets: int | None):
    """(n_targets, fn(start, stop) -> bool [stop - start, T]) for any accepted ``relevant``."""
    if isinstance(relevant, np.ndarray) and relevant.ndim == 2:
        if relevant.shape[0] != n_queries or (n_targets and relevant.shape[1] != n_targets):
            raise DataError(f"relevance matrix has shape {relevant.shape}, scores have "
                            f"({n_queries}, {n_targets})")
        rel = relevant.astype(bool, copy=False)
        return rel.shape[1], lambda a, b: rel[a:b]
    if isinstance(relevant, np.ndarray) and relevant.ndim == 1 and relevant.dtype.kind in "iu":
        relevant = [[int(t)] for t in relevant]
    sets = [list(r) if isinstance(r, (set, frozenset, list, tuple, np.ndarray)) else [r]
            for r in relevant]  # type: ignore[union-attr]
    if len(sets) != n_queries:
        raise DataError(f"got relevant targets for {len(sets)} queries, scores have {n_queries}")
    if n_targets is None:
        raise UsageError("n_targets is needed when relevant targets are given as index sets")
    for q, s in enumerate(sets):
        for t in s:
            if not 0 <= int(t) < n_targets:
                raise DataError(f"query {q}: relevant target {t} is outside 0..{n_targets - 1}")

    def fn(a: int, b: int) -> np.ndarray:
        out = np.zeros((b - a, n_targets), dtype=bool)
        for i, s in enumerate(sets[a:b]):
            out[i, [int(t) for t in s]] = True
        return out

    return n_targets, fn


def _ranks_sorted(sim: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First relevant rank and AP per row: sort the irrelevant scores once per row, then the
    rank of a relevant target is ``1 + #(irrelevant >= it) + #(relevant ranked before it)``."""
    irr = np.sort(np.where(rel, -np.inf, sim), axis=1)
    n_targets = sim.shape[1]
    first = np.empty(sim.shape[0], dtype=np.int64)
    ap = np.empty(sim.shape[0])
    for r in range(sim.shape[0]):
        v = -np.sort(-sim[r, rel[r]])
        i = np.arange(1, len(v) + 1)
        rank = n_targets - np.searchsorted(irr[r], v, side="left") + i
        first[r], ap[r] = rank[0], np.mean(i / rank)
    return first, ap


def _ranks_compare(sim: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same as `_ranks_sorted` for rows with few relevant targets, by counting (vectorised)."""
    nrel = rel.sum(1)
    R = int(nrel.max())
    rows, cols = np.nonzero(rel)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(nrel) - nrel, nrel)
    top = np.full((sim.shape[0], R), -np.inf)
    top[rows, slot] = sim[rows, cols]
    top = -np.sort(-top, axis=1)  # relevant scores, best first; padding (-inf) last
    irr = np.where(rel, -np.inf, sim)
    ge = np.empty_like(top, dtype=np.int64)
    step = max(1, _COMPARE_BUDGET // (R * sim.shape[1]))
    for s in range(0, sim.shape[0], step):
        ge[s:s + step] = (irr[s:s + step, None, :] >= top[s:s + step, :, None]).sum(-1)
    i = np.arange(R)
    rank = ge + i + 1
    valid = i[None, :] < nrel[:, None]
    ap = np.where(valid, (i + 1) / rank, 0.0).sum(1) / nrel
    return rank[:, 0], ap


def per_query_ranks(sim: np.ndarray, rel: np.ndarray, start: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per query (row of ``sim``): the rank of its first relevant target (1 = top) and its
    average precision; ``rel`` is the boolean relevance of the same shape. ``start`` (the index
    of the first row, for messages). A one-line `DataError` on a non-finite score or a query
    with no relevant target."""
    if not np.isfinite(sim).all():
        r, c = np.argwhere(~np.isfinite(sim))[0]
        raise DataError(f"score for query {start + r}, target {c} is not finite")
    empty = ~rel.any(1)
    if empty.any():
        raise DataError(f"query {start + int(np.argmax(empty))} has no relevant target")
    sim = sim.astype(np.float64, copy=False)
    if rel.sum(1).max() <= _COMPARE_MAX_RELEVANT:
        return _ranks_compare(sim, rel)
    return _ranks_sorted(sim, rel)


def _summary(first: np.ndarray, ap: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    out = {f"R@{k}": float(np.mean(first <= k)) for k in ks}
    out.update({"MedR": float(np.median(first)), "MeanR": float(np.mean(first)),
                "mAP": float(np.mean(ap))})
    return out


def retrieval_metrics(sim: object, relevant: object, ks: Sequence[int] = (1, 5, 10),
                      chunk_size: int = 512) -> dict[str, float]:
    """``R@k`` (fraction of queries with a relevant target in the top k), ``MedR`` / ``MeanR``
    (median / mean 1-based rank of the first relevant target) and ``mAP`` (mean over queries of
    the average precision over all relevant targets). Processed ``chunk_size`` queries at a time.
    """
    sim = _as_sim(sim)
    _, rel_fn = _relevance_fn(relevant, sim.shape[0], sim.shape[1])
    firsts, aps = [], []
    for a in range(0, sim.shape[0], chunk_size):
        b = min(a + chunk_size, sim.shape[0])
        f, p = per_query_ranks(np.asarray(sim[a:b]), rel_fn(a, b), a)
        firsts.append(f)
        aps.append(p)
    return _summary(np.concatenate(firsts), np.concatenate(aps), ks)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_metrics_from_embeddings(queries: object, targets: object, relevant: object,
                                      ks: Sequence[int] = (1, 5, 10), normalize: bool = True,
                                      chunk_size: int = 512) -> dict[str, float]:
    """`retrieval_metrics` with cosine (or dot when not ``normalize``) scores computed chunk by
    chunk, so the full ``[Q, T]`` matrix is never held in memory."""
    q = np.asarray(queries, dtype=np.float32)
    t = np.asarray(targets, dtype=np.float32)
    if q.ndim != 2 or t.ndim != 2 or q.shape[1] != t.shape[1]:
        raise DataError(f"query and target embeddings must be [n, d] with the same d, got "
                        f"{q.shape} and {t.shape}")
    if normalize:
        q, t = _unit(q), _unit(t)
    _, rel_fn = _relevance_fn(relevant, q.shape[0], t.shape[0])
    firsts, aps = [], []
    for a in range(0, q.shape[0], chunk_size):
        b = min(a + chunk_size, q.shape[0])
        f, p = per_query_ranks(q[a:b] @ t.T, rel_fn(a, b), a)
        firsts.append(f)
        aps.append(p)
    return _summary(np.concatenate(firsts), np.concatenate(aps), ks)


def relevance_from_labels(query_labels: Sequence, target_labels: Sequence) -> np.ndarray:
    """Bool ``[Q, T]``: a target is relevant when its label (digit, caption group) equals the
    query's."""
    q, t = np.asarray(query_labels), np.asarray(target_labels)
    return q[:, None] == t[None, :]


def chance_retrieval(relevant: object, ks: Sequence[int] = (1, 5, 10),
                     n_targets: int | None = None) -> dict[str, float]:
    """Expected ``R@k``, ``MeanR`` and ``mAP`` of a uniformly random ranking.

    With ``R`` relevant of ``T`` targets: ``P(hit in top k) = 1 - C(T-R, k) / C(T, k)``,
    ``E[first rank] = (T+1)/(R+1)``, ``E[AP] = H_T/T + (R-1)(T-H_T)/(T(T-1))`` with ``H_T`` the
    harmonic number (Bestgen 2015, "Exact expected average precision of the random baseline")."""
    if isinstance(relevant, np.ndarray) and relevant.ndim == 2:
        T = relevant.shape[1]
        counts = relevant.astype(bool).sum(1)
    else:
        if isinstance(relevant, np.ndarray) and relevant.ndim == 1:
            relevant = [[t] for t in relevant]
        if n_targets is None:
            raise UsageError("n_targets is needed when relevant targets are given as index sets")
        T = n_targets
        counts = np.array([len(set(r)) if isinstance(r, (set, frozenset, list, tuple, np.ndarray))
                           else 1 for r in relevant])  # type: ignore[union-attr]
    if len(counts) == 0 or (counts < 1).any():
        raise DataError("every query needs at least one relevant target")
    h = float(np.sum(1.0 / np.arange(1, T + 1)))
    out = {}
    for k in ks:
        kk = min(k, T)
        miss = np.ones(len(counts))
        for i in range(kk):
            miss *= np.clip(T - counts - i, 0, None) / (T - i)
        out[f"R@{k}"] = float(np.mean(1 - miss))
    out["MeanR"] = float(np.mean((T + 1) / (counts + 1)))
    extra = (counts - 1) * (T - h) / (T * (T - 1)) if T > 1 else 0.0
    out["mAP"] = float(np.mean(h / T + extra))
    return out


def zero_shot_accuracy(x_emb: object, class_text_emb: object, labels: object) -> float:
    """Accuracy of classifying each row of ``x_emb [N, d]`` as the class whose text embedding
    ``class_text_emb [C, d]`` has the highest cosine similarity; ``labels [N]`` in ``0..C-1``.
    Ties go to the lower class index."""
    x = np.asarray(x_emb, dtype=np.float64)
    c = np.asarray(class_text_emb, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1] or len(y) != len(x):
        raise DataError(f"zero-shot needs x [N, d], classes [C, d], labels [N]; got {x.shape}, "
                        f"{c.shape}, {y.shape}")
    return accuracy(y, np.argmax(_unit(x) @ _unit(c).T, axis=1))


# --- classification and regression -------------------------------------------------------------

def _pair(y_true: object, y_pred: object) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if len(t) != len(p):
        raise DataError(f"y_true has {len(t)} rows, predictions have {len(p)}")
    if len(t) == 0:
        raise DataError("no rows to evaluate")
    return t, p


def accuracy(y_true: object, y_pred: object) -> float:
    """Fraction of rows with ``y_pred == y_true``."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: object, y_pred: object, labels: Sequence | None = None) -> np.ndarray:
    """``M[i, j]`` = rows with true label ``labels[i]`` predicted as ``labels[j]`` (labels default
    to the sorted union of both)."""
    t, p = _pair(y_true, y_pred)
    labs = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    index = {v: i for i, v in enumerate(labs.tolist())}
    m = np.zeros((len(labs), len(labs)), dtype=np.int64)
    for a, b in zip(t.tolist(), p.tolist()):
        if a in index and b in index:
            m[index[a], index[b]] += 1
    return m


def macro_f1(y_true: object, y_pred: object, labels: Sequence | None = None) -> float:
    """Unweighted mean over labels of ``F1 = 2TP / (2TP + FP + FN)`` (0 when undefined)."""
    m = confusion_matrix(y_true, y_pred, labels).astype(np.float64)
    tp = np.diag(m)
    denom = m.sum(0) + m.sum(1)  # (TP + FP) + (TP + FN)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def _binary_auc(pos: np.ndarray, scores: np.ndarray) -> float:
    from scipy.stats import rankdata

    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    r = rankdata(scores)  # average ranks: a tie counts half
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc(y_true: object, scores: object) -> float:
    """Area under the ROC curve (Mann-Whitney U; ties count 1/2).

    Binary: ``scores [N]`` for the larger of the two labels. Multiclass: ``scores [N, C]`` and
    ``y_true`` in ``0..C-1``; one-vs-rest macro average over the classes that have both positive
    and negative rows."""
    t, s = _pair(y_true, scores)
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise DataError("scores contain NaN or inf")
    if s.ndim == 1:
        labs = np.unique(t)
        if len(labs) != 2:
            raise DataError(f"binary AUROC needs exactly 2 classes in y_true, got {len(labs)}")
        return _binary_auc(t == labs[1], s)
    if s.ndim != 2:
        raise DataError(f"scores must be [N] or [N, C], got {s.shape}")
    t = t.astype(np.int64)
    if t.min() < 0 or t.max() >= s.shape[1]:
        raise DataError(f"labels must be in 0..{s.shape[1] - 1} for {s.shape[1]} score columns")
    aucs = [_binary_auc(t == c, s[:, c]) for c in range(s.shape[1]) if 0 < (t == c).sum() < len(t)]
    if not aucs:
        raise DataError("AUROC needs at least one class with both positive and negative rows")
    return float(np.mean(aucs))


def mae(y_true: object, y_pred: object) -> float:
    """Mean absolute error."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t.astype(np.float64) - p)))


def r2(y_true: object, y_pred: object) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (averaged over outputs when 2-D;
    a constant target scores 1.0 when predicted exactly, else 0.0, as scikit-learn)."""
    t, p = _pair(y_true, y_pred)
    t, p = t.astype(np.float64), p.astype(np.float64)
    if t.ndim == 1:
        t, p = t[:, None], p[:, None]
    ss_res = ((t - p) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    score = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1),
                     np.where(ss_res > 0, 0.0, 1.0))
    return float(score.mean())
