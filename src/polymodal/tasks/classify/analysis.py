"""Robustness curves and modality importance for classification runs and compare folders.

* `robustness(path, missing, noise)`: ``path`` is a run folder (one curve) or a ``compare``
  folder (one curve per method, mean ± std over its seeds). Writes ``robustness.csv`` and
  (the CLI draws ``robustness.png`` from it) into ``path`` (or ``out``).
* `explain_dataset(run)`: permutation, ablation and exact Shapley importance of each modality
  on the test split (+ mean attention weights for fusions that have them); writes
  ``importance.json`` into the run folder (the CLI draws ``importance.png``).
* `explain_row(run, row_id)`: prediction, truth, per-modality Shapley contributions to the
  predicted class probability (or the predicted value), attention weights.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import UsageError
from polymodal.metrics.importance import (ablation_importance, permutation_importance,
                                       shapley_values)
from polymodal.metrics.robustness import robustness_sweep
from polymodal.tasks.classify.data import ClassData, decode_outputs, primary_metric
from polymodal.tasks.classify.loaded import LoadedClassifier, load_classifier

ATTENTION_ATTR = "last_weights"


def _evaluator(clf: LoadedClassifier, y: np.ndarray, metric: str):
    def evaluate(x: Mapping[str, np.ndarray], mask: np.ndarray) -> float:
        v = clf.score(y, clf.outputs(x, mask)).get(metric)
        return float("nan") if v is None else float(v)
    return evaluate


def _runs_of(path: Path) -> dict[str, list[Path]]:
    """{method: [run folders]} for a compare folder, or {method: [path]} for one run."""
    if (path / "compare.json").is_file():
        from polymodal.tasks.classify.compare import load_compare

        doc = load_compare(path)
        return {m: [path / r for r in runs] for m, runs in doc["runs"].items()}
    clf = load_classifier(path)
    return {clf.doc["method"]: [path]}


def _split_data(clf: LoadedClassifier, split: str, cache: dict) -> ClassData:
    key = (clf.doc["config"]["manifest"], clf.doc["config"]["features"], clf.doc["config"]["target"],
           json.dumps(clf.labels))
    if key not in cache:
        cache[key] = clf.data()
    data = cache[key]
    if split not in ("train", "val", "test"):
        raise UsageError(f"unknown split '{split}'; valid: train, val, test")
    return data.select(split)


def _csv_text(rows: Sequence[Mapping], cols: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([f"{r[c]:.6g}" if isinstance(r.get(c), float) else r.get(c, "") for c in cols])
    return buf.getvalue()


def robustness(path: str | Path, missing: Mapping[str, Sequence[float]] | None = None,
               noise: Mapping[str, Sequence[float]] | None = None, out: str | Path | None = None,
               split: str = "test", seed: int = 0, repeats: int = 1,
               progress: bool = True) -> list[dict]:
    """Sweep missing-modality fractions and feature SNRs (see module doc). Returns rows
    ``{method, kind, modality, level, value, std, seeds, metric}``."""
    from tqdm.auto import tqdm

    path = Path(path)
    missing, noise = dict(missing or {}), dict(noise or {})
    if not missing and not noise:
        raise UsageError("give --missing MODALITY:FRACTIONS and/or --noise MODALITY:snr=DBS")
    runs = _runs_of(path)
    cache: dict = {}
    per: dict[tuple, list[float]] = {}
    metric = None
    jobs = [(m, r) for m, rs in runs.items() for r in rs]
    for method, run in tqdm(jobs, desc="robustness", unit="run", disable=not progress):
        clf = load_classifier(run)
        metric = primary_metric(clf.problem)
        test = _split_data(clf, split, cache)
        rows = robustness_sweep(_evaluator(clf, test.y, metric), test.x, test.mask,
                                clf.modalities, {k: v for k, v in missing.items()},
                                {k: v for k, v in noise.items()}, seed=seed, repeats=repeats)
        for r in rows:
            per.setdefault((method, r["kind"], r["modality"], r["level"]), []).append(r["value"])
    result = [{"method": m, "kind": k, "modality": mod, "level": lev,
               "value": float(np.mean(v)), "std": float(np.std(v)), "seeds": len(v),
               "metric": metric} for (m, k, mod, lev), v in per.items()]
    dest = Path(out) if out else path
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "robustness.csv", _csv_text(
        result, ["method", "kind", "modality", "level", "value", "std", "seeds", "metric"]))
    return result


def format_robustness(rows: Sequence[Mapping]) -> str:
    """Robustness rows as a text table: one line per (kind, modality, level), methods as
    columns."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = list(dict.fromkeys((r["kind"], r["modality"], r["level"]) for r in rows))
    val = {(r["method"], r["kind"], r["modality"], r["level"]): r for r in rows}
    head = ["condition"] + methods
    lines = []
    for kind, mod, lev in keys:
        cond = f"{mod} {'missing' if kind == 'missing' else 'SNR'} {lev:g}" + (
            "" if kind == "missing" else " dB")
        cells = []
        for m in methods:
            r = val.get((m, kind, mod, lev))
            cells.append("" if r is None else f"{r['value']:.4f}" + (
                f" ± {r['std']:.4f}" if r["seeds"] > 1 else ""))
        lines.append([cond] + cells)
    width = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, width))
                     for row in [head] + lines)


