"""The one task-agnostic training loop: progress bar, per-step CSV log, exact checkpoint / resume,
early stopping on a validation score, data parallelism under torchrun / accelerate launch (gloo;
the contract with the task is `polymodal.train.dist`: same global batches on every rank, the task
shards them, gradients averaged, only rank 0 writes, prints and checkpoints).

The task supplies the model, a ``step_loss(model, batch) -> Tensor`` function, a batch source
``batches(epoch) -> Iterable`` and ``validate(model) -> float`` (higher is better).

Exact resume: at the end of every epoch ``RUN/checkpoint.pt`` is replaced atomically by one file
holding the weights, the kept (best) weights, the loop state, every optimizer / scheduler state
and every RNG state (Python ``random``, NumPy global, torch CPU, the task's shuffling
``generator``); the CSV log is flushed before it. A run killed at any point and resumed with
``resume=True`` ends with the same weights, history and ``train_log.csv`` as one never stopped.
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from polymodal.core.atomic import atomic_path
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.train import dist
from polymodal.train.config import TrainConfig
from polymodal.train.step import CompiledStep

CHECKPOINT_FORMAT = 2
LOG_HEADER = ["epoch", "step", "loss", "lr"]
Optimizers = Mapping[str, torch.optim.Optimizer]


def _tensorboard_writer(run_dir: Path, purge_step: int | None) -> Any:
    """A SummaryWriter on ``run_dir/tensorboard``, or None (with a message) when the
    tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("warning: TensorBoard logging skipped: the 'tensorboard' package is not installed "
              "(pip install 'polymodal[tensorboard]'); the CSV log is still written",
              file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)


@dataclass
class TrainResult:
    best_score: float
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    kept_epoch: int = 0  # the epoch whose weights the model holds (config.keep)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a torch generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_settings(config: TrainConfig | None, defaults: Mapping[str, Any],
                   **overrides: Any) -> TrainConfig:
    """``config`` (None: ``TrainConfig(**defaults)``, a model's own defaults) with
    ``overrides`` (TrainConfig fields, e.g. ``epochs=8``), validated."""
    unknown = sorted(set(overrides) - set(TrainConfig.model_fields))
    if unknown:
        raise UsageError(f"unknown training setting {unknown[0]!r}; use one of "
                         f"{', '.join(TrainConfig.model_fields)}")
    base = config.model_dump() if config is not None else dict(defaults)
    return TrainConfig.model_validate({**base, **overrides})


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged), then restore the setting,
    also when the block raises."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG state a training step may draw from, as weights_only-loadable values."""
    _, key, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "generator": generator.get_state() if generator is not None else None}


