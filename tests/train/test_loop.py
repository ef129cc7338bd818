"""The training loop: it learns, stops early, keeps the best epoch, resumes from a checkpoint."""
from __future__ import annotations

import csv

import pytest
import torch

from polymodal.core.errors import PolymodalError
from polymodal.train.config import TrainConfig
from polymodal.train.loop import fit_loop, seed_everything


def _problem(seed=0):
    g = seed_everything(seed)
    x = torch.randn(512, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    y = x @ w
    return x, y


def _batches(x, y, seed):
    def batches(epoch):
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), 64):
            idx = perm[s:s + 64]
            yield x[idx], y[idx]
    return batches


def _step(model, batch):
    xb, yb = batch
    return torch.nn.functional.mse_loss(model(xb), yb)


def _val(x, y):
    return lambda m: -torch.nn.functional.mse_loss(m(x), y).item()


def test_loop_learns_and_logs(tmp_path):
    x, y = _problem()
    model = torch.nn.Linear(8, 1)
    before = _val(x, y)(model)
    res = fit_loop(model, _step, _batches(x, y, 0), _val(x, y),
                   TrainConfig(epochs=20, lr=0.05, progress=False), run_dir=tmp_path)
    assert res.best_score > before / 100  # MSE fell by > 100x
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert len(rows) == 20 * 8 and float(rows[-1]["loss"]) < float(rows[0]["loss"])


def test_early_stopping_keeps_best_weights():
    x, y = _problem()
    model = torch.nn.Linear(8, 1)
    scores = iter([1.0, 3.0, 2.0, 2.0, 2.0, 9.0])
    snapshots = []

    def validate(m):
        snapshots.append(m.weight.detach().clone())
        return next(scores)

    res = fit_loop(model, _step, _batches(x, y, 0), validate,
                   TrainConfig(epochs=6, patience=3, progress=False))
    assert res.epochs_run == 5 and res.best_epoch == 2  # stopped before the 9.0 epoch
    assert torch.equal(model.weight, snapshots[1])


def test_resume_continues_from_checkpoint(tmp_path):
    x, y = _problem()
    cfg = TrainConfig(epochs=3, lr=0.05, progress=False)
    m1 = torch.nn.Linear(8, 1)
    r1 = fit_loop(m1, _step, _batches(x, y, 0), _val(x, y), cfg, run_dir=tmp_path)
    assert (tmp_path / "checkpoint.pt").is_file()
    m2 = torch.nn.Linear(8, 1)  # fresh weights: resume must load them from the checkpoint
    r2 = fit_loop(m2, _step, _batches(x, y, 0), _val(x, y), cfg.model_copy(update={"epochs": 6}),
                  run_dir=tmp_path, resume=True)
    assert r2.epochs_run == 6 and len(r2.history) == 6
    assert r2.history[:3] == r1.history
    assert r2.best_score >= r1.best_score


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    x, y = _problem()
    with pytest.raises(PolymodalError, match="cannot resume"):
        fit_loop(torch.nn.Linear(8, 1), _step, _batches(x, y, 0), _val(x, y),
                 TrainConfig(epochs=2, progress=False), run_dir=tmp_path, resume=True)


def test_divergence_is_reported():
    x, y = _problem()
    with pytest.raises(PolymodalError, match="diverged"):
        fit_loop(torch.nn.Linear(8, 1), lambda m, b: torch.tensor(float("nan"), requires_grad=True),
                 _batches(x, y, 0), _val(x, y), TrainConfig(epochs=1, progress=False))


def test_betas_reach_the_optimizer():
    """``betas`` changes the Adam update: the default (None = (0.9, 0.999)) and an explicit
    (0.9, 0.999) train identically; (0.5, 0.999) gives other weights."""
    x, y = _problem()

    def train(betas):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 1)
        fit_loop(model, _step, _batches(x, y, 0), _val(x, y),
                 TrainConfig(epochs=2, lr=0.05, progress=False, betas=betas))
        return model.weight.detach()

    default = train(None)
    assert torch.equal(default, train((0.9, 0.999)))
    assert not torch.allclose(default, train((0.5, 0.999)))
    with pytest.raises(Exception):
        TrainConfig(betas=(0.5,))


def test_clip_grad_norm_equals_torch_above_and_below_the_limit():
    """The loop's clipping skips torch's multiply by exactly 1.0 under the limit: the
    gradients and the returned norm stay bit-equal to torch.nn.utils.clip_grad_norm_."""
    from polymodal.train.loop import clip_grad_norm

    for scale, max_norm in ((10.0, 1.0), (0.01, 1.0), (1.0, None)):
        g = torch.Generator().manual_seed(3)
        grads = [torch.randn(s, generator=g) * scale for s in ((7, 5), (5,), ())]
        if max_norm is None:  # right at the limit: torch's coefficient is just under 1
            max_norm = float(torch.nn.utils.get_total_norm(grads))
        ours, ref = ([torch.nn.Parameter(torch.zeros_like(x)) for x in grads] for _ in range(2))
        for a, b, x in zip(ours, ref, grads):
            a.grad, b.grad = x.clone(), x.clone()
        n_ours = clip_grad_norm(ours, max_norm)
        n_ref = torch.nn.utils.clip_grad_norm_(ref, max_norm)
        assert torch.equal(n_ours, n_ref)
        for a, b in zip(ours, ref):
            assert torch.equal(a.grad, b.grad)
        clipped = any(not torch.equal(a.grad, x) for a, x in zip(ours, grads))
        assert clipped == (scale != 0.01)
