"""Benchmark: a LanceDB IVF-PQ index of 2M x 256 float32 vectors built and searched with less
memory than the raw vectors, and its recall@10 against exact search.

    python benchmarks/lancedb_scale.py                      # 2M x 256, 1000 queries, all phases
    python benchmarks/lancedb_scale.py --phase data         # then --phase build, --phase query

Phases (each ``build`` / ``query`` runs in a fresh process, so its peak RSS is its own):
  data   a Gaussian mixture (1000 clusters near a shared 32-d subspace, like real embeddings;
         see benchmarks/index.py) written to DIR/vectors.npy in 64k-row chunks, plus 1000
         fresh queries in DIR/queries.npy; never all in memory.
  build  `build_index(dim, "lancedb")`: the .npy is streamed in 64k-row chunks into the index
         (read with readinto into one reused buffer: a memmap's pages would count in our RSS),
         then the IVF-PQ index is built and saved. Prints build time, RSS and bytes on disk.
  query  `load_index`, the 1000 queries in one call and 50 single queries (latency), RSS, then
         exact top-10 by blockwise numpy over the same file and recall@10.
Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the phase's process (it counts
file pages mapped into it too), compared with the raw vector size N * dim * 4 bytes.
The last line printed: ``recall@10 X.XXX  peak RSS / raw vectors: build R, query R``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CHUNK = 65_536
GiB = 2 ** 30


def rss_now() -> int:
    """Current resident set size in bytes (/proc/self/statm)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def gib(b: float) -> str:
    return f"{b / GiB:.2f} GiB"


