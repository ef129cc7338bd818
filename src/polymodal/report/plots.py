"""Plots of the analysis outputs a run or compare folder holds (robustness.csv,
importance.json): drawn by the report and saved as PNGs by the CLI. Tasks write the data, never
the pictures (tasks never import this layer)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from polymodal.core.atomic import atomic_path
from polymodal.core.errors import PolymodalError, UsageError


def draw_robustness(rows: Sequence[Mapping], metric: str = "accuracy",
                    title: str = "") -> Any:
    """One panel per (kind, modality), one line per ``method`` (mean, with ``std`` as error
    bars when given). Missing: x = fraction missing; noise: x = SNR in dB (decreasing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["kind"], r["modality"]) for r in rows))
    if not panels:
        raise UsageError("nothing to plot: give --missing or --noise levels")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    methods = list(dict.fromkeys(r.get("method", "model") for r in rows))
    cmap = plt.get_cmap("tab10")
    for ax, (kind, mod) in zip(axes[0], panels):
        for c, meth in enumerate(methods):
            pts = sorted((r["level"], r["value"], r.get("std", 0.0)) for r in rows
                         if r["kind"] == kind and r["modality"] == mod
                         and r.get("method", "model") == meth)
            if not pts:
                continue
            lv, val, sd = map(np.array, zip(*pts))
            style = "--" if str(meth).partition(":")[0] == "unimodal" else "-"  # baselines dashed
            ax.errorbar(lv, val, yerr=sd if np.any(sd) else None, marker="o", ms=3,
                        ls=style, color=cmap(c % 10), capsize=2, label=str(meth))
        if kind == "noise":
            ax.invert_xaxis()
            ax.set_xlabel(f"{mod} SNR (dB, lower = noisier)")
        else:
            ax.set_xlabel(f"fraction of test rows with {mod} missing")
        ax.set_ylabel(metric), ax.grid(alpha=.3)
        ax.set_title(f"{kind}: {mod}")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
                       frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def draw_importance(result: Mapping, metric: str = "accuracy") -> Any:
    """Grouped bars: permutation, ablation and Shapley importance per modality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mods = list(result["modalities"])
    kinds = [("permutation", [result["permutation"][m]["mean"] for m in mods],
              [result["permutation"][m]["std"] for m in mods]),
             ("ablation", [result["ablation"][m] for m in mods], None),
             ("shapley", [result["shapley"]["values"][m] for m in mods], None)]
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(mods) + 2), 4))
    width = 0.8 / len(kinds)
    pos = np.arange(len(mods))
    for k, (name, vals, err) in enumerate(kinds):
        ax.bar(pos + (k - 1) * width, vals, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(pos, mods)
    ax.axhline(0, color="k", lw=.6)
    ax.set_ylabel(f"{metric} attributed / lost")
    ax.set_title(f"modality importance ({result.get('split', 'test')} split, "
                 f"{metric} with all = {result['base']:.3f})")
    ax.legend(fontsize=8), ax.grid(alpha=.3, axis="y")
    return fig


def save_png(fig: Any, path: str | Path) -> Path:
    """Write a figure as a PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def read_robustness(path: str | Path) -> list[dict]:
    """The rows of a ``robustness.csv`` with numbers as numbers."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as e:
        raise PolymodalError(f"{path}: cannot read ({e})") from None
    for r in rows:
        for k in ("level", "value", "std"):
            r[k] = float(r[k]) if r.get(k) not in (None, "") else 0.0
    return rows


def robustness_png(folder: str | Path, rows: Sequence[Mapping] | None = None,
                   title: str = "") -> Path:
    """``folder/robustness.png`` from ``rows`` (default: ``folder/robustness.csv``)."""
    folder = Path(folder)
    rows = list(rows) if rows is not None else read_robustness(folder / "robustness.csv")
    metric = next((r.get("metric") for r in rows if r.get("metric")), "accuracy")
    return save_png(draw_robustness(rows, metric, title or f"{folder.name}: test {metric} "
                                    "under missing / noisy modalities"),
                    folder / "robustness.png")


def importance_png(run: str | Path, result: Mapping | None = None) -> Path:
    """``run/importance.png`` from ``result`` (default: ``run/importance.json``)."""
    run = Path(run)
    result = result if result is not None else json.loads((run / "importance.json").read_text())
    return save_png(draw_importance(result, result.get("metric", "accuracy")),
                    run / "importance.png")
