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

This module runs the candidates and decides; the closed-form fits, their settings and the CV are
`polymodal.tasks.retrieval.closed_form`, the scores and SEs `polymodal.tasks.retrieval.scoring`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError
from polymodal.core.runfolder import RunFolder
from polymodal.nn.dual_encoder import AlignModel
from polymodal.tasks.retrieval.closed_form import (BLEND, CLOSED, CV_FOLDS, PURE,
                                                   closed_form, cv_folds)
from polymodal.tasks.retrieval.config import AUTO, RetrievalConfig
from polymodal.tasks.retrieval.data import PairedData
from polymodal.tasks.retrieval.scoring import paired_se, val_clusters, val_score
from polymodal.train import dist

TRAINED = ("infonce", "siglip", "autoencoder")
CANDIDATES = CLOSED + TRAINED
CV_BELOW = 200  # val pairs below which closed-form settings are cross-validated on train ∪ val
METRIC = "mean per-query (R@1 + AP)/2 over both directions; one-SE rule"

Trainer = Callable[[RetrievalConfig, Path], tuple[AlignModel, dict]]


def _update(name: str, s: dict, data: PairedData) -> dict:
    if name == "ridge":
        return {"loss": "mse", "head": "linear", "dim": data.target.x.shape[1]}
    if name == BLEND:  # no single registered method: the run keeps loss auto
        return {"loss": AUTO}
    return {"loss": "cca", "dim": s["components"]}


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