def npy_header(path: Path) -> tuple[tuple[int, int], int]:
    """(shape, data offset) of a float32 C-order .npy."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        if dtype != np.float32 or fortran or len(shape) != 2:
            raise SystemExit(f"{path}: expected a C-order float32 matrix")
        return shape, fh.tell()


def iter_chunks(path: Path, rows: int = CHUNK):
    """(start, float32 [m, dim]) chunks of a .npy, read into one reused buffer."""
    (n, dim), offset = npy_header(path)
    buf = np.empty((rows, dim), np.float32)
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        for s in range(0, n, rows):
            m = min(rows, n - s)
            view = memoryview(buf[:m]).cast("B")
            got = 0
            while got < len(view):
                got += fh.readinto(view[got:])
            yield s, buf[:m]


def write_data(args: argparse.Namespace, d: Path) -> None:
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim), dtype=np.float32)
    basis = rng.standard_normal((args.latent, args.dim), dtype=np.float32) / np.sqrt(args.latent)

    def draw(m: int) -> np.ndarray:
        c = rng.integers(0, args.clusters, m)
        z = rng.standard_normal((m, args.latent), dtype=np.float32)
        return (centres[c] + 0.6 * (z @ basis) +
                0.1 * rng.standard_normal((m, args.dim), dtype=np.float32)).astype(np.float32)

    t = time.perf_counter()
    np.save(d / "queries.npy", draw(args.queries))
    with open(d / "vectors.tmp", "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (args.n, args.dim)})
        for s in range(0, args.n, CHUNK):
            fh.write(draw(min(CHUNK, args.n - s)).tobytes())
    os.replace(d / "vectors.tmp", d / "vectors.npy")
    print(f"data: {args.n} x {args.dim} float32 = {gib(args.n * args.dim * 4)} written in "
          f"{time.perf_counter() - t:.1f} s (chunks of {CHUNK} rows)", flush=True)


def build(args: argparse.Namespace, d: Path) -> dict:
    from polymodal.index import build_index

    (n, dim), _ = npy_header(d / "vectors.npy")
    shutil.rmtree(d / "index", ignore_errors=True)  # a fresh table: no old versions on disk
    before = rss_now()
    t = time.perf_counter()
    index = build_index(dim, "lancedb", path=d / "index" / "lance")
    for s, block in iter_chunks(d / "vectors.npy"):
        index.add(block, [f"v{i}" for i in range(s, s + len(block))])
    t_add = time.perf_counter() - t
    index.save(d / "index")
    t_all = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in (d / "index").rglob("*") if f.is_file())
    idx_disk = sum(f.stat().st_size for f in (d / "index" / "lance").rglob("*")
                   if f.is_file() and "_indices" in f.parts)
    out = {"n": n, "dim": dim, "raw": n * dim * 4, "add_s": t_add, "build_s": t_all,
           "rss_before": before, "rss_after": rss_now(), "rss_peak": rss_peak(),
           "disk": disk, "index_disk": idx_disk, "params": index.params}
    print(f"build: {n} x {dim} streamed in {t_add:.1f} s, IVF-PQ index + save "
          f"{t_all - t_add:.1f} s, total {t_all:.1f} s; params {json.dumps(index.params)}")
    print(f"build RSS: before {gib(before)}, after {gib(out['rss_after'])}, peak "
          f"{gib(out['rss_peak'])} vs raw vectors {gib(out['raw'])} "
          f"(ratio {out['rss_peak'] / out['raw']:.3f})")
    print(f"on disk: {gib(disk)} in all ({disk / n:.1f} bytes/vector), ANN index files "
          f"{gib(idx_disk)} ({idx_disk / n:.1f} bytes/vector)", flush=True)
    return out


def exact_top(path: Path, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact cosine top-k positions by blockwise numpy over the .npy (one block in memory)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.zeros((len(q), k), np.int64)
    for s, block in iter_chunks(path, 16_384):
        b = block / np.linalg.norm(block, axis=1, keepdims=True)
        sc = q @ b.T
        top = np.argpartition(-sc, k, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(sc, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + s], 1)
        keep = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(cand_s, keep, 1)
        best_i = np.take_along_axis(cand_i, keep, 1)
    return best_i


def query(args: argparse.Namespace, d: Path) -> dict:
    from polymodal.index import load_index

    queries = np.load(d / "queries.npy")
    before = rss_now()
    index = load_index(d / "index")
    if args.nprobe:
        index.nprobe = args.nprobe
    if args.refine is not None:
        index.refine = args.refine
    t = time.perf_counter()
    _, ids = index.search(queries, args.k)
    t_batch = time.perf_counter() - t
    single = []
    for qv in queries[:50]:
        t = time.perf_counter()
        index.search(qv, args.k)
        single.append(time.perf_counter() - t)
    after, peak = rss_now(), rss_peak()
    raw = len(index) * index.dim * 4
    print(f"query: {len(queries)} queries in one call {t_batch:.2f} s "
          f"({1000 * t_batch / len(queries):.2f} ms/query); single-query latency median "
          f"{1000 * np.median(single):.1f} ms, p90 {1000 * np.percentile(single, 90):.1f} ms "
          f"(nprobe {index.probes}, refine {index.refine}, nlist {index.nlist})")
    print(f"query RSS: before load {gib(before)}, after searches {gib(after)}, peak "
          f"{gib(peak)} vs raw vectors {gib(raw)} (ratio {peak / raw:.3f})", flush=True)
    runs = [(index.probes, index.refine, t_batch, ids)]
    for setting in filter(None, (args.sweep or "").split(",")):
        index.nprobe, index.refine = (int(v) for v in setting.split(":"))
        t = time.perf_counter()
        _, s_ids = index.search(queries, args.k)
        runs.append((index.probes, index.refine, time.perf_counter() - t, s_ids))
    peak = rss_peak()
    t = time.perf_counter()
    truth = exact_top(d / "vectors.npy", queries, args.k).tolist()
    print(f"exact (blockwise numpy) top-{args.k} in {time.perf_counter() - t:.1f} s", flush=True)
    rows = []
    for nprobe, refine, sec, found_ids in runs:
        found = [[int(s[1:]) for s in row] for row in found_ids]
        rec = float(np.mean([len(set(f) & set(t_)) / args.k for f, t_ in zip(found, truth)]))
        rows.append((rec, sec, nprobe, refine))
        print(f"  nprobe {nprobe}, refine {refine}: recall@{args.k} {rec:.3f}, "
              f"{1000 * sec / len(queries):.2f} ms/query (batch of {len(queries)})", flush=True)
    ok = [r for r in rows if r[0] >= 0.95]
    rec, sec, nprobe, refine = min(ok, key=lambda r: r[1]) if ok else max(rows)
    return {"recall": rec, "nprobe": nprobe, "refine": refine, "ms_per_query":
            1000 * sec / len(queries), "rss_peak": peak, "raw": raw, "batch_s": t_batch,
            "single_median_s": float(np.median(single))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nprobe", type=int, default=None, help="default: the index's own")
    p.add_argument("--refine", type=int, default=None, help="default: the index's own (8)")
    p.add_argument("--sweep", default=None, help="more nprobe:refine settings to search "
                   "with, e.g. 122:8,61:32; the last line reports the fastest with recall >= "
                   "0.95 (else the best)")
    p.add_argument("--dir", default="/tmp/lancedb_scale")
    p.add_argument("--phase", choices=("all", "data", "build", "query"), default="all")
    p.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    if args.json_out is None:  # the parent: machine facts first
        import lancedb
        import torch
        print(f"machine: {os.cpu_count()} cores, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at start (shared with other "
              f"jobs), torch cpu capability {torch.backends.cpu.get_cpu_capability()}, "
              f"lancedb {lancedb.__version__}", flush=True)
    if args.phase == "data" or (args.phase == "all" and not (d / "vectors.npy").is_file()):
        write_data(args, d)
    if args.json_out is not None:  # a child: one phase in this process
        res = build(args, d) if args.phase == "build" else query(args, d)
        Path(args.json_out).write_text(json.dumps(res))
        return 0
    results = {}
    for phase in ("build", "query"):
        if args.phase not in ("all", phase):
            continue
        out = d / f"{phase}.json"
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
               "--phase", phase, "--json-out", str(out)]
        subprocess.run(cmd, check=True)
        results[phase] = json.loads(out.read_text())
    if "query" in results:
        b = json.loads((d / "build.json").read_text()) if (d / "build.json").is_file() else None
        ratio_b = f"{b['rss_peak'] / b['raw']:.3f}" if b else "n/a"
        q = results["query"]
        print(f"recall@{args.k} {q['recall']:.3f} (nprobe {q['nprobe']}, refine {q['refine']}, "
              f"{q['ms_per_query']:.1f} ms/query)  peak RSS / raw vectors: build {ratio_b}, "
              f"query {q['rss_peak'] / q['raw']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
