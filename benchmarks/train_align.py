"""Alignment training throughput: InfoNCE pairs/s on cached features.

Cached features are plain matrices (1280-d image, 384-d text by default: EfficientNet-Lite0 and
MiniLM). Each measured step is a full training step at ``--batch-size`` (default 256): both heads
forward, symmetric InfoNCE with the learnable temperature, backward, gradient clipping and an
AdamW step. Measured in one process, interleaved, on the same data:

* ``polymodal step``   -- polymodal.tasks.retrieval.fit's AlignModel + loss step
  (polymodal.objectives heads, ``infonce_loss``), the code ``fit retrieval`` runs;
* ``polymodal fit_loop`` -- the same through ``polymodal.train.fit_loop`` (shuffling, per-step
  loss logging, one tiny validation per epoch), i.e. the whole training loop;
  Settings: fp32 with torch's for-each AdamW (the old default), fp32 / bf16 with the fused
  AdamW kernel (the default), bf16 with ``compile=True`` -- the whole step (forward, backward,
  clipping, AdamW) as one compiled graph (`polymodal.train.step`) -- and, as the reference for
  that, bf16 with only the loss compiled (what ``compile=True`` did before);
* ``naive reference``  -- the same heads and optimiser with InfoNCE written as a Python loop over
  anchors (one log-softmax per row and direction), as a first implementation might be.

    .venv/bin/python benchmarks/train_align.py [--head linear|mlp] [--pairs 51200] [--repeats 3]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from unittest import mock
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def naive_infonce(a, b, logit_scale):
    """Symmetric InfoNCE with an explicit loop over anchors (the reference)."""
    import torch
    import torch.nn.functional as F

    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    scale = logit_scale.clamp(max=torch.log(torch.tensor(100.0))).exp()
    total = a.new_zeros(())
    n = a.shape[0]
    for i in range(n):
        total = total - torch.log_softmax(scale * (b @ a[i]), 0)[i]
        total = total - torch.log_softmax(scale * (a @ b[i]), 0)[i]
    return total / (2 * n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=51200, help="pairs per timed epoch")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--image-dim", type=int, default=1280)
    ap.add_argument("--text-dim", type=int, default=384)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--head", choices=["linear", "mlp"], default="linear")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-pairs", type=int, default=5120,
                    help="pairs per timed run of the (slow) naive reference")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from polymodal.objectives.losses import loss_params
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import AlignModel, _loss_fn, pair_batches
    from polymodal.train.config import TrainConfig
    from polymodal.train.loop import clip_grad_norm, fit_loop

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # features like the cache holds them: float16 on disk, float32 in training
    img = torch.from_numpy(rng.standard_normal((args.pairs, args.image_dim), np.float32))
    txt = torch.from_numpy(rng.standard_normal((args.pairs, args.text_dim), np.float32))
    ids = np.arange(args.pairs)  # one id per pair: every batch's ids are distinct
    bs = args.batch_size
    cfg = RetrievalConfig(manifest="-", query="text", target="image", loss="infonce",
                          head=args.head, dim=args.dim, batch_size=bs,
                          train=TrainConfig(epochs=1, progress=False))
    opts = {"normalize": False, **({"hidden": cfg.hidden, "dropout": cfg.dropout}
                                  if args.head == "mlp" else {})}

    def new_model() -> AlignModel:
        specs = {"query": {"kind": args.head, "in_dim": args.text_dim, "out_dim": args.dim,
                           **opts},
                 "target": {"kind": args.head, "in_dim": args.image_dim, "out_dim": args.dim,
                            **opts}}
        means = {"query": txt.mean(0), "target": img.mean(0)}
        return AlignModel(specs, means, loss_params("infonce"))

    def batches(n: int, gen: torch.Generator | None = None):
        """The task's own batches (`pair_batches`: index_select, ids dropped when distinct)
        over the first ``n`` pairs; pair i is (text i, image i) with its own id."""
        pairs = np.arange(min(n, args.pairs))
        return pair_batches(txt, img, pairs, pairs, ids, bs,
                            gen if gen is not None else torch.Generator().manual_seed(0))

    def run_steps(model: AlignModel, loss_fn, n: int, fused: bool = False) -> float:
        """Training steps as fit_loop takes them (AdamW, gradient clipping at 5);
        ``fused``: torch's fused AdamW kernel instead (measured, not used by fit_loop)."""
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr,
                                weight_decay=cfg.train.weight_decay, **({"fused": True} if fused
                                                                        else {}))
        model.train()
        t = time.perf_counter()
        steps = 0
        for batch in batches(n, torch.Generator().manual_seed(0)):
            loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad_norm(model.parameters(), 5.0)
            opt.step()
            steps += 1
        return steps * bs / (time.perf_counter() - t)

    ours_step = _loss_fn(cfg)

    def naive_step(model: AlignModel, batch) -> torch.Tensor:
        q, t, *_ = batch
        return naive_infonce(model.embed(q, "query"), model.embed(t, "target"),
                             model.scalars["logit_scale"])

    def run_fit_loop(model: AlignModel, **train) -> float:
        """Pairs/s of the whole loop with TrainConfig(**train); epoch 1 is a warm-up (and
        the compile, with compile=True), epochs 2-3 are timed from the loop's own log."""
        val_q, val_t = txt[:512], img[:512]

        def validate(m: AlignModel) -> float:
            return float((m.embed(val_q, "query") * m.embed(val_t, "target")).sum(1).mean())

        stamps = []

        def timed(e: int):
            stamps.append(time.perf_counter())
            return batches(args.pairs, torch.Generator().manual_seed(e))

        tc = TrainConfig(epochs=3, progress=False, patience=10, **train)
        fit_loop(model, ours_step, timed, validate, tc)
        return 2 * (args.pairs // bs) * bs / (time.perf_counter() - stamps[1])

    # check the two losses agree before timing them
    m = new_model()
    q, t, *_ = next(batches(bs))
    a, b = m.embed(q, "query"), m.embed(t, "target")
    from polymodal.objectives.losses import infonce_loss
    l_ours = infonce_loss(a, b, m.scalars["logit_scale"]).item()
    l_naive = naive_infonce(a, b, m.scalars["logit_scale"]).item()
    print(f"{args.pairs} pairs, batch {bs}, {args.head} heads {args.text_dim}->{args.dim} and "
          f"{args.image_dim}->{args.dim}; torch threads {torch.get_num_threads()}, cpus "
          f"{os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    print(f"loss check on one batch: polymodal {l_ours:.6f}, naive {l_naive:.6f}")
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    run_steps(new_model(), ours_step, 8 * bs)  # warm-up
    run_steps(new_model(), naive_step, 2 * bs)

    class LossOnly:
        """Stands in for polymodal.train.step.CompiledStep: the loop then compiles only the
        loss and steps eagerly (compile=True before the whole-step graph)."""
        failed = True

        def __init__(self, *args, **kwargs):
            pass

    settings = {"fp32 (old default)": {"fused_adamw": False},
                "fp32 fused": {},
                "bf16 fused": {"precision": "bf16"},
                "bf16 compiled loss only": {"precision": "bf16", "compile": True},
                "bf16 fused compiled": {"precision": "bf16", "compile": True}}
    ours, naive, loops = [], [], {k: [] for k in settings}
    for rep in range(args.repeats):
        ours.append(run_steps(new_model(), ours_step, args.pairs))
        for name, train in settings.items():
            with mock.patch("polymodal.train.loop.CompiledStep", LossOnly) if "only" in name \
                    else contextlib.nullcontext():
                loops[name].append(run_fit_loop(new_model(), **train))
        naive.append(run_steps(new_model(), naive_step, args.naive_pairs))
        print(f"run {rep + 1}: polymodal step {ours[-1]:.0f} | "
              + " | ".join(f"fit_loop {k} {v[-1]:.0f}" for k, v in loops.items())
              + f" | naive reference {naive[-1]:.0f} pairs/s", flush=True)
    med = statistics.median
    best = max(loops, key=lambda k: med(loops[k]))
    gain = med(loops["bf16 fused compiled"]) / med(loops["bf16 compiled loss only"])
    print(f"median pairs/s: step {med(ours):.0f}, "
          + ", ".join(f"fit_loop {k} {med(v):.0f}" for k, v in loops.items())
          + f", naive {med(naive):.0f}; best fit_loop: {best}, "
          f"{med(loops[best]) / med(loops['fp32 (old default)']):.2f}x the old default, "
          f"whole-step graph {gain:.2f}x the loss-only compile; "
          f"goal >= 100000 pairs/s: {'MET' if med(loops[best]) >= 100000 else 'NOT met'}")
    print(f"pairs/s {med(loops[best]):.0f}")


if __name__ == "__main__":
    main()