def _weights(clf: LoadedClassifier, x: Mapping[str, np.ndarray], mask: np.ndarray,
             batch: int = 4096) -> np.ndarray | None:
    """Per-row attention / gate weights ``[N, M]`` of the run's fusion, or None."""
    fusion = clf.model.fusion
    if fusion is None or not hasattr(fusion, ATTENTION_ATTR):
        return None
    parts = []
    for s in range(0, len(mask), batch):
        clf.outputs({m: v[s:s + batch] for m, v in x.items()}, mask[s:s + batch])
        w = getattr(fusion, ATTENTION_ATTR)
        if w is None:
            return None
        parts.append(w.numpy().copy())
    return np.concatenate(parts) if parts else None


def explain_dataset(run: str | Path, split: str = "test", repeats: int = 5, seed: int = 0,
                    write: bool = True) -> dict:
    """Dataset-level modality importance on ``split`` (see module doc)."""
    clf = load_classifier(run)
    metric = primary_metric(clf.problem)
    data = _split_data(clf, split, {})
    ev = _evaluator(clf, data.y, metric)
    mods = clf.modalities
    shap = shapley_values(ev, data.x, data.mask, mods)
    res = {"run": str(run), "method": clf.doc["method"], "split": split, "metric": metric,
           "n": len(data.ids), "modalities": mods, "base": float(ev(data.x, data.mask)),
           "permutation": permutation_importance(ev, data.x, data.mask, mods, repeats, seed),
           "ablation": ablation_importance(ev, data.x, data.mask, mods),
           "shapley": {"values": {m: float(v) for m, v in shap["values"].items()},
                       "v_all": float(shap["v_all"]), "v_none": float(shap["v_none"])},
           "present_fraction": {m: float(data.mask[:, j].mean()) for j, m in enumerate(mods)}}
    w = _weights(clf, data.x, data.mask)
    if w is not None:
        res["mean_attention"] = {m: float(w[data.mask[:, j], j].mean()) if data.mask[:, j].any()
                                 else None for j, m in enumerate(mods)}
    if write:
        atomic_write_text(Path(run) / "importance.json", json.dumps(res, indent=1))
    return res


