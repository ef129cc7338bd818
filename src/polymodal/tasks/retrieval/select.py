"""Model selection for ``fit retrieval --loss auto`` (the default): try candidate methods cheap
first within ``select_budget_s``, score each on the VALIDATION split only, keep the best.

Candidates, in order (closed-form first, then trained):

- ``ridge``: ridge regression of the query onto the target features (the ``ridge`` baseline,
  alpha chosen on val), stored as an ``mse`` regression with a linear head, solved in closed form;
- ``cca``: linear CCA (the ``cca`` baseline and the fit's own component rule; components and
  regularisation chosen on val);
- ``infonce``, ``siglip``, ``autoencoder``: trained as ``--loss NAME`` would train them, each in
  ``RUN/selection/NAME/`` (its own train_log / checkpoint).

The score is the mean R@1 of both directions on the val pairs (ties: the cheaper, earlier
candidate). A candidate not started before the budget ran out is recorded as ``skipped`` (the
first that fits always runs, so there is a model), one that fails as ``failed``; nothing is refitted on test. ``RUN/selection.json`` keeps every
candidate's val score, settings and seconds; the chosen model is the run's model.
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
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.data import PairedData
from polymodal.train import dist

TRAINED = ("infonce", "siglip", "autoencoder")
CANDIDATES = ("ridge", "cca") + TRAINED
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0)
CCA_REGS = (1e-3, 1e-1)
METRIC = "val R@1 (mean of both directions)"

Trainer = Callable[[RetrievalConfig, Path], tuple[AlignModel, dict]]


def val_score(model: AlignModel, data: PairedData) -> tuple[float, dict[str, float]]:
    """Mean R@1 of both directions on the val split (and each direction's R@1)."""
    from polymodal.metrics.scores import retrieval_metrics

    q, t = data.side_split(data.query, "val"), data.side_split(data.target, "val")
    if len(q.x) == 0 or len(t.x) == 0:
        raise PolymodalError("model selection needs val pairs: none in the val split")
    qe, te = model.embed_numpy(q.x, "query"), model.embed_numpy(t.x, "target")
    sim, rel = qe @ te.T, data.relevance(q, t)
    names = (data.query.modality, data.target.modality)
    per = {f"{names[0]}->{names[1]}": retrieval_metrics(sim, rel)["R@1"],
           f"{names[1]}->{names[0]}": retrieval_metrics(sim.T, rel.T)["R@1"]}
    return float(np.mean(list(per.values()))), per


def _train_xy(data: PairedData) -> tuple[np.ndarray, np.ndarray]:
    qi, tj = data.pairs("train")
    return data.query.x[qi].astype(np.float64), data.target.x[tj].astype(np.float64)


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


def ridge_model(data: PairedData, alpha: float) -> AlignModel:
    """The ridge baseline (`metrics.baselines.RidgeMap`) as an AlignModel: query head
    ``W'(x - x_mean) + y_mean``, target side the raw target features (no centring)."""
    from polymodal.metrics.baselines import RidgeMap

    X, Y = _train_xy(data)
    m = RidgeMap(alpha).fit(X, Y)
    dq, dt = X.shape[1], Y.shape[1]
    model = AlignModel({"query": _linear(dq, dt), "target": {"kind": "identity", "in_dim": dt}},
                       {"query": torch.zeros(dq), "target": torch.zeros(dt)}, {})
    _set_linear(model, "query", m.coef_, m.y_mean_, m.x_mean_)
    return model


def cca_model(data: PairedData, k: int, reg: float) -> AlignModel:
    """Linear CCA with ``k`` components as an AlignModel (two linear heads, no bias)."""
    from polymodal.objectives.cca import LinearCCA

    X, Y = _train_xy(data)
    cca = LinearCCA(n_components=k, reg=reg).fit(X, Y)
    dq, dt = X.shape[1], Y.shape[1]
    k = cca.x_weights_.shape[1]
    model = AlignModel({"query": _linear(dq, k), "target": _linear(dt, k)},
                       {"query": torch.zeros(dq), "target": torch.zeros(dt)}, {})
    _set_linear(model, "query", cca.x_weights_, None, cca.x_mean_)
    _set_linear(model, "target", cca.y_weights_, None, cca.y_mean_)
    return model


def cca_components(cfg: RetrievalConfig, data: PairedData) -> list[int]:
    """The fit's own rule (``min(dim, n/8)``), the baseline's 32 and 64, within the data."""
    n = len(data.pairs("train")[0])
    dmax = min(data.query.x.shape[1], data.target.x.shape[1], max(2, n - 1))
    ks = {max(2, min(cfg.dim, n // 8)), 32, 64}
    return sorted({min(k, dmax) for k in ks})


def _closed_form(name: str, cfg: RetrievalConfig, data: PairedData):
    """(settings, model, config update) of each setting tried for a closed-form candidate."""
    if name == "ridge":
        for a in RIDGE_ALPHAS:
            yield ({"alpha": a}, ridge_model(data, a),
                   {"loss": "mse", "head": "linear", "dim": data.target.x.shape[1]})
    else:
        for k in cca_components(cfg, data):
            for reg in CCA_REGS:
                yield {"components": k, "reg": reg}, cca_model(data, k, reg), {"loss": "cca",
                                                                                "dim": k}


def select_model(cfg: RetrievalConfig, data: PairedData, out: Path, train: Trainer,
                 candidates: tuple[str, ...] = CANDIDATES
                 ) -> tuple[RetrievalConfig, AlignModel, dict, dict]:
    """Try ``candidates`` in order within ``cfg.select_budget_s``; returns the chosen model's
    config (``loss`` = the chosen method), the model, its train info and the selection record
    (also written to ``RUN/selection.json``)."""
    t0 = time.perf_counter()
    rows: list[dict] = []
    best: tuple[float, str, RetrievalConfig, AlignModel, dict] | None = None
    for name in candidates:
        spent = time.perf_counter() - t0
        if spent >= cfg.select_budget_s and best is not None:  # the cheapest always runs
            rows.append({"name": name, "status": "skipped",
                         "reason": f"budget {cfg.select_budget_s:g} s spent ({spent:.1f} s)"})
            continue
        c0 = time.perf_counter()
        try:
            if name in TRAINED:
                c = cfg.model_copy(update={"loss": name})
                model, info = train(c, out / "selection" / name)
                score, per = val_score(model, data)
                found = (score, per, {}, c, model, info)
            else:
                found = None
                for settings, model, upd in _closed_form(name, cfg, data):
                    score, per = val_score(model, data)
                    if found is None or score > found[0]:
                        found = (score, per, settings, cfg.model_copy(update=upd), model, {})
        except PolymodalError as e:
            rows.append({"name": name, "status": "failed", "reason": str(e),
                         "seconds": round(time.perf_counter() - c0, 2)})
            continue
        score, per, settings, c, model, info = found
        rows.append({"name": name, "status": "ok", "val_score": round(score, 4), "val": per,
                     "settings": settings, "seconds": round(time.perf_counter() - c0, 2)})
        if best is None or score > best[0]:  # strict: ties keep the cheaper, earlier one
            best = (score, name, c, model, info)
    if best is None:
        raise PolymodalError("model selection: no candidate could be fitted (see "
                             "--select-budget-s)")
    score, name, chosen_cfg, model, info = best
    record = {"metric": METRIC, "chosen": name, "chosen_loss": chosen_cfg.loss,
              "budget_s": cfg.select_budget_s,
              "seconds": round(time.perf_counter() - t0, 2), "candidates": rows}
    if dist.is_main():
        RunFolder(out).write_json("selection.json", record)
        log = out / "selection" / name / "train_log.csv"
        if log.is_file():  # the chosen model's log where a run keeps it (report, plots)
            atomic_write_text(out / "train_log.csv", log.read_text())
    return chosen_cfg, model, {**info, "selected": name, "val_score": round(score, 4)}, record


def format_selection(record: dict) -> str:
    """A small table: one line per candidate (val score, seconds, settings or why not)."""
    head = f"{'candidate':<12} {'val R@1':>8} {'seconds':>8}  settings"
    lines = [f"model selection on the val split ({record['metric']}):", head, "-" * len(head)]
    for r in record["candidates"]:
        mark = " *" if r["name"] == record["chosen"] else ""
        if r["status"] == "ok":
            sets = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
            lines.append(f"{r['name'] + mark:<12} {r['val_score']:>8.3f} {r['seconds']:>8.1f}  "
                         f"{sets}")
        else:
            lines.append(f"{r['name']:<12} {'-':>8} {r.get('seconds', 0):>8.1f}  "
                         f"{r['status']}: {r['reason']}")
    lines.append(f"chosen: {record['chosen']} (* above); total {record['seconds']:.1f} s")
    return "\n".join(lines)
