"""Retrieval table: every alignment method + ridge / CCA / chance baselines, both directions,
mean ± std over seeds, printed as a markdown table.

Each method run is ``polymodal fit retrieval`` (``fit_retrieval``) on the same manifest, fixed
splits, relevance and pre-encoded features (``polymodal encode --out``), so nothing is encoded
again. Ridge and linear CCA baselines are deterministic (one fit, std 0); chance is analytic.

    .venv/bin/python benchmarks/retrieval_table.py --manifest runs/oc/manifest.jsonl \\
        --features runs/oc-feat --relevance caption_group --out runs/oc-table

Run folders go to OUT/<method>/seed<k>; an existing finished run (metrics.json) is reused, so an
interrupted table resumes. ``--json`` also writes OUT/table.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

METHODS = ("infonce", "siglip", "triplet", "triplet-semihard", "contrastive", "mse", "cosine",
           "cca", "dcca", "autoencoder")
KEYS = ("R@1", "R@5", "R@10")


def run_one(args, method: str, seed: int, with_baselines: bool) -> dict:
    """One ``fit_retrieval`` run (or its saved result)."""
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.train.config import TrainConfig

    out = args.out / method / f"seed{seed}"
    done = out / "metrics.json"
    if done.is_file() and (not with_baselines or (out / "baselines.json").is_file()):
        res = {"metrics": json.loads(done.read_text())}
        if with_baselines:
            res["baselines"] = json.loads((out / "baselines.json").read_text())
        res.update(json.loads((out / "run.json").read_text()))
        return res
    cfg = RetrievalConfig(manifest=str(args.manifest), features=args.features, loss=method,
                          query=args.query, target=args.target, relevance=args.relevance,
                          head=args.head, dim=args.dim, batch_size=args.batch_size,
                          hidden=args.hidden, index="exact",
                          train=TrainConfig(epochs=args.epochs, lr=args.lr, seed=seed,
                                            patience=args.patience, progress=False))
    return fit_retrieval(cfg, out, with_baselines=with_baselines, progress=False)


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--features", default=None, help="encoded folder (default: encode, cached)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--query", default="text")
    ap.add_argument("--target", default="image")
    ap.add_argument("--relevance", default="caption_group")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--head", default="linear", choices=["linear", "mlp"])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=512, help="MLP / deep CCA / autoencoder width")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest for these small heads on a busy machine)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)

    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    q, t = args.query, args.target
    dirs = (f"{q}->{t}", f"{t}->{q}")
    results: dict[str, list[dict]] = {}
    baselines: dict = {}
    info: dict = {}
    for m in methods:
        for i, seed in enumerate(seeds):
            first = not baselines
            t0 = time.perf_counter()
            res = run_one(args, m, seed, with_baselines=first)
            if first:
                baselines = res["baselines"]
                info = {"n_test_queries": res["n_test_queries"],
                        "n_test_targets": res["n_test_targets"]}
            results.setdefault(m, []).append(res["metrics"])
            if m == "cca":  # deterministic: one fit is every seed
                break
            print(f"{m} seed {seed}: " + "  ".join(
                f"{d} R@10={res['metrics'][d]['R@10']:.3f}" for d in dirs)
                + f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    rows = [(m, runs, len(runs)) for m, runs in results.items()]
    rows += [(f"baseline: {b}", [baselines[b]], 1) for b in ("ridge", "cca", "chance")]
    head = ["method", "seeds"] + [f"{d} {k}" for d in dirs for k in KEYS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table = {}
    for name, runs, n in rows:
        vals = {d: {k: [r[d][k] for r in runs] for k in KEYS} for d in dirs}
        table[name] = vals
        lines.append(f"| {name} | {n} | " + " | ".join(cell(vals[d][k]) for d in dirs
                                                       for k in KEYS) + " |")
    print(f"test split: {info['n_test_queries']} {q} queries x {info['n_test_targets']} {t} "
          f"targets; relevance: {args.relevance}; heads: {args.head}, dim {args.dim}, "
          f"epochs <= {args.epochs} (patience {args.patience}), batch {args.batch_size}")
    print("\n".join(lines))
    ridge = {d: baselines["ridge"][d]["R@10"] for d in dirs}
    for d in dirs:
        best = max(results, key=lambda m: np.mean([r[d]["R@10"] for r in results[m]]))
        b = float(np.mean([r[d]["R@10"] for r in results[best]]))
        print(f"{d}: best R@10 {b:.3f} ({best}) = {b / ridge[d]:.2f}x ridge ({ridge[d]:.3f}); "
              f"goal >= 1.5x: {'MET' if b >= 1.5 * ridge[d] else 'NOT met'}")
    if args.json:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "table.json").write_text(json.dumps({"args": {k: str(v) for k, v in
                                                                  vars(args).items()},
                                                         "table": table, **info}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
