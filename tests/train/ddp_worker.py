"""Started by test_ddp.py under ``torchrun --nproc_per_node 2``: jobs from a JSON file, run in one
process group (one launch instead of one per case).

``{"grads": OUT}``: gradients of a contrastive loss on `gather`-ed embeddings and of a per-row
loss with `shard_mean`, for global batches of 5 rows (3 + 2) and 1 row (1 + 0), averaged with
`average_grads`; every rank saves its own to OUT/grads-RANK.pt (read by the test).
``{"task": "retrieval"|"classify", "config": {...}, "out": DIR, "resume": bool}``: a fit through
the library; each rank prints ``RESULT <rank> <sorted keys of what it returned>``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from polymodal.train import dist


def grad_case(seed: int, n: int) -> dict[str, torch.Tensor]:
    """What test_ddp.py also computes in one process: the model, data and losses of one step."""
    from polymodal.objectives.losses import infonce_loss

    torch.manual_seed(seed)
    net = torch.nn.ModuleDict({"q": torch.nn.Linear(6, 4), "t": torch.nn.Linear(5, 4),
                               "c": torch.nn.Linear(6, 3)})
    scale = torch.nn.Parameter(torch.tensor(2.0))
    q, t = torch.randn(n, 6), torch.randn(n, 5)
    y, ids = torch.randint(0, 3, (n,)), torch.arange(n) % 3
    net.register_parameter("scale", scale)
    dist.sync_module(net)
    qs, ts, ys = dist.shard((q, t, y), n)
    a, b = dist.gather(net["q"](qs)), dist.gather(net["t"](ts))
    contrastive = infonce_loss(a, b, scale, pair_ids=ids)
    per_row = dist.shard_mean(torch.nn.functional.cross_entropy(net["c"](qs), ys,
                                                                reduction="none"), n)
    (contrastive + per_row).backward()
    loss = dist.average_grads(list(net.parameters()), contrastive + per_row)
    return {"loss": torch.tensor(loss), **{k: p.grad.clone() for k, p in net.named_parameters()}}


def main(jobs_file: str) -> None:
    for job in json.loads(Path(jobs_file).read_text()):
        if "grads" in job:
            torch.save({n: grad_case(n, n) for n in (5, 1)},
                       Path(job["grads"]) / f"grads-{dist.rank()}.pt")
            continue
        if job["task"] == "retrieval":
            from polymodal.tasks.retrieval.config import RetrievalConfig
            from polymodal.tasks.retrieval.fit import fit_retrieval

            res = fit_retrieval(RetrievalConfig.model_validate(job["config"]), job["out"],
                                resume=job.get("resume", False), with_baselines=False,
                                progress=False)
        else:
            from polymodal.tasks.classify.config import ClassifierConfig
            from polymodal.tasks.classify.fit import fit_classifier

            res = fit_classifier(ClassifierConfig.model_validate(job["config"]), job["out"],
                                 progress=False, resume=job.get("resume", False))
        print(f"RESULT {dist.rank()} {' '.join(sorted(res))}", flush=True)
    dist.finish()


if __name__ == "__main__":
    main(sys.argv[1])
