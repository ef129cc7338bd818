"""Scores model selection compares candidates on (`polymodal.tasks.retrieval.select`): the
per-query ``(R@1 + AP) / 2`` of both directions, the cluster-robust paired standard error of a
difference, and the one-SE choice among settings."""
from __future__ import annotations

import numpy as np

from polymodal.core.errors import PolymodalError
from polymodal.nn.dual_encoder import AlignModel
from polymodal.tasks.retrieval.data import PairedData


def query_scores(qe: np.ndarray, te: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Per-query ``(R@1 + AP) / 2`` of both directions (query->target rows, then the reverse)."""
    from polymodal.metrics.scores import per_query_ranks

    sim = (qe @ te.T).astype(np.float64)
    out = []
    for s, r in ((sim, rel), (sim.T, rel.T)):
        first, ap = per_query_ranks(np.ascontiguousarray(s), np.ascontiguousarray(r), 0)
        out.append(((first == 1) + ap) / 2)
    return np.concatenate(out)


def paired_se(a: np.ndarray, b: np.ndarray, clusters: np.ndarray | None = None) -> float:
    """Standard error of ``mean(a - b)`` over the same queries; with ``clusters`` (the manifest
    row of each query) the cluster-robust one: the queries of one row (its query in both
    directions, its several captions) are not independent, so they count as one draw."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if clusters is not None:
        _, c = np.unique(clusters, return_inverse=True)
        d = np.bincount(c, weights=d - d.mean()) * (c.max() + 1) / len(d)  # cluster totals
        return float(np.sqrt(np.sum(d ** 2) / (len(d) * (len(d) - 1)))) if len(d) > 1 else \
            float("inf")
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def val_clusters(data: PairedData) -> np.ndarray:
    """The manifest row of each val query, in `val_score` order (both directions)."""
    q, t = data.side_split(data.query, "val"), data.side_split(data.target, "val")
    return np.concatenate([q.rows, t.rows])


def val_score(model: AlignModel, data: PairedData) -> tuple[np.ndarray, dict[str, float]]:
    """Per-query scores on the val split and each direction's mean."""
    q, t = data.side_split(data.query, "val"), data.side_split(data.target, "val")
    if len(q.x) == 0 or len(t.x) == 0:
        raise PolymodalError("model selection needs val pairs: none in the val split")
    s = query_scores(model.embed_numpy(q.x, "query"), model.embed_numpy(t.x, "target"),
                     data.relevance(q, t))
    names = (data.query.modality, data.target.modality)
    return s, {f"{names[0]}->{names[1]}": round(float(s[:len(q.x)].mean()), 4),
               f"{names[1]}->{names[0]}": round(float(s[len(q.x):].mean()), 4)}

def one_se(scores: list[np.ndarray], clusters: np.ndarray) -> tuple[int, float]:
    """Index of the first entry whose mean is within one (cluster-robust) paired SE of the best
    mean, and that SE."""
    best = int(np.argmax([s.mean() for s in scores]))
    for i, s in enumerate(scores):
        se = paired_se(scores[best], s, clusters)
        if s.mean() >= scores[best].mean() - se:
            return i, se
    return best, 0.0  # not reached: the best is within 0 of itself


__all__ = ["one_se", "paired_se", "query_scores", "val_clusters", "val_score"]
