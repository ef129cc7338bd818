"""HTML reports for prediction runs: one classification run (``fit classify``) or a ``compare``
folder. Plots: confusion matrix (from predictions.csv), accuracy by modalities present,
attention / gate weights by class (fusions that have them), training loss, and, when the
analysis commands wrote them, robustness curves and modality-importance bars."""
from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError
from polymodal.report.retrieval import (_fig_b64, _figure, _loss_figure, _mean_std, _page, _plt, _read_csv,
                                   _table)


def _sort_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def confusion_section(predictions: Path, title: str = "Confusion matrix (test split)") -> str:
    """Confusion matrix + accuracy by the modalities each test row had (classification runs;
    empty for regression / multilabel or without predictions.csv)."""
    if not predictions.is_file():
        return ""
    rows, cols = _read_csv(predictions)
    if not rows or "prediction" not in cols or any("|" in r["target"] for r in rows) or \
            any(r.get("confidence", "") == "" for r in rows):
        return ""
    labels = _sort_labels({r["target"] for r in rows} | {r["prediction"] for r in rows})
    pos = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), int)
    for r in rows:
        cm[pos[r["target"]], pos[r["prediction"]]] += 1
    plt = _plt()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(min(10, 2 + 0.45 * n), min(9, 1.6 + 0.42 * n)))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, fraction=0.046)
    if n <= 25:
        ax.set_xticks(range(n), labels, rotation=90 if n > 12 else 0)
        ax.set_yticks(range(n), labels)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=8,
                            color="white" if cm[i, j] > cm.max() / 2 else "black")
    acc = np.trace(cm) / max(1, cm.sum())
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(f"{len(rows)} test rows, accuracy {acc:.3f}")
    by: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        by[r.get("modalities") or "(none)"].append(r["target"] == r["prediction"])
    table = _table(["modalities present", "test rows", "accuracy"],
                   [[k, len(v), float(np.mean(v))] for k, v in sorted(by.items())])
    big = " big" if n > 12 else ""  # many classes: do not shrink the matrix to the row height
    return (f"<div><h2>{html.escape(title)}</h2><img class='plot{big}' src='{_fig_b64(fig)}'>"
            "</div><div><h2>Accuracy by modalities present</h2>" + table + "</div>")


def attention_section(run: Path, max_classes: int = 20) -> str:
    """Mean attention / gate weight of each modality per true class on the test split, for
    fusions that expose ``last_weights`` (empty otherwise or when the features are gone)."""
    try:
        from polymodal.tasks.classify.analysis import _weights
        from polymodal.tasks.classify.loaded import load_classifier

        clf = load_classifier(run)
        fusion = clf.model.fusion
        if fusion is None or not hasattr(fusion, "last_weights"):
            return ""
        test = clf.data().select("test")
        w = _weights(clf, test.x, test.mask)
    except (PolymodalError, OSError, KeyError, ValueError):
        return ""
    if w is None or not len(w) or clf.problem != "classification":
        return ""
    mods, labels = clf.modalities, [str(x) for x in clf.labels]
    full = test.mask.all(1)
    if full.any() and float(np.ptp(w[full], axis=0).max()) < 1e-4:  # e.g. late fusion's mean
        return (f"<div><h2>Fusion weights by class</h2><p>{html.escape(clf.doc['method'])}: "
                "the same weights for every test row with all modalities: " + ", ".join(
                    f"{m} {w[full][0, j]:.3f}" for j, m in enumerate(mods)) + "</p></div>")
    classes = sorted(set(test.y.tolist()))[:max_classes]
    means = np.array([w[test.y == c].mean(0) for c in classes])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(classes) + 2), 3.6))
    bottom = np.zeros(len(classes))
    for j, m in enumerate(mods):
        ax.bar([labels[c] for c in classes], means[:, j], bottom=bottom, label=m)
        bottom += means[:, j]
    ax.set_xlabel("true class"), ax.set_ylabel("mean weight (test rows)")
    ax.set_ylim(0, 1.0), ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"{clf.doc['method']} fusion weights per modality")
    overall = {m: float(w[:, j].mean()) for j, m in enumerate(mods)}
    return ("<div><h2>Fusion weights by class</h2><img class='plot' src='" + _fig_b64(fig) +
            "'><p>mean over all test rows: " +
            ", ".join(f"{m} {v:.3f}" for m, v in overall.items()) + "</p></div>")


