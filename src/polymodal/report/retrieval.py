"""Stand-alone HTML reports (plots and thumbnails embedded as base64) for a retrieval run, a
classification run or a ``compare`` folder (the last two: `polymodal.report.classify`).
``write_report(path, out)`` picks the right one."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#eceff1}td:first-child,th:first-child{text-align:left}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}h2{margin-top:32px}
.plots{display:flex;flex-wrap:wrap;gap:12px 28px;align-items:flex-start}
.plots h2{margin-top:16px}.plots img.plot{max-height:440px}.plots img.big{max-height:none}
.g{display:flex;gap:8px;flex-wrap:wrap;margin-bottom:14px}
.g div{width:130px;font-size:12px;overflow-wrap:anywhere;line-height:1.3}
.g img{width:128px;height:128px;object-fit:contain;background:#fff;border:1px solid #ddd}
.g .ok{color:#2e7d32;font-weight:700}.g .id{color:#777}
.q{font-weight:600;margin-top:12px}"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img_b64(path: str | Path, size: int = 128) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:
        return None


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" +
            body + "</table>")


def _page(title: str, parts: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>" + "".join(parts) +
            "</body></html>")


def _recall_curve(sim: np.ndarray, rel: np.ndarray, kmax: int = 50) -> np.ndarray:
    order = np.argsort(-sim, axis=1)
    hit = np.take_along_axis(rel, order, axis=1)
    first = np.where(hit.any(1), hit.argmax(1), sim.shape[1])
    ks = np.arange(1, min(kmax, sim.shape[1]) + 1)
    return np.array([(first < k).mean() for k in ks])


def _cell(m: dict, key: str) -> Any:
    """A metric for the table, or "-" where the method does not define it (chance: MedR)."""
    v = m.get(key)
    if not isinstance(v, (int, float)):
        return "-"
    return f"{v:.1f}" if key in ("MedR", "MeanR") else float(v)


def _metrics_table(metrics: dict, base: dict, method: str) -> str:
    keys = ("R@1", "R@5", "R@10", "MedR", "mAP")
    rows = [[name, d] + [_cell(m, k) for k in keys]
            for name, by_dir in [(method, metrics)] + list(base.items())
            for d, m in by_dir.items()]
    return _table(["method", "direction", *keys], rows)


def _run_facts(root: Path) -> str:
    """Table of run facts from run.json (empty when absent)."""
    try:
        info = json.loads((root / "run.json").read_text())
    except (OSError, ValueError):
        return ""
    train = info.get("train", {})
    facts = [("test queries", info.get("n_test_queries")),
             ("test targets", info.get("n_test_targets")),
             ("epochs run", train.get("epochs_run")), ("best epoch", train.get("best_epoch")),
             ("validation R@10 (best)", train.get("val_R@10")),
             ("training seconds", train.get("train_seconds")),
             ("total seconds", info.get("seconds"))]
    return _table(["run", "value"], [[k, v] for k, v in facts if v is not None])


def _loss_figure(root: Path) -> str:
    """Mean training loss per epoch from train_log.csv (empty when absent)."""
    try:
        with open(root / "train_log.csv") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("loss") not in (None, "")]
        epochs = np.array([int(r["epoch"]) for r in rows])
        loss = np.array([float(r["loss"]) for r in rows])
    except (OSError, KeyError, ValueError):
        return ""
    if not len(rows):
        return ""
    uniq = np.unique(epochs)
    fig, ax = _plt().subplots(figsize=(6, 4))
    ax.plot(uniq, [loss[epochs == e].mean() for e in uniq], marker="o", ms=3)
    ax.set_xlabel("epoch"), ax.set_ylabel("mean training loss"), ax.grid(alpha=.3)
    return _figure("Training loss", fig)


def _query_label(rec: Any, modality: str, occurrence: int) -> str:
    """What a query was: its own caption for text (a row's n-th text vector is its n-th
    caption), otherwise the file name."""
    if modality == "text" and rec.text:
        return rec.text[occurrence] if occurrence < len(rec.text) else " | ".join(rec.text)
    item = rec.get(modality)
    return Path(str(item)).name if item is not None else rec.id


def retrieval_report(run_dir: str | Path, out: str | Path, n_examples: int = 6) -> Path:
    """Report for a retrieval run: metrics vs baselines, Recall@K curves, a 2-D map of the shared
    space, a similarity heat map and a gallery of example queries with their hits."""
    from sklearn.manifold import TSNE

    from polymodal.features.cache.features import FeatureSet
    from polymodal.core.splits import run_splits
    from polymodal.tasks.retrieval.data import load_pairs, with_frame_bags
    from polymodal.tasks.retrieval.pooled import embed_side
    from polymodal.tasks.retrieval.predict import load_run

    plt = _plt()
    run = load_run(run_dir)
    cfg = run.config
    root = Path(run_dir)
    try:
        metrics = json.loads((root / "metrics.json").read_text())
    except (OSError, ValueError) as e:
        raise PolymodalError(f"{root / 'metrics.json'}: cannot read the run's metrics ({e})"
                             ) from None
    base = json.loads((root / "baselines.json").read_text()) if (root / "baselines.json"
                                                                  ).is_file() else {}
    try:  # --loss auto: the candidate it chose
        chosen = json.loads((root / "selection.json").read_text()).get("chosen")
    except (OSError, ValueError, AttributeError):
        chosen = None
    method = f"auto: {chosen}" if chosen else cfg.loss
    parts = [f"<p>{cfg.query} → {cfg.target}, loss <b>{html.escape(method)}</b>, head "
             f"{cfg.head}, dim {cfg.dim}; manifest <code>{html.escape(cfg.manifest)}</code>; "
             f"relevance: {html.escape(cfg.relevance)}; index: {len(run.index)} "
             f"{cfg.target} vectors.</p>",
             "<div class='plots'><div><h2>Test metrics</h2>" +
             _metrics_table(metrics, base, method) + "</div><div><h2>Run</h2>" +
             _run_facts(root) + "</div></div>",
             "<p>R@K: share of queries with a correct answer in the top K; MedR: median rank "
             "of the first correct answer (lower is better); mAP: mean average precision.</p>"]
    feats = root / "features"  # a run fitted on pre-encoded features (`--features`) has none
    if not feats.is_dir() and getattr(cfg, "features", None):
        feats = Path(cfg.features)
    fs = FeatureSet.load(feats)
    data = with_frame_bags(load_pairs(fs, run.manifest, cfg.query, cfg.target, cfg.relevance,
                                      splits=run_splits(run.root)),
                           fs, getattr(cfg, "video_pool", "mean"))
    q, t = data.side_split(data.query, "test"), data.side_split(data.target, "test")
    qe, te = embed_side(run.model, q, "query"), embed_side(run.model, t, "target")
    rel = data.relevance(q, t)
    sim = qe @ te.T
    fig, ax = plt.subplots(figsize=(6, 4))
    for lab, s, r in ((f"{cfg.query}→{cfg.target}", sim, rel),
                      (f"{cfg.target}→{cfg.query}", sim.T, rel.T)):
        curve = _recall_curve(s, r)
        ax.plot(np.arange(1, len(curve) + 1), curve, label=lab)
    chance = rel.mean()
    ks = np.arange(1, min(50, sim.shape[1]) + 1)
    ax.plot(ks, 1 - (1 - chance) ** ks, "--", color="gray", label="chance (approx.)")
    ax.set_xlabel("K"), ax.set_ylabel("Recall@K"), ax.set_ylim(0, 1.02), ax.legend()
    ax.grid(alpha=.3)
    plots = [_figure("Recall@K (test split)", fig), _loss_figure(root)]
    m = min(30, len(qe), len(te))
    rows_q = q.rows[:m]
    tj = [int(np.flatnonzero(t.rows == r)[0]) if (t.rows == r).any() else 0 for r in rows_q]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    imh = ax.imshow(qe[:m] @ te[tj].T, cmap="viridis")
    fig.colorbar(imh)
    ax.set_xlabel(f"{cfg.target} (paired order)"), ax.set_ylabel(cfg.query)
    ax.set_title("first test pairs (diagonal = true pairs)", fontsize=10)
    heat = _figure("Similarity heat map", fig)
    parts.append("<div class='plots'>" + "".join(plots) + "</div>")
    parts.append("<div class='plots'>" + heat + _shared_space(plt, TSNE, run, q, t, qe, te, cfg)
                 + "</div>")
    parts.append("<h2>Example queries (test split)</h2><p>Top 5 test "
                 f"{cfg.target}s for each query; ✔ marks a correct answer.</p>")
    recs = run.manifest.records
    for i in np.linspace(0, len(qe) - 1, min(n_examples, len(qe))).astype(int):
        r = recs[q.rows[i]]
        qlabel = _query_label(r, cfg.query, int((q.rows[:i] == q.rows[i]).sum()))
        parts.append(f"<div class='q'>query: {html.escape(qlabel[:200])}</div><div class='g'>")
        if cfg.query == "image" and r.image:
            img = _img_b64(r.image)
            if img:
                parts.append(f"<div><img src='{img}'><br>(query)</div>")
        for j in np.argsort(-sim[i])[:5]:
            tr = recs[t.rows[j]]
            ok = " <span class='ok'>✔</span>" if rel[i, j] else ""
            item = tr.get(cfg.target)
            img = _img_b64(item) if cfg.target == "image" and item else None
            caption = (tr.text or [""])[0]
            cell = (f"<img src='{img}' title='{html.escape(tr.id)}'><br>"
                    f"{html.escape(caption[:60])}" if img else
                    html.escape(" | ".join(tr.text or [])[:120] or tr.id))
            parts.append(f"<div>{cell}<br><b>{sim[i, j]:.3f}</b>{ok}<br><span class='id'>"
                         f"{html.escape(tr.id.rsplit('/', 1)[-1][:40])}</span></div>")
        parts.append("</div>")
    out = Path(out)
    atomic_write_text(out, _page(f"polymodal retrieval report: {root.name}", parts))
    return out


def _shared_space(plt, TSNE, run, q, t, qe, te, cfg) -> str:
    """t-SNE of test targets and their queries, coloured by label (empty when too few)."""
    n = min(400, len(te))
    pick_t = np.sort(np.random.default_rng(0).choice(len(te), n, replace=False))  # all labels
    rows_t = t.rows[pick_t]
    pick_q = np.flatnonzero(np.isin(q.rows, rows_t))[:n]
    X = np.concatenate([te[pick_t], qe[pick_q]])
    if len(X) < 10:
        return ""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # a few hundred points: threads only oversubscribe
        emb = TSNE(n_components=2, init="pca", perplexity=max(2, min(30, len(X) // 4)),
                   random_state=0, n_jobs=1).fit_transform(X)
    labels = [str(r.label) for r in run.manifest.records]
    lab = [labels[i] for i in rows_t] + [labels[i] for i in q.rows[pick_q]]
    uniq = list(dict.fromkeys(lab))
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(6.6, 4.8))
    nt = len(pick_t)
    lab_t, lab_q = np.array(lab[:nt]), np.array(lab[nt:])
    for c, name in enumerate(uniq[:20]):
        col = [cmap((2 * c) % 20 + (c >= 10))]  # the ten strong colours first, then the pale
        mt, mq = lab_t == name, lab_q == name
        ax.scatter(emb[:nt][mt, 0], emb[:nt][mt, 1], c=col, marker="o", s=16, label=name)
        ax.scatter(emb[nt:][mq, 0], emb[nt:][mq, 1], c=col, marker="x", s=16)
    if len(uniq) > 20:
        rest_t, rest_q = ~np.isin(lab_t, uniq[:20]), ~np.isin(lab_q, uniq[:20])
        ax.scatter(emb[:nt][rest_t, 0], emb[:nt][rest_t, 1], c="lightgray", marker="o", s=16,
                   label="other")
        ax.scatter(emb[nt:][rest_q, 0], emb[nt:][rest_q, 1], c="lightgray", marker="x", s=16)
    ax.set_title(f"t-SNE: ● {cfg.target}, × {cfg.query} (colour = label)", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _figure("Shared space (test split)", fig)


def _figure(title: str, fig: Any) -> str:
    return f"<div><h2>{html.escape(title)}</h2><img class='plot' src='{_fig_b64(fig)}'></div>"


def compare_report(compare_dir: str | Path, out: str | Path, max_rows: int = 60) -> Path:
    """Report for a ``compare`` folder (see `polymodal.report.classify.compare_report`)."""
    from polymodal.report.classify import compare_report as _compare

    return _compare(compare_dir, out, max_rows)


def _read_csv(path: Path) -> tuple[list[dict], list[str]]:
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            return list(reader), list(reader.fieldnames or [])
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise PolymodalError(f"{path}: cannot read CSV ({e})") from None


def _mean_std(cell: str) -> tuple[float, float] | None:
    """``"0.91 ± 0.02"`` -> (0.91, 0.02); ``"0.91"`` -> (0.91, 0.0); None when not numbers."""
    s = str(cell).replace("±", " ").replace("+/-", " ").split()
    try:
        return float(s[0]), (float(s[1]) if len(s) > 1 else 0.0)
    except (IndexError, ValueError):
        return None


def write_report(path: str | Path, out: str | Path) -> Path:
    """Report for a run folder (retrieval or classification) or a compare folder."""
    p = Path(path)
    if (p / "summary.csv").is_file():
        return compare_report(p, out)
    if (p / "config.yaml").is_file():
        from polymodal.core.runfolder import RunFolder

        task = RunFolder.open(p).task
        if task == "classification":
            from polymodal.report.classify import classification_report

            return classification_report(p, out)
        if task == "retrieval":
            return retrieval_report(p, out)
        raise PolymodalError(f"{p}: no report for a '{task}' run (reports cover retrieval and "
                             "classification runs and compare folders)")
    raise PolymodalError(f"{p}: neither a run folder (config.yaml) nor a compare folder "
                         "(summary.csv)")


def auto_report(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Write ``RUN/report.html`` at the end of a fit. Never fails the fit: without matplotlib,
    or when the report cannot be made, print why and return None."""
    import sys

    out = Path(out) if out else Path(run_dir) / "report.html"
    try:
        return write_report(run_dir, out)
    except ImportError as e:
        print(f"note: no report ({e.name or e} is not installed: pip install "
              "'polymodal[report]')", file=sys.stderr)
    except PolymodalError as e:
        print(f"warning: no report: {e}", file=sys.stderr)
    return None
