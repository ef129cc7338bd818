"""One compiled graph for a whole training step: forward, backward, gradient clipping and AdamW.

``TrainConfig(compile=True)`` in one process runs each step as a single ``torch.compile``'d
function instead of the eager sequence ``loss.backward(); clip_grad_norm(); opt.step()``. The
gradients come from ``torch.func.grad_and_value`` over ``torch.func.functional_call``, so
Inductor sees the forward and the backward in one graph and fuses the clipping and the AdamW
update into the same generated kernels; what remains per step is one Python call. On the AMX
Xeon this took the alignment step from 85k to 107k pairs/s at batch 256 (docs/RESULTS.md §1).

The optimizer stays the loop's ``torch.optim.AdamW``: its ``state`` (``step``, ``exp_avg``,
``exp_avg_sq``, the tensors torch itself creates) is updated in place and its ``param_groups``
give the learning rate, weight decay and betas every step, so checkpoints, ``--resume`` and
the learning-rate scheduler are unchanged. The update is torch's AdamW formula
(``torch.optim.adamw``: decoupled decay, bias-corrected moments, ``eps`` outside the square
root) computed by Inductor, so it agrees with torch's kernels to float32 rounding, not bit for
bit; a run and its resumed copy both use this path and end bit-equal.

Parameters the loss does not use get no update (as eager AdamW skips a ``None`` gradient): they
are found once, on the first batch, by an eager backward under a forked RNG (no random draw of
the run is consumed). A step that cannot be captured as one graph (a graph break, an op
Inductor cannot compile) falls back to the eager step with one printed line.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import torch

__all__ = ["CompiledStep"]


class _StepModule(torch.nn.Module):
    """``step_loss(model, batch)`` as a module, so that ``functional_call`` can swap its
    parameters for the traced ones."""

    def __init__(self, model: torch.nn.Module, step_loss: Callable[[torch.nn.Module, Any],
                                                                   torch.Tensor]):
        super().__init__()
        self.model = model
        self.step_loss = step_loss

    def forward(self, batch: Any) -> torch.Tensor:
        return self.step_loss(self.model, batch)


class CompiledStep:
    """``step(batch) -> float`` (the batch's loss, before the update): one training step of
    ``model`` with ``opt`` (a single-group ``torch.optim.AdamW`` over its trainable
    parameters), clipping the gradient norm to ``grad_clip`` (None: no clipping) as
    ``clip_grad_norm_`` does, under bf16 autocast when ``precision == "bf16"``.
    ``failed`` is set when the step could not be compiled; the caller then steps eagerly."""

    def __init__(self, model: torch.nn.Module, step_loss: Callable[[torch.nn.Module, Any],
                                                                   torch.Tensor],
                 opt: torch.optim.Optimizer, grad_clip: float | None, precision: str):
        if not isinstance(opt, torch.optim.AdamW) or len(opt.param_groups) != 1:
            raise TypeError("CompiledStep needs a one-group torch.optim.AdamW")
        self.module = _StepModule(model, step_loss)
        self.opt = opt
        self.grad_clip = grad_clip or None
        self.bf16 = precision == "bf16"
        self.failed = False
        self._fn: Callable[..., torch.Tensor] | None = None

    def _loss(self, batch: Any) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.module(batch).float()

    def _build(self, batch: Any) -> None:
        """Find the parameters that get a gradient, create their AdamW state as torch would,
        and compile the step over them."""
        group = self.opt.param_groups[0]
        params = [p for p in group["params"] if p.requires_grad]
        with torch.random.fork_rng(devices=[]):
            grads = torch.autograd.grad(self._loss(batch), params, allow_unused=True)
        used = [p for p, g in zip(params, grads) if g is not None]
        by_id = {id(p): name for name, p in self.module.named_parameters()}
        self.names = [by_id[id(p)] for p in used]
        self.params = used
        for p in used:
            st = self.opt.state[p]
            if not st:  # torch.optim.AdamW's own initial state (fused / foreach layout)
                st["step"] = torch.tensor(0.0, dtype=torch.float32)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        others = {name: t for name, t in self.module.named_parameters()
                  if name not in set(self.names)}
        others.update(self.module.named_buffers())
        names, clip, bf16, module = self.names, self.grad_clip, self.bf16, self.module

        def loss_fn(weights: list[torch.Tensor], batch: Any) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.func.functional_call(
                    module, ({**others, **dict(zip(names, weights))},), (batch,))
            return loss.float()

        def step(weights, exp_avg, exp_avg_sq, steps, batch, lr, wd, beta1, beta2, eps):
            grads, loss = torch.func.grad_and_value(loss_fn)(weights, batch)
            if clip is not None:  # torch.nn.utils.clip_grad_norm_ (norm 2, no error on inf)
                total = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                coef = (clip / (total + 1e-6)).clamp(max=1.0)
                grads = [g * coef for g in grads]
            for p, g, m, v, s in zip(weights, grads, exp_avg, exp_avg_sq, steps):
                s.add_(1)  # torch.optim.adamw._single_tensor_adamw, step for step
                p.mul_(1 - lr * wd)
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).add_((1 - beta2) * g * g)
                step_size = lr / (1 - beta1 ** s)
                denom = (v.sqrt() / (1 - beta2 ** s).sqrt()).add_(eps)
                p.sub_(step_size * m / denom)
            return loss
        self._fn = torch.compile(step, dynamic=False, fullgraph=True)

    def __call__(self, batch: Any) -> float | None:
        """The loss of ``batch`` (the weights are updated), or None when the step could not be
        compiled (nothing was updated; ``failed`` is set and the caller steps eagerly)."""
        first = self._fn is None
        if first:
            self._build(batch)
        group = self.opt.param_groups[0]
        state = [self.opt.state[p] for p in self.params]
        beta1, beta2 = group["betas"]
        scalars = [torch.tensor(float(x)) for x in
                   (group["lr"], group["weight_decay"], beta1, beta2, group["eps"])]
        args = ([p.detach() for p in self.params], [s["exp_avg"] for s in state],
                [s["exp_avg_sq"] for s in state], [s["step"] for s in state], batch, *scalars)
        self.opt._opt_called = True  # what torch's wrapped opt.step() tells the LR scheduler
        if not first:
            return float(self._fn(*args))
        try:
            return float(self._fn(*args))
        except Exception as e:  # compile-time: nothing was updated (fullgraph=True)
            self.failed = True
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            # Inductor's message is "backend='inductor' raised:" then the cause on the next line
            reason = (lines[1] if len(lines) > 1 and lines[0].endswith("raised:")
                      else lines[0] if lines else type(e).__name__)
            print(f"note: the training step could not be compiled as one graph ({reason[:160]});"
                  f" compiling the loss only", file=sys.stderr)
            return None