def _figure_section(fig: Any, title: str) -> str:
    from polymodal.report.retrieval import _fig_b64

    return f"<div><h2>{html.escape(title)}</h2><img class='plot' src='{_fig_b64(fig)}'></div>"


def analysis_section(folder: Path, table: bool = True, max_rows: int = 40) -> str:
    """Robustness curves and modality importance written by the analysis commands, if any
    (``table``: also the robustness table, first ``max_rows`` rows)."""
    from polymodal.report.plots import draw_importance, draw_robustness, read_robustness

    parts = []
    if (folder / "robustness.csv").is_file():  # drawn from the data, not a stale picture
        rows = read_robustness(folder / "robustness.csv")
        metric = next((r.get("metric") for r in rows if r.get("metric")), "accuracy")
        parts.append(_figure_section(draw_robustness(rows, metric, f"{folder.name}: test "
                                                     f"{metric} under missing / noisy "
                                                     "modalities"),
                                     "Robustness: missing and noisy modalities"))
    if (folder / "importance.json").is_file():
        res = json.loads((folder / "importance.json").read_text())
        parts.append(_figure_section(draw_importance(res, res.get("metric", "accuracy")),
                                     "Modality importance"))
    out = "".join(p for p in parts if p)
    return out + (robustness_table(folder, max_rows) if table else "")


def robustness_table(folder: Path, max_rows: int = 40) -> str:
    """``folder/robustness.csv`` as a table (empty when absent)."""
    rows, cols = _read_csv(folder / "robustness.csv") if (folder / "robustness.csv").is_file() \
        else ([], [])
    if not rows:
        return ""
    more = f" (first {max_rows} of {len(rows)})" if len(rows) > max_rows else ""
    return (f"<div><h2>Robustness table{more}</h2>" +
            _table(cols, [[r.get(c, "") for c in cols] for r in rows[:max_rows]]) + "</div>")


def _metrics_rows(res: dict) -> list[list[Any]]:
    test, val = res.get("metrics", {}), res.get("val_metrics", {})
    return [[k, v, val.get(k, "-")] for k, v in test.items()]


def classification_report(run_dir: str | Path, out: str | Path) -> Path:
    """Report for one classification run: metrics, confusion matrix, accuracy by modalities
    present, per-modality facts, attention weights, loss curve, robustness / importance."""
    from polymodal.core.runfolder import RunFolder

    rf = RunFolder.open(run_dir, "classification")
    root, doc, res = rf.root, rf.doc, rf.read_json("metrics.json")
    mods = doc.get("modalities", [])
    parts = [f"<p>{html.escape(str(doc.get('problem')))} of <b>{html.escape(str(res.get('target')))}"
             f"</b> with <b>{html.escape(str(doc.get('method')))}</b> over "
             f"{html.escape(', '.join(mods))}; manifest <code>{html.escape(str(rf.config.get('manifest')))}"
             "</code>.</p>",
             "<div class='plots'><div><h2>Metrics</h2>" +
             _table(["metric", "test", "val"], _metrics_rows(res)) + "</div><div><h2>Run</h2>" +
             _table(["run", "value"], [[k, res[k]] for k in (
                 "n_train", "n_val", "n_test", "skipped_rows", "epochs_run", "best_epoch",
                 "train_seconds", "params", "peak_mem_mb") if k in res]) + "</div></div>",
             "<h2>Modalities</h2>" + _table(["modality", "dim", "encoder"], [
                 [m, doc.get("dims", {}).get(m, ""), rf.encoders.get(m, {}).get("id", "")]
                 for m in mods])]
    plots = [confusion_section(root / "predictions.csv"), attention_section(root),
             _loss_figure(root)]
    parts.append("<div class='plots'>" + "".join(plots) + "</div>")
    parts.append("<div class='plots'>" + analysis_section(root) + "</div>")
    out = Path(out)
    atomic_write_text(out, _page(f"polymodal classification report: {root.name}", parts))
    return out


