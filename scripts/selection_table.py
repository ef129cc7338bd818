"""The model-selection table (docs/RESULTS.md, "Model selection"): ``fit retrieval --loss auto``
against the run's own ridge / CCA baselines, on built + encoded sets and on row subsets of them.

Per set, per size (a number of rows, or ``all``) and per seed: ``n`` rows are drawn with
``numpy.random.default_rng(seed)`` (each keeping its split), written as a manifest next to the
set's own (so relative file paths resolve) and as a sliced copy of the set's feature folder, then
``fit_retrieval(RetrievalConfig(..., train={"seed": seed}))`` runs with the default ``--loss auto``.
The table gives the query->target test R@1 (mean ± std over seeds) of ridge, CCA (the run's
``baselines.json``) and of the selected model, the candidate chosen per seed, and whether the
selected mean is >= the better baseline mean.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/selection_table.py \
        --set fsdd:DATA/fsdd/manifest.jsonl:DATA/fsdd-feat:audio:text:label \
        --sizes 300,1000 --seeds 0,1,2 --out RUNS [--json table.json]

A finished run (``RUN/metrics.json`` present) is reused, so the table can be re-printed or
extended cheaply; ``--fresh`` refits.

``--full-test`` also scores every subset run on the **whole set's** test split (the subset's
test rows are a few dozen, so one query moves R@1 by 0.02-0.03): the run's selected model, and
ridge / CCA at the baseline settings fitted on the same subset's training pairs. The models
are the same; only the test queries are more.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np


def parse_set(text: str) -> dict:
    parts = text.split(":")
    if len(parts) != 6:
        sys.exit(f"--set {text!r}: want NAME:MANIFEST:FEATURES:QUERY:TARGET:RELEVANCE")
    name, manifest, feats, q, t, rel = parts
    for p in (manifest, feats):
        if not Path(p).exists():
            sys.exit(f"--set {name}: {p} does not exist (build / encode it first)")
    return {"name": name, "manifest": Path(manifest), "features": Path(feats), "query": q,
            "target": t, "relevance": rel}


def subset(s: dict, n: int, seed: int, work: Path) -> tuple[Path, Path]:
    """(manifest, feature folder) of ``n`` rows drawn with ``seed``."""
    lines = s["manifest"].read_text().splitlines()
    if s["manifest"].suffix != ".jsonl":
        sys.exit(f"{s['manifest']}: the driver subsets JSONL manifests only")
    if n > len(lines):
        sys.exit(f"{s['manifest']}: {len(lines)} rows, cannot draw {n}")
    keep = np.sort(np.random.default_rng(seed).choice(len(lines), n, replace=False))
    man = s["manifest"].with_name(f"subset-{n}-s{seed}.jsonl")
    man.write_text("\n".join(lines[i] for i in keep) + "\n")
    src, dst = s["features"], work / f"feat-{n}-s{seed}"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    meta = json.loads((src / "features.json").read_text())
    ids = json.loads((src / "ids.json").read_text())
    new_index = np.full(len(ids), -1)
    new_index[keep] = np.arange(n)
    mods = {}
    for m, info in meta["modalities"].items():
        x, rows = np.load(src / f"{m}.npy"), np.load(src / f"{m}_rows.npy")
        sel = new_index[rows] >= 0
        np.save(dst / f"{m}.npy", x[sel])
        np.save(dst / f"{m}_rows.npy", new_index[rows[sel]].astype(np.int64))
        mods[m] = {**info, "count": int(sel.sum())}
    (dst / "ids.json").write_text(json.dumps([ids[i] for i in keep]))
    meta = {k: v for k, v in meta.items() if k != "files"}  # sizes of the full folder
    (dst / "features.json").write_text(json.dumps({**meta, "manifest": str(man), "n_rows": n,
                                                   "modalities": mods}))
    return man, dst


_FULL: dict = {}


def full_test(s: dict, run: Path, size: str, seed: int) -> dict:
    """Query->target test R@1 on the whole set's test split of the run's model and of ridge /
    CCA (baseline settings) fitted on the subset's training pairs."""
    from polymodal.data.manifest import read_manifest
    from polymodal.features.cache.features import FeatureSet
    from polymodal.metrics.scores import retrieval_metrics
    from polymodal.tasks.retrieval import closed_form
    from polymodal.tasks.retrieval.data import load_pairs
    from polymodal.tasks.retrieval.predict import load_run

    def pairs(man: Path, feats: Path):
        return load_pairs(FeatureSet.load(feats), read_manifest(man), s["query"], s["target"],
                          s["relevance"])
    if s["name"] not in _FULL:
        _FULL[s["name"]] = pairs(s["manifest"], s["features"])
    full = _FULL[s["name"]]
    sub = pairs(s["manifest"].with_name(f"subset-{size}-s{seed}.jsonl"),
                run.parent / f"feat-{size}-s{seed}")
    q, t = full.side_split(full.query, "test"), full.side_split(full.target, "test")
    rel = full.relevance(q, t)
    out = {}
    for name, model in (("selected", load_run(run).model), ("ridge", closed_form.ridge_model(sub, 1.0)),
                        ("cca", closed_form.cca_model(sub, 32, 1e-3))):
        sim = model.embed_numpy(q.x, "query") @ model.embed_numpy(t.x, "target").T
        out[name] = retrieval_metrics(sim, rel)["R@1"]
    return {"full_" + k: v for k, v in out.items()} | {"full_queries": len(q.x)}


