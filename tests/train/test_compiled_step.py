"""The whole training step as one compiled graph (polymodal.train.step.CompiledStep): the same
AdamW + clipping as torch's eager step to float32 rounding, unused parameters untouched, and a
step that cannot be captured falls back to the eager loop with one line."""
from __future__ import annotations

import pytest
import torch

from polymodal.train.config import TrainConfig
from polymodal.train.loop import clip_grad_norm, fit_loop, seed_everything
from polymodal.train.step import CompiledStep


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                        torch.nn.Linear(16, 1))
        self.unused = torch.nn.Parameter(torch.ones(3))  # no gradient: AdamW must skip it


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 6, generator=g)
    return x, (x[:, :1] * 3 - x[:, 1:2]).tanh() + 0.1 * torch.randn(512, 1, generator=g)


def _loss(m, batch):
    return torch.nn.functional.mse_loss(m.body(batch[0]), batch[1])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("clip", [None, 0.05])  # 0.05: the norm is over it, every step clips
def test_compiled_step_matches_eager_adamw(clip):
    x, y = _data()
    torch.manual_seed(0)
    eager, fused = Net(), Net()
    fused.load_state_dict(eager.state_dict())
    kw = {"lr": 0.01, "weight_decay": 0.1, "betas": (0.8, 0.99)}
    opt_e = torch.optim.AdamW(eager.parameters(), fused=True, **kw)
    opt_f = torch.optim.AdamW(fused.parameters(), fused=True, **kw)
    step = CompiledStep(fused, _loss, opt_f, clip, "fp32")
    for s in range(0, 512, 64):
        batch = (x[s:s + 64], y[s:s + 64])
        loss = _loss(eager, batch)
        opt_e.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            clip_grad_norm(eager.parameters(), clip)
        opt_e.step()
        got = step(batch)
        assert got == pytest.approx(float(loss.detach()), rel=1e-5)
    assert not step.failed
    for (name, a), b in zip(eager.named_parameters(), fused.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert torch.equal(fused.unused, torch.ones(3)) and fused.unused not in opt_f.state
    st_e, st_f = opt_e.state[eager.body[0].weight], opt_f.state[fused.body[0].weight]
    assert float(st_f["step"]) == float(st_e["step"]) == 8
    torch.testing.assert_close(st_f["exp_avg_sq"], st_e["exp_avg_sq"], rtol=1e-5, atol=1e-9)
    before = fused.body[2].bias.detach().clone()
    opt_f.param_groups[0]["lr"] = 0.0  # the optimizer's group is read every step (scheduler)
    step((x[:64], y[:64]))
    assert torch.equal(fused.body[2].bias, before)


@pytest.mark.timeout(300)
def test_uncapturable_step_falls_back_to_eager(capsys):
    """A loss with a data-dependent Python branch cannot be one graph: the loop says so and
    trains eagerly, to the same weights as compile=False."""
    x, y = _data()

    def branchy(m, batch):
        loss = _loss(m, batch)
        return loss * 2 if loss.item() > 1e9 else loss

    def train(compile_: bool):
        gen = seed_everything(0)
        model = Net()

        def batches(epoch):
            perm = torch.randperm(len(x), generator=gen)
            return [(x[perm[s:s + 64]], y[perm[s:s + 64]]) for s in range(0, len(x), 64)]

        res = fit_loop(model, branchy, batches, lambda m: -float(_loss(m, (x, y))),
                       TrainConfig(epochs=2, lr=0.01, progress=False, compile=compile_),
                       generator=gen)
        return model, res

    compiled, r1 = train(True)
    assert "could not be compiled as one graph" in capsys.readouterr().err
    plain, r2 = train(False)
    assert r1.history[-1]["val"] > r1.history[0]["val"] - 1e-9
    for a, b in zip(compiled.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
