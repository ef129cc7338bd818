"""Model selection for ``fit retrieval --loss auto`` (the default): try candidate methods cheap
first within ``select_budget_s``, score each on held-out pairs (never test), keep one.

Candidates, in order (closed-form first, then trained):

- ``ridge``: ridge regression of the query onto the target features (the ``ridge`` baseline),
  stored as an ``mse`` regression with a linear head, solved in closed form;
- ``cca``: linear CCA (the ``cca`` baseline, plus the fit's own component rule);
- ``ridge-cca``: a blend of the two (a closed-form ensemble, as AutoGluon's weighted ensemble
  of its models): the similarity is ``w`` times the ridge cosine plus ``1 - w`` times the CCA
  cosine, with the ridge and CCA settings kept above and ``w`` in ``BLEND_WEIGHTS``; one
  AlignModel of two members (`polymodal.nn.dual_encoder`), stored with ``loss: auto``;
- ``infonce``, ``siglip``, ``autoencoder``: trained as ``--loss NAME`` would train them, each in
  ``RUN/selection/NAME/`` (its own train_log / checkpoint).

The score of a model on a set of pairs is the mean, over the queries of both directions, of a
per-query score ``(R@1 + AP) / 2``: AP is a graded version of R@1 (a relevant target at rank 2
scores 1/2, not 0), so the mean moves less from one query to the next than R@1 alone. ``SE`` is the
standard error of a mean of per-query differences between two models on the same queries, cluster-
robust over manifest rows (a row is a query in both directions, and may have several captions: its
queries are one draw, not several). The rule:

1. each closed-form family's settings are scored on the val pairs, or, when the val split has fewer
   than ``CV_BELOW`` pairs, by ``CV_FOLDS``-fold cross-validation on train ∪ val (every fold fitted
   on the others); folds are made of manifest rows, or of whole groups when the split is grouped
   by a column (`polymodal.core.splits.split_grouping`: FSDD's val and test are each a held-out
   speaker, so folds are speakers; at most one fold per group); within a family the first
   setting in its order (the baseline's own settings first) whose score is within one SE of the
   family's best is kept;
2. the closed-form candidate is the better of ridge and CCA on that same score, replaced by the
   blend only if the blend beats it by more than one SE on the same queries (a blend of two
   models is the less simple one);
3. the trained candidate is the best trained one on the val pairs; it is chosen only if it beats
   the closed-form candidate (fitted on train, scored on val) by more than one SE (one-standard-
   error rule: prefer the simpler, closed-form model unless the difference is beyond noise).

Every model kept is fitted on the training pairs only. A candidate not started before the budget
ran out is recorded as ``skipped`` (the first that fits always runs), one that fails as ``failed``.
``RUN/selection.json`` keeps every candidate's val score, settings tried, seconds and the decision.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError
from polymodal.core.runfolder import RunFolder
from polymodal.nn.dual_encoder import AlignModel
from polymodal.tasks.retrieval.config import AUTO, RetrievalConfig
from polymodal.tasks.retrieval.data import PairedData, Side
from polymodal.train import dist

TRAINED = ("infonce", "siglip", "autoencoder")
BLEND = "ridge-cca"
PURE = ("ridge", "cca")
CLOSED = PURE + (BLEND,)
BLEND_WEIGHTS = (0.5, 0.25, 0.75)  # the ridge share of the blended cosine, in preference order
CANDIDATES = CLOSED + TRAINED
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 0.1)  # the baseline's alpha (1.0) first
CCA_REGS = (1e-3, 1e-1)  # the baseline's reg first
BASELINE_CCA_K = 32
CV_BELOW = 200  # val pairs below which closed-form settings are cross-validated on train ∪ val
CV_FOLDS = 5
METRIC = "mean per-query (R@1 + AP)/2 over both directions; one-SE rule"

Trainer = Callable[[RetrievalConfig, Path], tuple[AlignModel, dict]]


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


def _update(name: str, s: dict, data: PairedData) -> dict:
    if name == "ridge":
        return {"loss": "mse", "head": "linear", "dim": data.target.x.shape[1]}
    if name == BLEND:  # no single registered method: the run keeps loss auto
        return {"loss": AUTO}
    return {"loss": "cca", "dim": s["components"]}


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


def one_se(scores: list[np.ndarray], clusters: np.ndarray) -> tuple[int, float]:
    """Index of the first entry whose mean is within one (cluster-robust) paired SE of the best
    mean, and that SE."""
    best = int(np.argmax([s.mean() for s in scores]))
    for i, s in enumerate(scores):
        se = paired_se(scores[best], s, clusters)
        if s.mean() >= scores[best].mean() - se:
            return i, se
    return best, 0.0  # not reached: the best is within 0 of itself


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


def select_model(cfg: RetrievalConfig, data: PairedData, out: Path, train: Trainer,
                 candidates: tuple[str, ...] = CANDIDATES,
                 groups: tuple[str, np.ndarray] | None = None
                 ) -> tuple[RetrievalConfig, AlignModel, dict, dict]:
    """Try ``candidates`` in order within ``cfg.select_budget_s``; returns the chosen model's
    config (``loss`` = the chosen method), the model, its train info and the selection record
    (also written to ``RUN/selection.json``). ``groups``: `split_groups` of the manifest (CV
    folds keep them whole)."""
    t0 = time.perf_counter()
    n_val = len(data.pairs("val")[0])
    if n_val == 0:
        raise PolymodalError("model selection needs val pairs: none in the val split")
    use_cv = n_val < CV_BELOW and CV_FOLDS * 2 <= n_val + len(data.pairs("train")[0])
    qtv = data.query.rows[np.concatenate([data.pairs("train")[0], data.pairs("val")[0]])]
    n_folds = CV_FOLDS if groups is None else int(cv_folds(groups[1][qtv], 0).max()) + 1
    rows: list[dict] = []
    found: dict[str, tuple] = {}  # name -> (val per-query, cfg, model, info, closed-form score)
    kept: dict[str, dict] = {}  # closed-form family -> the settings it kept
    memo: dict = {}  # ridge / CCA fits on train and per CV fold, reused by the blend
    fam_rows = None  # manifest row of each query the closed-form families are scored on
    for name in candidates:
        spent = time.perf_counter() - t0
        if spent >= cfg.select_budget_s and found:  # the cheapest always runs
            rows.append({"name": name, "status": "skipped",
                         "reason": f"budget {cfg.select_budget_s:g} s spent ({spent:.1f} s)"})
            continue
        c0 = time.perf_counter()
        if name == BLEND and not all(n in kept for n in PURE):
            rows.append({"name": name, "status": "skipped",
                         "reason": "needs both ridge and cca"})
            continue
        try:
            if name in TRAINED:
                c = cfg.model_copy(update={"loss": name})
                model, info = train(c, out / "selection" / name)
                sc, per = val_score(model, data)
                found[name] = (sc, c, model, info, None)
                extra = {"settings": {}}
            else:
                fam, keep, model, tried, fam_rows = closed_form(name, cfg, data, use_cv, kept,
                                                                groups, memo)
                kept[name] = keep
                sc, per = val_score(model, data)
                found[name] = (sc, cfg.model_copy(update=_update(name, keep, data)), model, {},
                               fam)
                extra = {"settings": keep, "settings_tried": tried, "cv_score":
                         round(float(fam.mean()), 4) if use_cv else None}
        except PolymodalError as e:
            rows.append({"name": name, "status": "failed", "reason": str(e),
                         "seconds": round(time.perf_counter() - c0, 2)})
            continue
        rows.append({"name": name, "status": "ok", "val_score": round(float(sc.mean()), 4),
                     "val": per, **extra, "seconds": round(time.perf_counter() - c0, 2)})
    if not found:
        raise PolymodalError("model selection: no candidate could be fitted (see "
                             "--select-budget-s)")
    name, decision = decide(found, val_clusters(data), fam_rows)
    sc, chosen_cfg, model, info, _ = found[name]
    record = {"metric": METRIC, "chosen": name, "chosen_loss": chosen_cfg.loss,
              "val_pairs": n_val, "closed_form_settings_by": (
                  f"{n_folds}-fold CV on train+val (val has {n_val} < {CV_BELOW} pairs)"
                  + (f", folds by {groups[0]} (the split's grouping)" if groups else "")
                  if use_cv else "val split"),
              "decision": decision, "budget_s": cfg.select_budget_s,
              "seconds": round(time.perf_counter() - t0, 2), "candidates": rows}
    if dist.is_main():
        RunFolder(out).write_json("selection.json", record)
        log = out / "selection" / name / "train_log.csv"
        if log.is_file():  # the chosen model's log where a run keeps it (report, plots)
            atomic_write_text(out / "train_log.csv", log.read_text())
    return chosen_cfg, model, {**info, "selected": name, "val_score": round(float(sc.mean()), 4)
                               }, record


def decide(found: dict[str, tuple], clusters: np.ndarray | None = None,
           fam_clusters: np.ndarray | None = None) -> tuple[str, dict]:
    """Steps 2 and 3 of the rule (module docstring) on the fitted candidates; ``clusters``: the
    manifest row of each val query, ``fam_clusters``: of each query the closed-form families
    were scored on (CV or val; default ``clusters``)."""
    closed = [n for n in PURE if n in found]
    trained = [n for n in TRAINED if n in found]
    c, blend = None, {}
    if closed:  # the better closed-form family on the score its settings were chosen on
        c = max(closed, key=lambda n: (found[n][4].mean(), -closed.index(n)))
        if BLEND in found:  # the blend only if better than that by more than one SE
            fam = fam_clusters if fam_clusters is not None else clusters
            bdiff = float(found[BLEND][4].mean() - found[c][4].mean())
            bse = paired_se(found[BLEND][4], found[c][4], fam)
            blend = {"blend_difference": round(bdiff, 4), "blend_one_se": round(bse, 4)}
            c = BLEND if bdiff > bse else c
    t = max(trained, key=lambda n: (found[n][0].mean(), -trained.index(n))) if trained else None
    if c is None or t is None:
        return (c or t), {"closed_form": c, "trained": t, **blend,
                          "rule": "only one kind fitted"}
    diff = float(found[t][0].mean() - found[c][0].mean())
    se = paired_se(found[t][0], found[c][0], clusters)
    return (t if diff > se else c), {
        "closed_form": c, "trained": t, **blend, "val_difference": round(diff, 4),
        "one_se": round(se, 4), "rule": "trained only if val difference > one SE"}


def format_selection(record: dict) -> str:
    """A small table: one line per candidate (val score, seconds, settings or why not)."""
    head = f"{'candidate':<12} {'val':>7} {'cv':>7} {'seconds':>8}  settings"
    lines = [f"model selection ({record['metric']}; closed-form settings by "
             f"{record.get('closed_form_settings_by', 'val split')}):", head, "-" * len(head)]
    for r in record["candidates"]:
        mark = " *" if r["name"] == record["chosen"] else ""
        if r["status"] == "ok":
            sets = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
            cv = f"{r['cv_score']:>7.3f}" if r.get("cv_score") is not None else f"{'-':>7}"
            lines.append(f"{r['name'] + mark:<12} {r['val_score']:>7.3f} {cv} "
                         f"{r['seconds']:>8.1f}  {sets}")
        else:
            lines.append(f"{r['name']:<12} {'-':>7} {'-':>7} {r.get('seconds', 0):>8.1f}  "
                         f"{r['status']}: {r['reason']}")
    d = record.get("decision", {})
    if "blend_one_se" in d:
        lines.append(f"{BLEND} - the better of ridge / cca: {d['blend_difference']:+.3f} "
                     f"(one SE {d['blend_one_se']:.3f}): the blend only if > one SE")
    if "one_se" in d:
        lines.append(f"{d['trained']} - {d['closed_form']} on val: {d['val_difference']:+.3f} "
                     f"(one SE {d['one_se']:.3f}): {d['rule']}")
    lines.append(f"chosen: {record['chosen']} (* above); total {record['seconds']:.1f} s")
    return "\n".join(lines)