def set_rng_state(state: Mapping[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    if generator is not None:
        if state["generator"] is None:
            raise KeyError("no shuffling-generator state")
        generator.set_state(state["generator"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a kill leaves the old or the new file)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path`` (weights_only), or a one-line `PolymodalError`."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PolymodalError(f"{path}: cannot resume from checkpoint ({e})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise PolymodalError(f"{path}: cannot resume from checkpoint (not a format-"
                             f"{CHECKPOINT_FORMAT} checkpoint of this version; start without "
                             f"--resume)")
    return ck


class _CsvLog:
    """``train_log.csv``: one row per step, flushed at the end of every epoch. On resume it is cut
    back to the rows of the checkpointed epochs (a kill after the flush and before the
    checkpoint leaves rows of an epoch that is run again) and appended to."""

    def __init__(self, path: Path, keep_epochs: int):
        rows: list[list[str]] = []
        if keep_epochs and path.is_file():
            with open(path, newline="") as fh:
                rows = [r for r in list(csv.reader(fh))[1:] if r and int(r[0]) <= keep_epochs]
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh).writerows([LOG_HEADER, *rows])
        self.fh = open(path, "a", newline="")
        self.writer = csv.writer(self.fh)

    def row(self, *values: Any) -> None:
        self.writer.writerow(values)

    def flush(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` with the same result, less work: the gradients are
    multiplied only when the norm is over the limit. Torch multiplies every gradient by the
    clamped coefficient, which is exactly 1.0 under the limit, to avoid a host sync on GPUs; on
    this CPU that multiply was 0.14 ms of a 3.6 ms step (docs/RESULTS.md §1)."""
    params = [p for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params])
    if float(max_norm / (total + 1e-6)) < 1.0:  # torch's own coefficient, before its clamp
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def fit_loop(model: torch.nn.Module, step_loss: Callable[[torch.nn.Module, Any], torch.Tensor],
             batches: Callable[[int], Iterable], validate: Callable[[torch.nn.Module], float],
             config: TrainConfig, run_dir: Path | None = None, resume: bool = False,
             desc: str = "train", *, generator: torch.Generator | None = None,
             extra_optimizers: Optimizers | Callable[[torch.nn.Module], Optimizers] | None = None,
             threads: int | None = None) -> TrainResult:
    """Train ``model`` with AdamW (``config.lr_schedule``: cosine or constant); end with the
    weights of the best validation epoch (``config.keep == "best"``) or of the last one.

    ``generator``: the task's shuffling generator, checkpointed with the other RNG states.
    ``extra_optimizers``: ``{name: optimizer}`` (or ``model -> {name: optimizer}``) that the
    step function steps itself (e.g. a GAN discriminator's); checkpointed and restored.
    ``threads``: torch CPU threads while training; the previous setting is restored on exit.
    Several processes (`polymodal.train.dist`): ``step_loss`` gets the global batch and returns a
    loss whose mean over the ranks is the global-batch loss (its rows via ``dist.shard``; or the
    whole batch on every rank); the loop averages gradients and loss, uses rank 0's validation
    score, and only rank 0 writes ``run_dir``; every rank resumes from rank 0's checkpoint.
    """
    with torch_threads(threads):
        return _fit(model, step_loss, batches, validate, config, Path(run_dir) if run_dir else
                    None, resume, desc, generator, extra_optimizers)


def _eager_step(model: torch.nn.Module, step_loss, batch: Any, opt: torch.optim.Optimizer,
                params: list[torch.nn.Parameter], config: TrainConfig) -> float:
    """Forward, backward (gradients averaged over the processes), clipping and the optimizer
    step; -> the loss (nothing is updated when it is not finite)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
        loss = step_loss(model, batch)
    loss = loss.float()
    opt.zero_grad(set_to_none=True)
    if loss.requires_grad:  # a rank without rows of this batch may return a constant
        loss.backward()
    value = dist.average_grads(params, loss)  # 1 process: loss.item()
    if math.isfinite(value):
        if config.grad_clip:
            clip_grad_norm(model.parameters(), config.grad_clip)
        opt.step()
    return value


def _fit(model, step_loss, batches, validate, config: TrainConfig, run_dir: Path | None,
         resume: bool, desc: str, generator, extra_optimizers) -> TrainResult:
    rank = dist.init()[0]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr,
                            weight_decay=config.weight_decay, betas=config.betas or (0.9, 0.999),
                            **({"fused": True} if config.fused_adamw else {}))
    extra = dict((extra_optimizers(model) if callable(extra_optimizers) else extra_optimizers)
                 or {})
    whole = None  # the whole step as one compiled graph (one process, AdamW only)
    if config.compile:
        if dist.world() == 1 and not extra:
            whole = CompiledStep(model, step_loss, opt, config.grad_clip, config.precision)
        step_loss = torch.compile(step_loss, dynamic=False)  # otherwise, or if that fails
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
             if config.lr_schedule == "cosine" else
             torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0))
    ck_path = run_dir / "checkpoint.pt" if run_dir else None
    state: dict[str, Any] = {"epoch": 0, "best": -math.inf, "best_epoch": -1, "stale": 0,
                             "stopped": False, "step": 0, "history": []}
    best_weights: dict[str, torch.Tensor] | None = None
    resumed = bool(dist.broadcast(resume and ck_path is not None and ck_path.is_file()))
    if resumed:
        ck = load_checkpoint(ck_path)
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            if set(ck["extra"]) != set(extra):
                raise KeyError(f"optimizers {sorted(ck['extra'])}, this run has {sorted(extra)}")
            for name, o in extra.items():
                o.load_state_dict(ck["extra"][name])
            set_rng_state(ck["rng"], generator)
            state = dict(ck["state"])
        except Exception as e:
            raise PolymodalError(f"{ck_path}: cannot resume from checkpoint ({e})") from None
        best_weights = ck["best"]
    dist.sync_module(model)  # every rank starts from rank 0's weights
    dist.barrier()  # every rank has read the checkpoint before rank 0 replaces it
    if config.keep == "best" and best_weights is None:
        best_weights = _weights(model)
    log = tb = None
    if run_dir and rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = _CsvLog(run_dir / "train_log.csv", state["epoch"] if resumed else 0)
        if config.tensorboard:
            tb = _tensorboard_writer(run_dir, state["step"] + 1 if resumed else None)
    t0 = time.perf_counter()
    bar = tqdm(total=config.epochs, initial=state["epoch"], desc=desc, unit="epoch",
               disable=not config.progress or rank != 0, dynamic_ncols=True)
    try:
        for epoch in range(state["epoch"], config.epochs if not state["stopped"] else 0):
            model.train()
            losses = []
            for batch in batches(epoch):  # every rank: the same global batches
                value = whole(batch) if whole is not None and not whole.failed else None
                if value is None:
                    value = _eager_step(model, step_loss, batch, opt, params, config)
                if not math.isfinite(value):
                    raise PolymodalError(f"training diverged at epoch {epoch + 1} (loss "
                                         f"{value}); lower the learning rate")
                losses.append(value)
                state["step"] += 1
                lr = opt.param_groups[0]["lr"]
                if log:
                    log.row(epoch + 1, state["step"], f"{losses[-1]:.6f}", lr)
                if tb:
                    tb.add_scalar("train/loss", losses[-1], state["step"])
                    tb.add_scalar("train/lr", lr, state["step"])
            sched.step()
            model.eval()
            with torch.no_grad():
                score = dist.broadcast(float(validate(model)))
            state["history"].append({"epoch": epoch + 1, "loss": float(np.mean(losses or [0.0])),
                                     "val": score})
            state["epoch"] = epoch + 1
            if score > state["best"]:
                state.update(best=score, best_epoch=epoch + 1, stale=0)
                if config.keep == "best":
                    best_weights = _weights(model)
            else:
                state["stale"] += 1
            state["stopped"] = state["stale"] >= config.patience
            if tb:
                tb.add_scalar("val/score", score, epoch + 1)
                tb.add_scalar("train/epoch_loss", state["history"][-1]["loss"], epoch + 1)
            bar.set_postfix(loss=f"{state['history'][-1]['loss']:.4f}", val=f"{score:.4f}")
            bar.update(1)
            if log:
                log.flush()  # before the checkpoint: the log never lacks a checkpointed epoch
            if ck_path and rank == 0:
                best = (None if config.keep == "last" or state["best_epoch"] == state["epoch"]
                        else best_weights)  # None: the current weights are the kept ones
                save_checkpoint(ck_path, {
                    "format": CHECKPOINT_FORMAT, "model": model.state_dict(), "best": best,
                    "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "extra": {k: o.state_dict() for k, o in extra.items()}, "state": state,
                    "rng": rng_state(generator)})
            if state["stopped"]:
                break
    finally:
        bar.close()
        if log:
            log.close()
        if tb:
            tb.close()
    if config.keep == "best" and best_weights is not None:
        model.load_state_dict(best_weights)
    return TrainResult(best_score=state["best"], best_epoch=state["best_epoch"],
                       epochs_run=state["epoch"], seconds=time.perf_counter() - t0,
                       history=state["history"],
                       kept_epoch=state["best_epoch"] if config.keep == "best" else state["epoch"])
