"""The closed-form candidates of model selection (`polymodal.tasks.retrieval.select`): ridge,
CCA and their blend as `AlignModel`s, each family's settings in preference order (the
baseline's own first), and their scores on val or by cross-validation on train ∪ val (folds of
manifest rows, or of whole groups when the split is grouped by a column)."""
from __future__ import annotations

import numpy as np
import torch

from polymodal.nn.dual_encoder import AlignModel
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.data import PairedData, Side
from polymodal.tasks.retrieval.scoring import one_se, query_scores, val_clusters, val_score

BLEND = "ridge-cca"
PURE = ("ridge", "cca")
CLOSED = PURE + (BLEND,)
BLEND_WEIGHTS = (0.5, 0.25, 0.75)  # the ridge share of the blended cosine, in preference order
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 0.1)  # the baseline's alpha (1.0) first
CCA_REGS = (1e-3, 1e-1)  # the baseline's reg first
BASELINE_CCA_K = 32
CV_FOLDS = 5


def _linear(in_dim: int, out_dim: int) -> dict:
    return {"kind": "linear", "in_dim": in_dim, "out_dim": out_dim, "normalize": False}


def _set_linear(model: AlignModel, side: str, w: np.ndarray, b: np.ndarray | None,
                mean: np.ndarray) -> None:
    lin = model.heads[side].proj
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.asarray(w, np.float32).T))
        lin.bias.copy_(torch.from_numpy(np.asarray(b, np.float32)) if b is not None else
                       torch.zeros_like(lin.bias))
        getattr(model, f"mean_{side}").copy_(torch.from_numpy(np.asarray(mean, np.float32)))


def ridge_fit(X: np.ndarray, Y: np.ndarray, alpha: float) -> AlignModel:
    """The ridge baseline (`metrics.baselines.RidgeMap`) as an AlignModel: query head
    ``W'(x - x_mean) + y_mean``, target side the raw target features (no centring)."""
    from polymodal.metrics.baselines import RidgeMap

    m = RidgeMap(alpha).fit(X, Y)
    dq, dt = X.shape[1], Y.shape[1]
    model = AlignModel({"query": _linear(dq, dt), "target": {"kind": "identity", "in_dim": dt}},
                       {"query": torch.zeros(dq), "target": torch.zeros(dt)}, {})
    _set_linear(model, "query", m.coef_, m.y_mean_, m.x_mean_)
    return model


def cca_fit(X: np.ndarray, Y: np.ndarray, k: int, reg: float) -> AlignModel:
    """Linear CCA with ``k`` components as an AlignModel (two linear heads, no bias)."""
    return cca_fits(X, Y, [k], reg)[0]


def cca_fits(X: np.ndarray, Y: np.ndarray, ks: list[int], reg: float) -> list[AlignModel]:
    """One linear CCA fit, cut to each of ``ks`` components (its components are sorted, so the
    first ``k`` of a larger fit are the ``k``-component fit)."""
    from polymodal.objectives.cca import LinearCCA

    cca = LinearCCA(n_components=max(ks), reg=reg).fit(X, Y)
    dq, dt = X.shape[1], Y.shape[1]
    out = []
    for k in ks:
        k = min(k, cca.x_weights_.shape[1])
        model = AlignModel({"query": _linear(dq, k), "target": _linear(dt, k)},
                           {"query": torch.zeros(dq), "target": torch.zeros(dt)}, {})
        _set_linear(model, "query", cca.x_weights_[:, :k], None, cca.x_mean_)
        _set_linear(model, "target", cca.y_weights_[:, :k], None, cca.y_mean_)
        out.append(model)
    return out


