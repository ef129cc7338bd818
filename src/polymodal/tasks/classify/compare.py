"""Compare fusion methods and unimodal baselines on the same features and the same splits.

``compare_methods(config, out, methods="all", seeds=3)`` encodes the manifest once (cached; or
uses ``config.features``), prepares the data once, then trains every method with every seed
(``config`` gives everything else: hidden size, modality dropout, epochs, …). It writes::

    OUT/results.csv   one row per (method, seed): test metrics, train_seconds, params, peak_mem_mb
    OUT/summary.csv   one row per method: "mean ± std" over seeds, best first
    OUT/compare.json  the base config, the methods, seeds and run folders
    OUT/runs/<method>-s<seed>/   a full classification run folder (see `fit_classifier`)
    OUT/report.html   written by the CLI (`polymodal.report.write_report`); tasks never import reports

Method "all" = every fusion in `FUSIONS` (but those on pixels: film, relation) plus
``unimodal:<m>`` for each modality.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.nn.fusion import FUSIONS
from polymodal.tasks.classify.data import primary_metric
from polymodal.tasks.classify.config import ClassifierConfig
from polymodal.tasks.classify.fit import UNIMODAL, check_method, fit_prepared, prepare_run

CLASS_METRICS = ("accuracy", "macro_f1", "auroc")
REG_METRICS = ("r2", "mae")
COST = ("train_seconds", "params", "peak_mem_mb")


def vector_fusions() -> list[str]:
    """The fusions of per-modality vectors ("all"): not those that need pixels (film, …)."""
    from polymodal.nn.registry import FUSIONS as REGISTRY

    return [n for n in FUSIONS if REGISTRY[n].metadata.get("input") != "pixels"]


def resolve_methods(methods: str | Sequence[str], modalities: Sequence[str]) -> list[str]:
    """``"all"`` or a comma list / list of names -> checked method names (fusions first)."""
    mods = sorted(modalities)
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    out: list[str] = []
    for m in methods:
        if m == "all":
            out += (vector_fusions() if len(mods) > 1 else []) + [UNIMODAL + x for x in mods]
        elif m == "unimodal":
            out += [UNIMODAL + x for x in mods]
        else:
            check_method(m, mods)
            out.append(m)
    if not out:
        raise UsageError("no methods to compare; give --fusions all or a comma list such as "
                         f"early,late,{UNIMODAL}{mods[0] if mods else 'image'}")
    return list(dict.fromkeys(out))


def run_name(method: str, seed: int) -> str:
    """Folder name of one run: ``unimodal:image`` -> ``unimodal-image-s0``."""
    return f"{method.replace(':', '-')}-s{seed}"


def _fmt(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}g}" if abs(v) >= 100 else f"{v:.{digits}f}"


def summarise(results: list[dict], metrics: Sequence[str]) -> list[dict]:
    """One row per method: ``"mean ± std"`` (population std over seeds) of each metric and
    cost column; sorted best first by the first metric (lowest first for mae)."""
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["method"], []).append(r)
    rows = []
    for method, rs in by.items():
        row: dict = {"method": method, "seeds": len(rs)}
        for k in list(metrics) + list(COST):
            vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
            if not vals:
                row[k] = ""
                continue
            mean, std = float(np.mean(vals)), float(np.std(vals))
            row[k] = (f"{mean:.0f}" if k == "params" else
                      f"{_fmt(mean, 3 if k in COST else 4)} ± {_fmt(std, 3 if k in COST else 4)}")
            row["_" + k] = mean
        rows.append(row)
    key = metrics[0]
    sign = 1 if key == "mae" else -1
    rows.sort(key=lambda r: sign * r.get("_" + key, -np.inf * sign))
    return rows


def _csv(rows: list[dict], cols: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return buf.getvalue()


def format_summary(rows: list[dict], metrics: Sequence[str]) -> str:
    """The summary as an aligned text table."""
    cols = ["method", "seeds", *metrics, *COST]
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    width = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, width))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, width)) for row in cells]
    return "\n".join(lines)


def compare_methods(config: ClassifierConfig, out: str | Path,
                    methods: str | Sequence[str] = "all", seeds: int = 3,
                    progress: bool = True) -> dict:
    """Train ``methods`` x ``seeds`` on one prepared dataset; write results (see module doc).

    Returns ``{"results": [...], "summary": [...], "metrics": [...], "problem": ...}``."""
    if not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"--seeds must be a positive integer, got {seeds!r}")
    out = Path(out)
    chosen: list[str] = []

    def check(mods: list[str]) -> None:  # every method and its options, before any encoding
        chosen.extend(resolve_methods(methods, mods))
        for m in chosen:
            check_method(m, mods, config.fusion_options)

    config, manifest, feats, data, spec, problems = prepare_run(config, out, progress, check)
    names, mods = chosen, data.modalities
    if problems and progress:
        print(f"warning: {len(problems)} rows skipped ({problems[0].reason}; first: row "
              f"{problems[0].row})")
    metrics = list(REG_METRICS if spec["problem"] == "regression" else CLASS_METRICS)
    jobs = [(m, config.train.seed + s) for m in names for s in range(seeds)]
    from tqdm.auto import tqdm

    results = []
    bar = tqdm(jobs, desc="compare", unit="run", disable=not progress)
    for method, seed in bar:
        bar.set_postfix_str(f"{method} seed {seed}")
        cfg = config.model_copy(update={
            "fusion": method, "modalities": mods, "features": str(feats),
            "train": config.train.model_copy(update={"seed": seed, "progress": False})})
        res = fit_prepared(cfg, data, spec, problems, manifest, feats,
                           out / "runs" / run_name(method, seed), progress=False)
        results.append({"method": method, "seed": seed, **res["metrics"],
                        **{k: res[k] for k in COST}, "epochs_run": res["epochs_run"],
                        "run": f"runs/{run_name(method, seed)}"})
    cols = ["method", "seed", *metrics, *COST, "epochs_run", "run"]
    atomic_write_text(out / "results.csv", _csv(results, cols))
    summary = summarise(results, metrics)
    atomic_write_text(out / "summary.csv", _csv(summary, ["method", "seeds", *metrics, *COST]))
    doc = {"problem": spec["problem"], "primary_metric": primary_metric(spec["problem"]),
           "metrics": metrics, "methods": names, "seeds": seeds, "modalities": mods,
           "features": str(Path(feats).resolve()), "skipped_rows": len(problems),
           "n_train": len(data.select("train").ids), "n_val": len(data.select("val").ids),
           "n_test": len(data.select("test").ids),
           "runs": {m: [r["run"] for r in results if r["method"] == m] for m in names},
           "config": json.loads(config.model_dump_json())}
    atomic_write_text(out / "compare.json", json.dumps(doc, indent=1))
    return {"results": results, "summary": summary, "metrics": metrics,
            "problem": spec["problem"]}


def load_compare(folder: str | Path) -> dict:
    """compare.json of a compare folder (a clear error if it is not one)."""
    p = Path(folder) / "compare.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise PolymodalError(f"{folder}: not a compare folder ({e})") from None


__all__ = ["compare_methods", "format_summary", "load_compare", "resolve_methods", "run_name",
           "summarise"]