def explain_row(run: str | Path, row_id: str) -> dict:
    """Explain one manifest row's prediction (see module doc)."""
    clf = load_classifier(run)
    data = clf.data()
    i = data.index(str(row_id))
    x = {m: v[i:i + 1] for m, v in data.x.items()}
    mask = data.mask[i:i + 1]
    out = clf.outputs(x, mask)
    pred, proba = decode_outputs(out, clf.spec)
    problem, labels = clf.problem, clf.labels
    if problem == "classification":
        k = int(proba[0].argmax())
        target = f"probability of '{labels[k]}'"

        def value(xx, mm):
            return decode_outputs(clf.outputs(xx, mm), clf.spec)[1][:, k]
        truth = labels[int(data.y[i])] if data.has_y[i] else None
    elif problem == "multilabel":
        k = int(proba[0].argmax())
        target = f"probability of label '{labels[k]}'"

        def value(xx, mm):
            return decode_outputs(clf.outputs(xx, mm), clf.spec)[1][:, k]
        truth = [lab for lab, v in zip(labels, data.y[i]) if v > 0.5] if data.has_y[i] else None
    else:
        target = "predicted value"

        def value(xx, mm):
            return decode_outputs(clf.outputs(xx, mm), clf.spec)[1]
        truth = float(data.y[i]) if data.has_y[i] else None
    shap = shapley_values(value, x, mask, clf.modalities)
    res = {"row": row_id, "manifest_row": int(data.row[i]), "split": str(data.split[i]),
           "method": clf.doc["method"], "prediction": pred[0], "truth": truth,
           "present": [m for j, m in enumerate(clf.modalities) if mask[0, j]],
           "shapley_target": target,
           "shapley": {m: float(np.asarray(v)[0]) for m, v in shap["values"].items()},
           "v_all": float(np.asarray(shap["v_all"])[0]),
           "v_none": float(np.asarray(shap["v_none"])[0])}
    if problem != "regression":
        top = np.argsort(-proba[0])[:3]
        res["top"] = [(labels[j], float(proba[0, j])) for j in top]
    w = _weights(clf, x, mask)
    if w is not None:
        res["attention"] = {m: float(w[0, j]) for j, m in enumerate(clf.modalities)}
    return res


def format_explanation(res: Mapping) -> str:
    """A row explanation (`explain_row`) or dataset importance (`explain_dataset`) as text."""
    if "row" in res:
        lines = [f"row {res['row']} (manifest row {res['manifest_row']}, split {res['split']}, "
                 f"method {res['method']}); present: {', '.join(res['present'])}",
                 f"prediction: {res['prediction']}   truth: {res['truth']}"]
        if "top" in res:
            lines.append("top: " + ", ".join(f"{lab} {p:.3f}" for lab, p in res["top"]))
        lines.append(f"Shapley contributions to the {res['shapley_target']} "
                     f"(none present: {res['v_none']:.4f} -> all: {res['v_all']:.4f}):")
        lines += [f"  {m:<8} {v:+.4f}" for m, v in res["shapley"].items()]
        if "attention" in res:
            lines.append("attention weights: " + ", ".join(
                f"{m} {v:.3f}" for m, v in res["attention"].items()))
        return "\n".join(lines)
    lines = [f"{res['method']}: test {res['metric']} {res['base']:.4f} on {res['n']} rows "
             f"({res['split']} split)",
             f"{'modality':<10}{'present':>9}{'permutation':>20}{'ablation':>10}{'shapley':>10}"
             + ("{:>11}".format("attention") if "mean_attention" in res else "")]
    for m in res["modalities"]:
        p = res["permutation"][m]
        att = res.get("mean_attention", {}).get(m)
        lines.append(f"{m:<10}{res['present_fraction'][m]:>9.3f}"
                     f"{p['mean']:>+12.4f} ± {p['std']:.4f}{res['ablation'][m]:>+10.4f}"
                     f"{res['shapley']['values'][m]:>+10.4f}"
                     + (f"{att:>11.3f}" if att is not None else ""))
    s = res["shapley"]
    lines.append(f"Shapley: v(none) {s['v_none']:.4f} -> v(all) {s['v_all']:.4f}")
    return "\n".join(lines)


__all__ = ["explain_dataset", "explain_row", "format_explanation", "format_robustness",
           "robustness"]
