"""What this CPU can do, measured (not a datasheet peak): matrix-product GFLOP/s in fp32 and
bf16 (AMX / AVX-512 bf16 on this Xeon), and alignment training throughput through polymodal's
own loop (`polymodal.train.fit_loop`) with ``precision`` fp32 vs bf16 autocast — the same
model, data and steps, interleaved in one process.

    .venv/bin/python benchmarks/cpu_limits.py [--threads 2] [--repeats 3] [--head mlp]

The last line is ``ratio N.NNx``: bf16 / fp32 training pairs/s (median over the repeats).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def matmul_gflops(dtype, n: int = 2048, reps: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def train_pairs_per_s(precision: str, head: str, pairs: int, epochs: int, seed: int = 0) -> float:
    """InfoNCE text(384) -> image(1280) heads trained by fit_loop on random features."""
    import numpy as np
    import torch

    from polymodal.nn.dual_encoder import AlignModel
    from polymodal.objectives.losses import infonce_loss, loss_params
    from polymodal.train.config import TrainConfig
    from polymodal.train.loop import fit_loop

    rng = np.random.default_rng(seed)
    q = torch.from_numpy(rng.standard_normal((pairs, 384)).astype(np.float32))
    t = torch.from_numpy(rng.standard_normal((pairs, 1280)).astype(np.float32))
    opts = {"hidden": 1024, "dropout": 0.1} if head == "mlp" else {}
    specs = {s: {"kind": head, "in_dim": d, "out_dim": 256, "normalize": False, **opts}
             for s, d in (("query", 384), ("target", 1280))}
    model = AlignModel(specs, {"query": torch.zeros(384), "target": torch.zeros(1280)},
                       loss_params("infonce"))
    gen, bs = torch.Generator().manual_seed(seed), 256

    def batches(epoch):
        perm = torch.randperm(pairs, generator=gen)
        for s in range(0, pairs - bs + 1, bs):
            idx = perm[s:s + bs]
            yield q[idx], t[idx]

    def step(m, batch):
        return infonce_loss(m.embed(batch[0], "query"), m.embed(batch[1], "target"),
                            **dict(m.scalars.items()))

    cfg = TrainConfig(epochs=epochs, patience=epochs, precision=precision, progress=False)
    t0 = time.perf_counter()
    fit_loop(model, step, batches, lambda m: 0.0, cfg, generator=gen)
    return (pairs // bs) * bs * epochs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--head", choices=["linear", "mlp"], default="mlp")
    ap.add_argument("--pairs", type=int, default=12800)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").is_file() \
        else set()
    print(f"torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"threads {a.threads}, load average {os.getloadavg()[0]:.2f}; cpu flags: "
          + " ".join(f for f in ("avx512f", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8",
                                 "amx_tile") if f in flags))
    mm, tr = {"fp32": [], "bf16": []}, {"fp32": [], "bf16": []}
    for r in range(a.repeats):
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            mm[prec].append(matmul_gflops(dtype))
            tr[prec].append(train_pairs_per_s(prec, a.head, a.pairs, a.epochs, seed=r))
        print(f"run {r + 1}: matmul 2048^2 fp32 {mm['fp32'][-1]:.0f} GFLOP/s | bf16 "
              f"{mm['bf16'][-1]:.0f} GFLOP/s | fit_loop ({a.head} heads, batch 256) fp32 "
              f"{tr['fp32'][-1]:.0f} pairs/s | bf16 {tr['bf16'][-1]:.0f} pairs/s")
    med = {k: {p: statistics.median(v[p]) for p in v} for k, v in (("mm", mm), ("tr", tr))}
    print(f"median: matmul fp32 {med['mm']['fp32']:.0f} / bf16 {med['mm']['bf16']:.0f} GFLOP/s "
          f"({med['mm']['bf16'] / med['mm']['fp32']:.2f}x); training fp32 "
          f"{med['tr']['fp32']:.0f} / bf16 {med['tr']['bf16']:.0f} pairs/s; load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"ratio {med['tr']['bf16'] / med['tr']['fp32']:.2f}x")


if __name__ == "__main__":
    main()