def _importance_across(root: Path, runs: dict[str, list[str]]) -> str:
    """Grouped Shapley bars per method from each method's first run's importance.json."""
    found = {}
    for method, rs in runs.items():
        for r in rs[:1]:
            try:
                found[method] = json.loads((root / r / "importance.json").read_text())
            except (OSError, ValueError):
                pass
    if not found:
        return ""
    mods = list(next(iter(found.values()))["modalities"])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, 0.38 * len(found) + 1.2), 3.4))
    width = 0.8 / len(mods)
    pos = np.arange(len(found))
    for j, m in enumerate(mods):
        ax.bar(pos + (j - (len(mods) - 1) / 2) * width,
               [d["shapley"]["values"].get(m, 0.0) for d in found.values()], width, label=m)
    ax.set_xticks(pos, list(found), rotation=45, ha="right")
    ax.axhline(0, color="k", lw=.6), ax.legend(fontsize=8), ax.grid(alpha=.3, axis="y")
    metric = next(iter(found.values())).get("metric", "metric")
    ax.set_ylabel(f"Shapley share of test {metric}")
    ax.set_title("first seed of each method", fontsize=10)
    return _figure("Modality importance (Shapley)", fig)


def compare_report(compare_dir: str | Path, out: str | Path, max_rows: int = 60) -> Path:
    """Report for a ``compare`` folder: summary table, accuracy bars with std, results per
    seed, robustness curves, importance by method, and the best method's confusion matrix
    and attention weights."""
    plt = _plt()
    root = Path(compare_dir)
    summary, header = _read_csv(root / "summary.csv")
    if not summary:
        raise PolymodalError(f"{root / 'summary.csv'}: no rows (an empty or unfinished compare)")
    try:
        doc = json.loads((root / "compare.json").read_text())
    except (OSError, ValueError):
        doc = {}
    parts = []
    if doc:
        parts.append(f"<p>{html.escape(str(doc.get('problem')))} over "
                     f"{html.escape(', '.join(doc.get('modalities', [])))}; "
                     f"{doc.get('seeds')} seeds per method; train / val / test rows: "
                     f"{doc.get('n_train')} / {doc.get('n_val')} / {doc.get('n_test')}.</p>")
    parts += ["<h2>Summary (mean ± std over seeds, best first)</h2>",
              _table(header, [[r.get(h, "") for h in header] for r in summary])]
    key = doc.get("primary_metric") or next((k for k in header if k.startswith("accuracy")),
                                            None)
    vals = [_mean_std(r.get(key, "")) for r in summary] if key in header else []
    plots = []
    if vals and all(v is not None for v in vals):
        names = [str(r.get("method") or r.get(header[0])) for r in summary]
        fig, ax = plt.subplots(figsize=(max(4, 0.38 * len(names) + 1.2), 3.4))
        ax.bar(names, [v[0] for v in vals], yerr=[v[1] for v in vals], color="#42a5f5",
               capsize=3)
        ax.set_ylabel(f"test {key}")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        lo, hi = min(v[0] - v[1] for v in vals), max(v[0] + v[1] for v in vals)
        if key in ("accuracy", "macro_f1", "auroc"):
            ax.set_ylim(max(0.0, lo - 0.1), min(1.0, hi + 0.05))
        ax.grid(alpha=.3, axis="y")
        plots.append(_figure(f"{key} by method", fig))
    runs = doc.get("runs", {})
    plots.append(_importance_across(root, runs))
    parts.append("<div class='plots'>" + "".join(plots) + "</div>")
    parts.append("<div class='plots'>" + analysis_section(root, table=False) + "</div>")
    best = str(summary[0].get("method", ""))
    best_runs = runs.get(best) or []
    if best_runs:
        run = root / best_runs[0]
        parts.append(f"<h2>Best method: {html.escape(best)} ({html.escape(best_runs[0])})</h2>")
        parts.append("<div class='plots'>" + confusion_section(run / "predictions.csv") +
                     attention_section(run) + "</div>")
    others = [attention_section(root / runs[m][0]).replace(
        "Fusion weights by class", f"Fusion weights by class: {html.escape(m)}")
        for m in runs if m != best and runs[m] and m.partition(":")[0] != "unimodal"]
    if any(others):  # fusions that expose weights (attention, gated, cross-attention)
        parts.append("<div class='plots'>" + "".join(others) + "</div>")
    parts.append(robustness_table(root, max_rows))
    results, rcols = _read_csv(root / "results.csv") if (root / "results.csv").is_file() \
        else ([], [])
    if results:
        more = f" (first {max_rows} of {len(results)})" if len(results) > max_rows else ""
        parts.append(f"<h2>Every run{more}</h2>" + _table(
            rcols, [[r.get(c, "") for c in rcols] for r in results[:max_rows]]))
    out = Path(out)
    atomic_write_text(out, _page(f"polymodal compare report: {root.name}", parts))
    return out


__all__ = ["analysis_section", "attention_section", "classification_report", "compare_report",
           "confusion_section", "robustness_table"]
