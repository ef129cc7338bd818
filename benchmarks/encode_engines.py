"""``polymodal encode`` throughput: ``--engine ray`` (Ray Data actors) vs ``--engine local``.

Both encode the same manifest (default: 2,000 OpenClipart rows built with the ``openclipart``
dataset builder) with the default encoders (image efficientnet-lite0, text minilm), each into a
fresh feature cache (exported model files shared and made once, before timing), in one
process. Ray runs on this machine (``ray.init(num_cpus=<cpus>)``, started before timing, its
start-up printed apart); each timed encode includes building the models (the driver's, and
the actors'). Prints load average + torch CPU capability first, then for each engine the items
(image + caption cells encoded) per second and per core, whether the two feature folders are
equal byte for byte (and the largest vector difference), and ``ratio N.NNx`` (ray / local
items/s) last.

    flock /tmp/mv/bench.lock .venv/bin/python benchmarks/encode_engines.py \
        [--manifest M | --data ../shared/data --rows 2000] [--actors 2] [--num-cpus-per-actor 1]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def fresh_cache(root: Path, name: str) -> Path:
    c = root / name
    c.mkdir()
    (c / "models").symlink_to(root / "models")  # exported models: shared, not timed
    return c


def folder_diff(a: Path, b: Path) -> tuple[bool, float]:
    """(every file equal byte for byte, largest |difference| of the vector matrices)."""
    import numpy as np

    names = sorted(p.name for p in a.iterdir())
    same = names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)
    worst = 0.0
    for n in names:
        if n.endswith(".npy") and not n.endswith("_rows.npy"):
            x = np.load(a / n).astype(np.float32)
            y = np.load(b / n).astype(np.float32)
            worst = max(worst, float(np.abs(x - y).max()) if x.shape == y.shape else np.inf)
    return same, worst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--actors", type=int, default=None)
    ap.add_argument("--num-cpus-per-actor", type=int, default=1)
    a = ap.parse_args()

    import torch

    cpus = os.cpu_count() or 1
    print(f"cpus {cpus}, load {os.getloadavg()[0]:.2f}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    import ray

    from polymodal.features.encode import encode_manifest, resolve_encoders

    with tempfile.TemporaryDirectory(prefix="polymodal-engines-") as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        manifest = a.manifest
        if manifest is None:
            from polymodal.data.datasets import build_dataset

            manifest = build_dataset("openclipart", a.data / "openclipart", root / "oc",
                                     limit=a.rows, progress=False)
        from polymodal.data.manifest import read_manifest

        man = read_manifest(manifest)
        print(f"manifest {manifest}: {len(man)} rows", flush=True)
        resolve_encoders(man, None, cache_dir=fresh_cache(root, "warm"))  # export models once
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
        print(f"ray.init(num_cpus={cpus}): {time.perf_counter() - t0:.1f} s (not timed below)",
              flush=True)
        rates, cores = {}, {"local": cpus, "ray": cpus}
        opts = {"actors": a.actors, "num_cpus_per_actor": a.num_cpus_per_actor}
        for engine in ("local", "ray"):
            t0 = time.perf_counter()
            res = encode_manifest(man, root / "out" / engine,
                                  cache_dir=fresh_cache(root, f"cache-{engine}"),
                                  progress=False, engine=engine,
                                  engine_options=opts if engine == "ray" else None)
            dt = time.perf_counter() - t0
            n = sum(s.encoded for s in res.stats.values())
            rates[engine] = n / dt
            if engine == "ray":
                actors = a.actors or cpus // a.num_cpus_per_actor
                cores["ray"] = min(cpus, actors * a.num_cpus_per_actor)
            per = ", ".join(f"{m} {s.encoded} in {s.seconds:.1f} s "
                            f"({s.encoded / max(s.seconds, 1e-9):.1f}/s)"
                            for m, s in res.stats.items())
            print(f"{engine:<5} {n} items in {dt:.1f} s: {rates[engine]:.1f} items/s, "
                  f"{rates[engine] / cores[engine]:.1f} items/s per core ({per}; "
                  f"skipped {len(res.skipped)})", flush=True)
        ray.shutdown()
        same, worst = folder_diff(root / "out" / "ray", root / "out" / "local")
        print(f"feature folders equal byte for byte: {same}; max |vector difference| {worst:g}")
        print(f"ratio {rates['ray'] / rates['local']:.2f}x")


if __name__ == "__main__":
    main()