def one_run(s: dict, size: str, seed: int, root: Path, fresh: bool, budget: float,
            with_full: bool = False) -> dict:
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval

    work = root / s["name"] / size
    run = work / f"run-s{seed}"
    direction = f"{s['query']}->{s['target']}"
    if fresh or not (run / "metrics.json").is_file():
        if size == "all":
            man, feats = s["manifest"], s["features"]
        else:
            man, feats = subset(s, int(size), seed, work)
        if run.exists():
            shutil.rmtree(run)
        cfg = RetrievalConfig(manifest=str(man), features=str(feats), query=s["query"],
                              target=s["target"], relevance=s["relevance"], index="exact",
                              select_budget_s=budget, train={"seed": seed, "progress": False})
        fit_retrieval(cfg, run, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    base = json.loads((run / "baselines.json").read_text())
    sel = json.loads((run / "selection.json").read_text())
    row = {"set": s["name"], "size": size, "seed": seed, "chosen": sel["chosen"],
           "selected": metrics[direction]["R@1"], "ridge": base["ridge"][direction]["R@1"],
           "cca": base["cca"][direction]["R@1"], "val_pairs": sel.get("val_pairs"),
           "decision": sel.get("decision")}
    return row | (full_test(s, run, size, seed) if with_full and size != "all" else {})


def ms(v: list[float]) -> str:
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def table(results: list[dict]) -> str:
    lines = ["| set | pairs | ridge R@1 | CCA R@1 | selected R@1 | chosen (per seed) | "
             "selected ≥ best baseline |", "|---|---|---|---|---|---|---|"]
    cells: dict = {}
    for r in results:
        cells.setdefault((r["set"], r["size"]), []).append(r)
    for (name, size), rs in cells.items():
        col = {k: [r[k] for r in rs] for k in ("ridge", "cca", "selected")}
        best = max(np.mean(col["ridge"]), np.mean(col["cca"]))
        met = "met" if np.mean(col["selected"]) >= best else "**not met**"
        chosen = ", ".join(r["chosen"] for r in rs)
        lines.append(f"| {name} | {size} | {ms(col['ridge'])} | {ms(col['cca'])} | "
                     f"{ms(col['selected'])} | {chosen} | {met} |")
    full = [(k, rs) for k, rs in cells.items() if "full_selected" in rs[0]]
    if full:
        lines += ["", "The same runs on the whole set's test split:", "",
                  "| set | pairs | test queries | ridge R@1 | CCA R@1 | selected R@1 | "
                  "selected ≥ best baseline |", "|---|---|---|---|---|---|---|"]
    for (name, size), rs in full:
        col = {k: [r["full_" + k] for r in rs] for k in ("ridge", "cca", "selected")}
        best = max(np.mean(col["ridge"]), np.mean(col["cca"]))
        met = "met" if np.mean(col["selected"]) >= best else "**not met**"
        lines.append(f"| {name} | {size} | {rs[0]['full_queries']} | {ms(col['ridge'])} | "
                     f"{ms(col['cca'])} | {ms(col['selected'])} | {met} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", required=True, dest="sets",
                    help="NAME:MANIFEST:FEATURES:QUERY:TARGET:RELEVANCE (repeatable)")
    ap.add_argument("--sizes", default="300,1000,all", help="rows per subset, or all")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", required=True, type=Path, help="folder for subsets and runs")
    ap.add_argument("--budget", type=float, default=300.0, help="--select-budget-s")
    ap.add_argument("--json", type=Path, help="also write every run's row here")
    ap.add_argument("--fresh", action="store_true", help="refit runs that already finished")
    ap.add_argument("--full-test", action="store_true",
                    help="also score subset runs on the whole set's test split")
    a = ap.parse_args()
    sets = [parse_set(t) for t in a.sets]
    sizes = [x.strip() for x in a.sizes.split(",")]
    for x in sizes:
        if x != "all" and not x.isdigit():
            sys.exit(f"--sizes: {x!r} is neither a number of rows nor 'all'")
    seeds = [int(x) for x in a.seeds.split(",")]
    results = []
    for size in sizes:  # the cheap sizes first, all sets
        for s in sets:
            for seed in seeds:
                r = one_run(s, size, seed, a.out, a.fresh, a.budget, a.full_test)
                results.append(r)
                print(f"{r['set']} {size} seed {seed}: selected {r['selected']:.3f} "
                      f"({r['chosen']}), ridge {r['ridge']:.3f}, cca {r['cca']:.3f}; "
                      f"{r['decision']}", flush=True)
                if a.json:
                    a.json.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