def blend_fit(ridge: AlignModel, cca: AlignModel, weight: float) -> AlignModel:
    """``weight`` x the ridge cosine + ``1 - weight`` x the CCA cosine, as one AlignModel."""
    means = {s: getattr(ridge, f"mean_{s}") for s in ("query", "target")}
    model = AlignModel({"members": [ridge.specs, cca.specs], "weights": [weight, 1 - weight]},
                       means, {})
    for mine, theirs in zip(model.members, (ridge, cca)):
        mine.load_state_dict(theirs.state_dict())
    return model


def _xy(data: PairedData, qi: np.ndarray, tj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return data.query.x[qi].astype(np.float64), data.target.x[tj].astype(np.float64)


def ridge_model(data: PairedData, alpha: float) -> AlignModel:
    return ridge_fit(*_xy(data, *data.pairs("train")), alpha)


def cca_model(data: PairedData, k: int, reg: float) -> AlignModel:
    return cca_fit(*_xy(data, *data.pairs("train")), k, reg)


def cca_components(cfg: RetrievalConfig, data: PairedData) -> list[int]:
    """The baseline's 32 first, then the fit's own rule (``min(dim, n/8)``) and 64, within the
    data."""
    n = len(data.pairs("train")[0])
    dmax = min(data.query.x.shape[1], data.target.x.shape[1], max(2, n - 1))
    ks = [BASELINE_CCA_K, max(2, min(cfg.dim, n // 8)), 64]
    return list(dict.fromkeys(min(k, dmax) for k in ks))


def settings(name: str, cfg: RetrievalConfig, data: PairedData, kept: dict | None = None
             ) -> list[dict]:
    """A closed-form family's settings, in preference order (the baseline's first); the blend's
    are the ridge and CCA settings ``kept`` (by name) with each of ``BLEND_WEIGHTS``."""
    if name == "ridge":
        return [{"alpha": a} for a in RIDGE_ALPHAS]
    if name == BLEND:
        return [{**kept["ridge"], **kept["cca"], "weight": w} for w in BLEND_WEIGHTS]
    return [{"components": k, "reg": r} for k in cca_components(cfg, data) for r in CCA_REGS]


def _fit_grid(name: str, grid: list[dict], X: np.ndarray, Y: np.ndarray,
              memo: dict | None = None, part: object = None) -> list[AlignModel]:
    """A model per setting of ``grid`` (CCA: one fit per regularisation). ``memo`` keeps each
    ridge / CCA model by (family, setting, ``part``: "train" or a CV fold), so the blend of the
    kept settings reuses the fits of the same data instead of fitting both again."""
    if name == BLEND:  # one ridge and one CCA model (the kept settings), blended per weight
        memo = {} if memo is None else memo
        for n, s in zip(PURE, _members(grid[0])):
            if _key(n, s, part) not in memo:
                _fit_grid(n, [s], X, Y, memo, part)
        r, c = (memo[_key(n, s, part)] for n, s in zip(PURE, _members(grid[0])))
        return [blend_fit(r, c, s["weight"]) for s in grid]
    if name == "ridge":
        out = [ridge_fit(X, Y, s["alpha"]) for s in grid]
    else:
        models: dict[int, AlignModel] = {}
        for reg in dict.fromkeys(s["reg"] for s in grid):
            idx = [i for i, s in enumerate(grid) if s["reg"] == reg]
            models.update(zip(idx, cca_fits(X, Y, [grid[i]["components"] for i in idx], reg)))
        out = [models[i] for i in range(len(grid))]
    if memo is not None:
        memo.update({_key(name, s, part): m for s, m in zip(grid, out)})
    return out

def _side(side: Side, idx: np.ndarray) -> Side:
    idx = np.unique(idx)
    return Side(side.modality, side.x[idx], side.rows[idx])


def split_groups(manifest, data: PairedData) -> tuple[str, np.ndarray] | None:
    """(column, its value per row of ``data``) when the manifest's split is grouped by a column
    (`split_grouping`), else None."""
    from polymodal.core.splits import split_grouping

    by_id = {r.id: r for r in manifest.records}
    recs = [by_id.get(i) for i in data.ids]
    cols = {c: [r.extra.get(c) if r is not None else None for r in recs]
            for c in manifest.extra_columns}
    name = split_grouping(cols, data.split)
    return (name, np.asarray([repr(v) for v in cols[name]], dtype=object)) if name else None


def cv_folds(keys: np.ndarray, seed: int) -> np.ndarray:
    """The fold of each entry: entries with one key (manifest row or group) share a fold;
    ``min(CV_FOLDS, number of keys)`` folds, keys dealt to them in a ``seed``-random order."""
    uniq = np.unique(keys)
    folds = min(CV_FOLDS, len(uniq))
    fold_of = dict(zip(uniq.tolist(), np.random.default_rng(seed).permutation(len(uniq))
                       % folds))
    return np.array([fold_of[k] for k in np.asarray(keys).tolist()], dtype=np.int64)


def _key(name: str, setting: dict, part: object) -> tuple:
    return (name, tuple(sorted(setting.items())), part)


def _members(setting: dict) -> tuple[dict, dict]:
    """The ridge and CCA settings of a blend setting."""
    return ({"alpha": setting["alpha"]},
            {"components": setting["components"], "reg": setting["reg"]})


def cv_scores(name: str, grid: list[dict], data: PairedData, seed: int,
              groups: tuple[str, np.ndarray] | None = None, memo: dict | None = None
              ) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-query scores of each closed-form setting of ``grid``, ``CV_FOLDS``-fold on train ∪
    val pairs (folds by manifest row, or by ``groups``' value per row, at most one fold per
    group; each fold scored against its own targets), and the manifest row of each query.
    ``memo``: see `_fit_grid` (the blend reuses each fold's ridge / CCA fits)."""
    qi, tj = (np.concatenate(p) for p in zip(data.pairs("train"), data.pairs("val")))
    rows = data.query.rows[qi]
    fold = cv_folds(groups[1][rows] if groups is not None else rows, seed)
    out: list[list[np.ndarray]] = [[] for _ in grid]
    clusters = []
    for f in range(fold.max() + 1):
        tr, te = fold != f, fold == f
        q, t = _side(data.query, qi[te]), _side(data.target, tj[te])
        rel = data.relevance(q, t)
        clusters += [q.rows, t.rows]
        for i, model in enumerate(_fit_grid(name, grid, *_xy(data, qi[tr], tj[tr]), memo, f)):
            out[i].append(query_scores(model.embed_numpy(q.x, "query"),
                                       model.embed_numpy(t.x, "target"), rel))
    return [np.concatenate(o) for o in out], np.concatenate(clusters)

def closed_form(name: str, cfg: RetrievalConfig, data: PairedData, use_cv: bool,
                kept: dict | None = None, groups: tuple[str, np.ndarray] | None = None,
                memo: dict | None = None):
    """(per-query scores the family is compared on, settings kept, model on train, tried,
    the manifest row of each of those queries). ``memo``: see `_fit_grid`."""
    grid = settings(name, cfg, data, kept)
    fitted = _fit_grid(name, grid, *_xy(data, *data.pairs("train")), memo, "train")
    scored, clusters = (cv_scores(name, grid, data, cfg.train.seed, groups, memo) if use_cv else
                        ([val_score(m, data)[0] for m in fitted], val_clusters(data)))
    tried = [{**s, "score": round(float(sc.mean()), 4)} for s, sc in zip(grid, scored)]
    i, se = one_se(scored, clusters)
    return scored[i], grid[i], fitted[i], {"tried": tried, "one_se": round(se, 4)}, clusters


__all__ = ["BLEND", "BLEND_WEIGHTS", "CLOSED", "CV_FOLDS", "PURE", "blend_fit", "cca_fit",
           "cca_model", "closed_form", "cv_folds", "cv_scores", "ridge_fit", "ridge_model",
           "settings", "split_groups"]
