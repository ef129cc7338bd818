"""Benchmark: exact (chunked ExactIndex) vs FAISS HNSW and IVF-PQ on clustered synthetic data.

    python benchmarks/index.py                      # 1M x 256-d, 1000 queries
    python benchmarks/index.py --n 200000 --kinds hnsw

Data: a Gaussian mixture whose clusters lie near a shared low-dimensional subspace (like real
embeddings, which have a low intrinsic dimension), so nearest neighbours are meaningful and ANN
can find them; queries are fresh draws from the same mixture. Metric: cosine.
For each ANN setting it prints search queries/s, speed-up over exact search and recall@k against
the exact top-k, then picks the fastest setting with recall >= --target-recall.
Search timings are the best of --repeat runs over all queries (one batch).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from polymodal.index import build_index  # noqa: E402


def clustered_data(n: int, dim: int, clusters: int, latent: int, seed: int,
                   centre_std: float = 1.0, chunk: int = 65536) -> np.ndarray:
    """``n`` float32 vectors: centre (N(0, centre_std^2) per coordinate) + low-rank spread
    (shared ``latent``-dim subspace, std 0.6 per coordinate) + isotropic noise (std 0.1)."""
    rng = np.random.default_rng(seed)
    centres = centre_std * rng.standard_normal((clusters, dim), dtype=np.float32)
    basis = rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        c = rng.integers(0, clusters, m)
        z = rng.standard_normal((m, latent), dtype=np.float32)
        out[s: s + m] = centres[c] + 0.6 * (z @ basis) + \
            0.1 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def recall_at_k(found: list[list[str]], truth: list[list[str]]) -> float:
    """Mean fraction of the exact top-k found by the approximate search."""
    k = len(truth[0])
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth)]))


def time_search(index, queries: np.ndarray, k: int, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = index.search(queries, k)
        best = min(best, time.perf_counter() - t)
    return best, result


def bench_ann(kind: str, data, ids, queries, truth, exact_qps, args, settings) -> list[dict]:
    """Build one ANN index, then search with each (param-name, value, extra) setting."""
    params = {"hnsw": {"M": args.M, "ef_construction": args.ef_construction},
              "ivfpq": {"nlist": args.nlist, "train_size": args.train_size,
                        "refine": max(args.refine)}}[kind]
    index = build_index(data.shape[1], kind, "cosine", expected_size=len(data), **params)
    t = time.perf_counter()
    for s in range(0, len(data), args.add_batch):
        index.add(data[s: s + args.add_batch], ids[s: s + args.add_batch])
    if kind == "ivfpq":
        index._train()  # train now so the build time includes it  # noqa: SLF001
    build = time.perf_counter() - t
    extra = f", nlist={index.nlist}, pq_m={index.pq_m}" if kind == "ivfpq" else ""
    print(f"\n{kind}: build {build:.1f} s ({params}{extra})", flush=True)
    print(f"  {'setting':<22} {'q/s':>10} {'speed-up':>9} {'recall@' + str(args.k):>10}")
    rows = []
    for setting in settings:
        for name, value in setting.items():
            setattr(index, name, value)
        sec, (_, found) = time_search(index, queries, args.k, args.repeat)
        qps = len(queries) / sec
        row = {"kind": kind, "setting": " ".join(f"{a}={b}" for a, b in setting.items()),
               "qps": qps, "speedup": qps / exact_qps, "recall": recall_at_k(found, truth),
               "build": build}
        rows.append(row)
        print(f"  {row['setting']:<22} {qps:>10.0f} {row['speedup']:>8.1f}x "
              f"{row['recall']:>10.4f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--centre-std", type=float, default=1.0,
                   help="spread of the cluster centres (smaller = overlapping, harder)")
    p.add_argument("--kinds", default="hnsw,ivfpq")
    p.add_argument("--M", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef", default="16,32,64,128,256", help="HNSW efSearch values")
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~4*sqrt(n))")
    p.add_argument("--train-size", type=int, default=100_000)
    p.add_argument("--nprobe", default="4,8,16,32,64")
    p.add_argument("--refine", default="0,8", help="IVF-PQ re-rank factors (0 = plain PQ)")
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--add-batch", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.refine = [int(v) for v in args.refine.split(",")]

    import faiss
    import torch
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start "
          f"(shared with other jobs), torch threads {torch.get_num_threads()}, faiss threads "
          f"{faiss.omp_get_max_threads()}, faiss {faiss.__version__}")
    t = time.perf_counter()
    data = clustered_data(args.n + args.queries, args.dim, args.clusters, args.latent, args.seed,
                          args.centre_std)
    queries, data = data[: args.queries], data[args.queries:]
    ids = [f"v{i}" for i in range(args.n)]
    print(f"data: {args.n} x {args.dim} float32 ({data.nbytes / 2**30:.2f} GiB), "
          f"{args.queries} queries, {args.clusters} clusters (centre std {args.centre_std}), "
          f"latent dim {args.latent}, "
          f"k={args.k}; generated in {time.perf_counter() - t:.1f} s", flush=True)

    exact = build_index(args.dim, "exact", "cosine")
    t = time.perf_counter()
    exact.add(data, ids)
    build = time.perf_counter() - t
    sec, (_, truth) = time_search(exact, queries, args.k, args.repeat)
    exact_qps = args.queries / sec
    print(f"\nexact: build {build:.1f} s, search {sec:.2f} s for {args.queries} queries = "
          f"{exact_qps:.1f} q/s (chunk {exact.chunk_size} rows)", flush=True)
    del exact

    rows = []
    for kind in [k for k in args.kinds.split(",") if k]:
        if kind == "hnsw":
            settings = [{"ef_search": int(v)} for v in args.ef.split(",")]
        else:
            settings = [{"nprobe": int(npb), "refine": r} for r in args.refine
                        for npb in args.nprobe.split(",")]
        rows += bench_ann(kind, data, ids, queries, truth, exact_qps, args, settings)

    print(f"\nbest per kind with recall@{args.k} >= {args.target_recall} "
          f"(goal: >= 50x faster than exact):")
    for kind in sorted({r["kind"] for r in rows}):
        ok = [r for r in rows if r["kind"] == kind and r["recall"] >= args.target_recall]
        if not ok:
            best = max((r for r in rows if r["kind"] == kind), key=lambda r: r["recall"])
            print(f"  {kind}: no setting reached the target; best recall {best['recall']:.4f} "
                  f"({best['setting']}, {best['speedup']:.1f}x)")
            continue
        r = max(ok, key=lambda r: r["qps"])
        print(f"  {kind}: {r['setting']}: {r['qps']:.0f} q/s, {r['speedup']:.1f}x exact, "
              f"recall {r['recall']:.4f}, build {r['build']:.1f} s -> goal "
              f"{'MET' if r['speedup'] >= 50 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
