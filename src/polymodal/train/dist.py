"""Data parallelism across processes (``torchrun`` / ``accelerate launch``, gloo on CPU): the small
contract between the training loop and a task. In one process every function is the identity
(or a no-op), so a task written against it runs unchanged without a launcher.

How a run is split. Every rank runs the same program on the same data with the same seed, so
every rank draws the same sequence of GLOBAL batches (the batch size is the global one, as in a
1-process run). A task whose step function opts in (``fit_loop(..., sharded=True)``) takes its
rows of each global batch with `shard` and returns a loss ``L_r`` whose mean over the ranks is the
loss of the whole global batch, and whose gradients averaged over the ranks are its gradient:

- per-row losses (cross-entropy, MSE, ...): ``shard_mean(per_row, n_global)`` = the rows' sum
  times ``world / n_global`` (so ranks are weighted by how many rows they hold);
- losses over the whole batch (InfoNCE, SigLIP, triplet, ...): compute the embeddings of the local
  rows, `gather` them (differentiable, like open_clip's ``gather_with_grad``: the backward pass
  sums the gradient over the ranks) and compute the full-batch loss on every rank.

The loop then averages the gradients with ONE all-reduce of a flat buffer (a parameter without a
gradient on some rank counts as zeros there, so every rank always joins the same collectives) and
steps the same optimizer on the same weights: the weights stay identical on every rank and equal
those of a 1-process run up to float rounding. A step function that does not opt in is run on the
whole batch by every rank (correct, no speed-up).

Uneven batches: nothing is dropped or padded by this module. A global batch of ``n`` rows is cut
into contiguous slices of ``ceil(n / world)`` or ``floor(n / world)`` rows in rank order
(``numpy.array_split``), so the gathered rows are in the batch's own order; a rank may get 0 rows
(``n < world``): it still runs the step and joins every collective. `gather` pads each slice to
the largest one for the transfer and drops the padding. Dropout masks are drawn per rank, so a
model with dropout equals a 1-process run in distribution, not bit for bit.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, TypeVar

import torch

from polymodal.core.errors import PolymodalError

T = TypeVar("T")


def init() -> tuple[int, int]:
    """``(rank, world size)``; starts the gloo process group from the launcher's environment
    (``WORLD_SIZE`` > 1: ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, set by torchrun and
    accelerate) the first time it is asked. A group started by the caller is used as it is."""
    dist = torch.distributed
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank() -> int:
    return init()[0]


def world() -> int:
    return init()[1]


def is_main() -> bool:
    """True on rank 0 (and in a plain 1-process run): the only rank that writes or prints."""
    return rank() == 0


def finish() -> None:
    """End of a multi-process command: wait until every rank is done (rank 0 evaluates and
    writes after training while the others idle), then close the process group, so no rank
    tears it down under another one still using it. A no-op in one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if world() > 1:
        torch.distributed.barrier()


def broadcast(value: float) -> float:
    """Rank 0's ``value`` on every rank."""
    if world() == 1:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    torch.distributed.broadcast(t, 0)
    return float(t.item())


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run ``fn`` on rank 0 only (writes into the run folder: encoding, ``begin``), then every rank
    waits for it. When it fails, rank 0 raises its error and the other ranks a one-line
    `PolymodalError` instead of waiting forever. Returns ``fn``'s result on rank 0, else None."""
    out, err = None, None
    if is_main():
        try:
            out = fn(*args, **kwargs)
        except BaseException as e:  # re-raised below, after the other ranks are told
            err = e
    failed = broadcast(1.0 if err is not None else 0.0)
    if err is not None:
        raise err
    if failed:
        raise PolymodalError(f"rank {rank()}: stopped because rank 0 failed (see its error)")
    return out


def rows(n: int) -> slice:
    """This rank's contiguous slice of a global batch of ``n`` rows (``numpy.array_split``)."""
    r, w = init()
    q, extra = divmod(n, w)
    start = r * q + min(r, extra)
    return slice(start, start + q + (r < extra))


