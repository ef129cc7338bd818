"""Stand-alone HTML reports (plots and thumbnails embedded as base64) for a retrieval run or a
``compare`` folder. ``write_report(path, out)`` picks the right one."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.cache.atomic import atomic_write_text
from polymodal.errors import PolymodalError

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#eceff1}td:first-child,th:first-child{text-align:left}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}h2{margin-top:32px}
.g{display:flex;gap:8px;flex-wrap:wrap;margin-bottom:14px}.g div{width:130px;font-size:12px}
.g img{width:128px;height:128px;object-fit:contain;background:#fafafa;border:1px solid #ddd}
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


def retrieval_report(run_dir: str | Path, out: str | Path, n_examples: int = 6) -> Path:
    """Report for a retrieval run: metrics vs baselines, Recall@K curves, a 2-D map of the shared
    space, a similarity heat map and a gallery of example queries with their hits."""
    from sklearn.manifold import TSNE

    from polymodal.cache.features import FeatureSet
    from polymodal.tasks.pairs import load_pairs
    from polymodal.tasks.search import load_run

    plt = _plt()
    run = load_run(run_dir)
    cfg = run.config
    root = Path(run_dir)
    metrics = json.loads((root / "metrics.json").read_text())
    base = json.loads((root / "baselines.json").read_text()) if (root / "baselines.json"
                                                                  ).is_file() else {}
    parts = [f"<p>{cfg.query} → {cfg.target}, loss <b>{cfg.loss}</b>, head {cfg.head}, "
             f"dim {cfg.dim}; manifest <code>{html.escape(cfg.manifest)}</code>; relevance: "
             f"{cfg.relevance}.</p><h2>Test metrics</h2>"]
    rows = []
    for name, by_dir in [(cfg.loss, metrics)] + list(base.items()):
        for d, m in by_dir.items():
            rows.append([name, d] + [float(m[k]) for k in ("R@1", "R@5", "R@10", "MedR", "mAP")])
    parts.append(_table(["method", "direction", "R@1", "R@5", "R@10", "MedR", "mAP"], rows))
    data = load_pairs(FeatureSet.load(root / "features"), run.manifest, cfg.query, cfg.target,
                      cfg.relevance)
    q, t = data.side_split(data.query, "test"), data.side_split(data.target, "test")
    qe, te = run.model.embed_numpy(q.x, "query"), run.model.embed_numpy(t.x, "target")
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
    ax.set_xlabel("K"), ax.set_ylabel("Recall@K"), ax.legend(), ax.grid(alpha=.3)
    parts.append(f"<h2>Recall@K</h2><img class='plot' src='{_fig_b64(fig)}'>")
    # 2-D map of the shared space, coloured by label (or split of targets when no label)
    n = min(400, len(te))
    pick_t = np.arange(len(te))[:n]
    rows_t = t.rows[pick_t]
    pick_q = np.flatnonzero(np.isin(q.rows, rows_t))[:n]
    X = np.concatenate([te[pick_t], qe[pick_q]])
    if len(X) >= 10:
        emb = TSNE(n_components=2, init="pca", perplexity=min(30, len(X) // 4),
                   random_state=0).fit_transform(X)
        labels = [str(r.label) for r in run.manifest.records]
        lab_t = [labels[i] for i in rows_t] + [labels[i] for i in q.rows[pick_q]]
        uniq = {v: i for i, v in enumerate(dict.fromkeys(lab_t))}
        c = np.array([uniq[v] for v in lab_t]) % 20
        fig, ax = plt.subplots(figsize=(7, 6))
        nt = len(pick_t)
        ax.scatter(emb[:nt, 0], emb[:nt, 1], c=c[:nt], cmap="tab20", marker="o", s=14,
                   label=cfg.target)
        ax.scatter(emb[nt:, 0], emb[nt:, 1], c=c[nt:], cmap="tab20", marker="x", s=14,
                   label=cfg.query)
        ax.legend(), ax.set_title("t-SNE of the shared space (colour = label)")
        parts.append(f"<h2>Shared space</h2><img class='plot' src='{_fig_b64(fig)}'>")
    m = min(30, len(qe), len(te))
    rows_q = q.rows[:m]
    tj = [int(np.flatnonzero(t.rows == r)[0]) if (t.rows == r).any() else 0 for r in rows_q]
    fig, ax = plt.subplots(figsize=(6, 5))
    imh = ax.imshow(qe[:m] @ te[tj].T, cmap="viridis")
    fig.colorbar(imh)
    ax.set_xlabel(f"{cfg.target} (paired order)"), ax.set_ylabel(cfg.query)
    ax.set_title("similarity, first test pairs (diagonal = true pairs)")
    parts.append(f"<h2>Similarity heat map</h2><img class='plot' src='{_fig_b64(fig)}'>")
    parts.append("<h2>Example queries (test split)</h2>")
    recs = run.manifest.records
    for i in np.linspace(0, len(qe) - 1, min(n_examples, len(qe))).astype(int):
        r = recs[q.rows[i]]
        qlabel = (" | ".join(r.text) if cfg.query == "text" and r.text else
                  str(r.get(cfg.query)))
        parts.append(f"<div class='q'>query: {html.escape(qlabel[:200])}</div><div class='g'>")
        if cfg.query == "image" and r.image:
            parts.append(f"<div><img src='{_img_b64(r.image)}'><br>(query)</div>")
        for j in np.argsort(-sim[i])[:5]:
            tr = recs[t.rows[j]]
            ok = "✔" if rel[i, j] else ""
            item = tr.get(cfg.target)
            img = _img_b64(item) if cfg.target == "image" and item else None
            cell = (f"<img src='{img}'>" if img else
                    html.escape(" | ".join(tr.text or [])[:120]))
            parts.append(f"<div>{cell}<br>{sim[i, j]:.3f} {ok}<br>{html.escape(tr.id[:40])}</div>")
        parts.append("</div>")
    out = Path(out)
    atomic_write_text(out, _page(f"polymodal retrieval report: {root.name}", parts))
    return out


def compare_report(compare_dir: str | Path, out: str | Path) -> Path:
    """Report for a ``compare`` folder: summary table, accuracy bars with std, and any
    robustness / importance CSVs found beside it."""
    plt = _plt()
    root = Path(compare_dir)
    with open(root / "summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    parts = ["<h2>Summary (mean ± std over seeds)</h2>",
             _table(list(summary[0].keys()), [list(r.values()) for r in summary])]
    acc_key = next((k for k in summary[0] if k.startswith("accuracy")), None)
    if acc_key:
        names = [r["method"] for r in summary]
        vals = [_mean_std(r[acc_key]) for r in summary]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar(names, [v[0] for v in vals], yerr=[v[1] for v in vals], color="#42a5f5")
        ax.set_ylabel("accuracy"), ax.tick_params(axis="x", rotation=45)
        lo = min(v[0] for v in vals)
        ax.set_ylim(max(0, lo - 0.1), 1)
        parts.append(f"<h2>Accuracy by method</h2><img class='plot' src='{_fig_b64(fig)}'>")
    for png in sorted(root.rglob("*.png")):
        parts.append(f"<h2>{html.escape(png.stem)}</h2><img class='plot' src='data:image/png;"
                     f"base64,{base64.b64encode(png.read_bytes()).decode()}'>")
    out = Path(out)
    atomic_write_text(out, _page(f"polymodal compare report: {root.name}", parts))
    return out


def _mean_std(cell: str) -> tuple[float, float]:
    s = str(cell).replace("±", " ").split()
    return float(s[0]), (float(s[1]) if len(s) > 1 else 0.0)


def write_report(path: str | Path, out: str | Path) -> Path:
    """Report for a retrieval run folder or a compare folder."""
    p = Path(path)
    if (p / "summary.csv").is_file():
        return compare_report(p, out)
    if (p / "config.yaml").is_file():
        return retrieval_report(p, out)
    raise PolymodalError(f"{p}: neither a run folder (config.yaml) nor a compare folder "
                         "(summary.csv)")
