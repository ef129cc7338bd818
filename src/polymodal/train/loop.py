"""A task-agnostic training loop: progress bar, per-step CSV log, checkpoint / resume, early
stopping on a validation score, optional torch.distributed (gloo) data parallelism.

The task supplies the model, a ``step_loss(model, batch) -> Tensor`` function, a batch source
``batches(epoch) -> Iterable`` and ``validate(model) -> float`` (higher is better).
"""
from __future__ import annotations

import csv
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from polymodal.core.atomic import atomic_path
from polymodal.core.errors import PolymodalError
from polymodal.train.config import TrainConfig


def _tensorboard_writer(run_dir: Path) -> Any:
    """A SummaryWriter on ``run_dir/tensorboard``, or None (with a message) when the
    tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("warning: TensorBoard logging skipped: the 'tensorboard' package is not installed "
              "(pip install 'polymodal[tensorboard]'); the CSV log is still written",
              file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


@dataclass
class TrainResult:
    best_score: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a torch generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _dist() -> tuple[int, int]:
    """(rank, world size); initialises gloo when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _average_grads(model: torch.nn.Module, world: int) -> None:
    for p in model.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    sched: Any, state: dict[str, Any]) -> None:
    """Atomic checkpoint of model, optimizer, scheduler and loop state (weights_only-loadable)."""
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "state": state, "rng": torch.get_rng_state()},
                   tmp)


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    sched: Any) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
    except Exception as e:
        raise PolymodalError(f"{path}: cannot resume from checkpoint ({e})") from None
    torch.set_rng_state(ck["rng"])
    return ck["state"]


def fit_loop(model: torch.nn.Module, step_loss: Callable[[torch.nn.Module, Any], torch.Tensor],
             batches: Callable[[int], Iterable], validate: Callable[[torch.nn.Module], float],
             config: TrainConfig, run_dir: Path | None = None, resume: bool = False,
             desc: str = "train") -> TrainResult:
    """Train ``model`` with AdamW; keep the weights of the best validation epoch."""
    rank, world = _dist()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                            weight_decay=config.weight_decay, betas=config.betas or (0.9, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    ck_path = run_dir / "checkpoint.pt" if run_dir else None
    state = {"epoch": 0, "best": -math.inf, "best_epoch": -1, "stale": 0, "history": []}
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if resume and ck_path and ck_path.is_file():
        state = load_checkpoint(ck_path, model, opt, sched)
        best_path = run_dir / "best.pt"
        if best_path.is_file():
            best_weights = torch.load(best_path, map_location="cpu", weights_only=True)
    log = None
    if run_dir and rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        new = not (run_dir / "train_log.csv").exists() or not resume
        log_fh = open(run_dir / "train_log.csv", "w" if new else "a", newline="")
        log = csv.writer(log_fh)
        if new:
            log.writerow(["epoch", "step", "loss", "lr"])
    tb = _tensorboard_writer(run_dir) if config.tensorboard and run_dir and rank == 0 else None
    t0 = time.perf_counter()
    step = 0
    bar = tqdm(total=config.epochs, initial=state["epoch"], desc=desc, unit="epoch",
               disable=not config.progress or rank != 0, dynamic_ncols=True)
    try:
        for epoch in range(state["epoch"], config.epochs):
            model.train()
            losses = []
            for i, batch in enumerate(batches(epoch)):
                if world > 1 and i % world != rank:
                    continue
                loss = step_loss(model, batch)
                if not torch.isfinite(loss):
                    raise PolymodalError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                         "lower the learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:
                    _average_grads(model, world)
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                losses.append(loss.item())
                step += 1
                if log:
                    log.writerow([epoch + 1, step, f"{losses[-1]:.6f}", opt.param_groups[0]["lr"]])
                if tb:
                    tb.add_scalar("train/loss", losses[-1], step)
                    tb.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
            sched.step()
            model.eval()
            with torch.no_grad():
                score = float(validate(model))
            state["history"].append({"epoch": epoch + 1, "loss": float(np.mean(losses or [0.0])),
                                     "val": score})
            if score > state["best"]:
                state.update(best=score, best_epoch=epoch + 1, stale=0)
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if run_dir and rank == 0:
                    with atomic_path(run_dir / "best.pt") as tmp:
                        torch.save(best_weights, tmp)
            else:
                state["stale"] += 1
            state["epoch"] = epoch + 1
            if tb:
                tb.add_scalar("val/score", score, epoch + 1)
                tb.add_scalar("train/epoch_loss", state["history"][-1]["loss"], epoch + 1)
            bar.set_postfix(loss=f"{state['history'][-1]['loss']:.4f}", val=f"{score:.4f}")
            bar.update(1)
            if ck_path and rank == 0:
                save_checkpoint(ck_path, model, opt, sched, state)
            if state["stale"] >= config.patience:
                break
    finally:
        bar.close()
        if log:
            log_fh.close()
        if tb:
            tb.close()
    model.load_state_dict(best_weights)
    return TrainResult(best_score=state["best"], best_epoch=state["best_epoch"],
                       epochs_run=state["epoch"], seconds=time.perf_counter() - t0,
                       history=state["history"])