def shard(batch: Any, n: int | None = None) -> Any:
    """This rank's rows of a global batch: every tensor of a (nested) tuple / list / dict whose
    first dimension is ``n`` (default: that of the first tensor found) is sliced with `rows`;
    anything else is returned as it is. The identity in one process."""
    if world() == 1:
        return batch
    if n is None:
        n = _first_len(batch)
        if n is None:
            return batch
    part = rows(n)

    def cut(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x[part] if x.ndim and x.shape[0] == n else x
        if isinstance(x, dict):
            return {k: cut(v) for k, v in x.items()}
        if isinstance(x, (tuple, list)):
            return type(x)(cut(v) for v in x)
        return x
    return cut(batch)


def _first_len(x: Any) -> int | None:
    if isinstance(x, torch.Tensor):
        return int(x.shape[0]) if x.ndim else None
    values = x.values() if isinstance(x, dict) else x if isinstance(x, (tuple, list)) else ()
    for v in values:
        n = _first_len(v)
        if n is not None:
            return n
    return None


def shard_mean(per_row: torch.Tensor, n_global: int) -> torch.Tensor:
    """The rank's share of a per-row mean over the global batch: ``sum(per_row) * world /
    n_global``; its mean over the ranks is ``mean`` over all ``n_global`` rows (0 local rows: 0)."""
    w = world()
    return per_row.mean() if w == 1 else per_row.sum() * (w / max(n_global, 1))


class _Gather(torch.autograd.Function):
    """All ranks' rows in rank order; backward: the gradient summed over the ranks, this rank's
    rows of it (the semantics of ``torch.distributed.nn.functional.all_gather``, with rows of
    unequal counts, on gloo)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int], me: int) -> torch.Tensor:
        ctx.sizes, ctx.me = sizes, me
        pad = x.new_zeros((max(sizes), *x.shape[1:]))
        pad[: x.shape[0]] = x
        parts = [torch.empty_like(pad) for _ in sizes]
        torch.distributed.all_gather(parts, pad)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad.contiguous().clone()
        torch.distributed.all_reduce(g)
        start = sum(ctx.sizes[: ctx.me])
        return g[start: start + ctx.sizes[ctx.me]], None, None


def gather(x: torch.Tensor) -> torch.Tensor:
    """The rows of ``x`` of every rank, concatenated in rank order (the global batch when ``x``
    holds this rank's `shard`), differentiable; the identity in one process."""
    r, w = init()
    if w == 1:
        return x
    n = torch.tensor([x.shape[0]], dtype=torch.int64)
    counts = [torch.zeros_like(n) for _ in range(w)]
    torch.distributed.all_gather(counts, n)
    return _Gather.apply(x.contiguous(), [int(c.item()) for c in counts], r)


def sync_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical starting weights)."""
    if world() == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(t.data, 0)


def average_grads(params: Iterable[torch.nn.Parameter], loss: torch.Tensor) -> float:
    """Average the gradients of ``params`` and the value of ``loss`` over the ranks in one
    all-reduce; returns the averaged loss. A gradient missing on some ranks counts as zeros
    there; one missing on every rank stays None (the optimizer skips that parameter, as in one
    process)."""
    params = list(params)
    if world() == 1:
        return float(loss.detach())
    flat = [p.grad.reshape(-1).float() if p.grad is not None else
            torch.zeros(p.numel(), dtype=torch.float32) for p in params]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    buf = torch.cat([*flat, has, loss.detach().float().reshape(1)])
    torch.distributed.all_reduce(buf)
    buf /= world()
    i = 0
    for p, present in zip(params, buf[-1 - len(params):-1].tolist()):
        k = p.numel()
        p.grad = buf[i:i + k].view_as(p).to(p.dtype).clone() if present > 0 else None
        i += k
    return float(buf[-1])
