"""Exact resume: a run stopped after its second epoch (by an exception or kill -9) and resumed
ends with the same weights, history and train_log.csv, bit for bit, as one never stopped; the
loop restores the thread setting; extra optimizers and RNG states travel in the checkpoint."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.core.errors import UsageError
from polymodal.data.datasets import sample_path
from polymodal.train import loop
from polymodal.train.config import TrainConfig
from polymodal.train.loop import fit_loop, seed_everything

REPO = Path(__file__).resolve().parents[2]


class Stop(Exception):
    """Stands in for a crash."""


def _stop_at_call(n: int, fn):
    """``fn`` that raises `Stop` on its ``n``-th call (1-based)."""
    calls = {"n": 0}

    def wrapped(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            raise Stop
        return fn(*a, **k)
    return wrapped


# -- fit_loop itself -------------------------------------------------------------------------

def _problem():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(320, 6, generator=g)
    return x, torch.sin(x @ torch.randn(6, 1, generator=g))


def _run(tmp: Path, cfg: TrainConfig, resume=False, stop_step=None, stop_val=None):
    """One 'process': seeds, builds the model, trains. The step draws from every RNG (dropout:
    torch; noise: NumPy; loss weight: Python random; shuffling: the generator) and trains a
    part of the model with its own optimizer (an extra optimizer, as a GAN discriminator)."""
    x, y = _problem()
    gen = seed_everything(0)
    model = torch.nn.ModuleDict({
        "main": torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.3),
                                    torch.nn.Linear(16, 1)),
        "side": torch.nn.Linear(6, 1)})
    side_opt = torch.optim.Adam(model["side"].parameters(), lr=1e-2)

    now = {}

    def batches(epoch):
        now["epoch"] = epoch
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 64):
            yield x[perm[s:s + 64]], y[perm[s:s + 64]]

    def step(m, batch):
        xb, yb = batch
        xb = xb + torch.from_numpy(np.random.standard_normal(xb.shape).astype(np.float32)) * 0.05
        side_opt.zero_grad()
        torch.nn.functional.mse_loss(m["side"](xb), yb).backward()
        side_opt.step()
        side_opt.zero_grad(set_to_none=True)  # the loop's optimizer skips it
        return (0.5 + random.random()) * torch.nn.functional.mse_loss(m["main"](xb), yb)

    scores = [1.0, 3.0, 2.0, 4.0, 3.5, 3.9]  # best epoch 4, not the last

    def validate(m):
        return scores[now["epoch"]] + 1e-3 * float(m["main"](x).mean())

    if stop_step:
        step = _stop_at_call(stop_step, step)
    if stop_val:
        validate = _stop_at_call(stop_val, validate)
    res = fit_loop(model, step, batches, validate, cfg, run_dir=tmp, resume=resume,
                   generator=gen, extra_optimizers={"side": side_opt})
    return model, side_opt, res


def _equal_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("keep", ["best", "last"])
@pytest.mark.parametrize("where", ["mid-epoch", "in-validate"])
def test_stopped_and_resumed_equals_straight(tmp_path, keep, where):
    cfg = TrainConfig(epochs=6, lr=0.02, patience=6, keep=keep, progress=False)
    m1, o1, r1 = _run(tmp_path / "straight", cfg)
    # 5 steps an epoch: stop in the middle of epoch 3, or in its validation
    stop = {"stop_step": 13} if where == "mid-epoch" else {"stop_val": 3}
    with pytest.raises(Stop):
        _run(tmp_path / "cut", cfg, **stop)
    ck = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert ck["state"]["epoch"] == 2
    m2, o2, r2 = _run(tmp_path / "cut", cfg, resume=True)
    assert _equal_weights(m1, m2)
    assert all(torch.equal(a, b) for a, b in zip(o1.state_dict()["state"][0].values(),
                                                  o2.state_dict()["state"][0].values()))
    assert r2.history == r1.history and len(r1.history) == 6
    assert (r2.best_epoch, r2.kept_epoch) == (r1.best_epoch, r1.kept_epoch)
    assert r1.kept_epoch == (4 if keep == "best" else 6)
    log1 = (tmp_path / "straight" / "train_log.csv").read_bytes()
    assert (tmp_path / "cut" / "train_log.csv").read_bytes() == log1
    lines = log1.decode().splitlines()
    assert lines[0] == "epoch,step,loss,lr" and len(lines) == 1 + 6 * 5
    assert [int(r.split(",")[1]) for r in lines[1:]] == list(range(1, 31))


def test_resume_without_rng_restore_would_differ(tmp_path, monkeypatch):
    """The test above can fail: without restoring the RNG states the resumed run differs."""
    cfg = TrainConfig(epochs=4, lr=0.02, patience=4, progress=False)
    m1, _, _ = _run(tmp_path / "straight", cfg)
    with pytest.raises(Stop):
        _run(tmp_path / "cut", cfg, stop_val=3)
    monkeypatch.setattr(loop, "set_rng_state", lambda state, generator=None: None)
    m2, _, _ = _run(tmp_path / "cut", cfg, resume=True)
    assert not _equal_weights(m1, m2)


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    cfg = TrainConfig(epochs=6, lr=0.02, patience=6, progress=False)
    model, _, res = _run(tmp_path, cfg)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(ck) >= {"model", "best", "opt", "sched", "extra", "state", "rng"}
    assert set(ck["rng"]) == {"python", "numpy", "torch", "generator"}
    assert ck["extra"]["side"]["state"]  # the side optimizer's Adam moments
    # best weights (epoch 4) travel with the checkpoint (epoch 6): no separate best file
    assert ck["state"]["best_epoch"] == 4 and not (tmp_path / "best.pt").exists()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ck["best"].items())
    assert not all(torch.equal(v, ck["model"][k]) for k, v in ck["best"].items())


def test_early_stopped_run_does_not_train_on_when_resumed(tmp_path):
    x, y = _problem()
    cfg = TrainConfig(epochs=8, patience=2, progress=False)
    scores = [5.0, 1.0, 1.0, 9.0]

    def train(resume):
        vals = iter(scores)
        return fit_loop(torch.nn.Linear(6, 1),
                        lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
                        lambda e: [(x, y)], lambda m: next(vals), cfg, run_dir=tmp_path,
                        resume=resume)

    first = train(False)
    again = train(True)
    assert first.epochs_run == again.epochs_run == 3 and again.history == first.history


def test_threads_are_restored_also_on_error(tmp_path):
    before = torch.get_num_threads()
    seen = []

    def validate(m):
        seen.append(torch.get_num_threads())
        raise Stop

    x, y = _problem()
    with pytest.raises(Stop):
        fit_loop(torch.nn.Linear(6, 1), lambda m, b: m(b).pow(2).mean(), lambda e: [x],
                 validate, TrainConfig(epochs=2, progress=False), threads=before + 1)
    assert seen == [before + 1] and torch.get_num_threads() == before


def test_unknown_training_setting_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown training setting 'epoch'"):
        loop.train_settings(None, {}, epoch=3)


# -- deep CCA and the autoencoder, through fit_loop ------------------------------------------

@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    """Two views of the bundled OpenClipart drawings: left and right halves, 16x16 grey."""
    from PIL import Image

    manifest = sample_path("openclipart")
    recs = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    imgs = np.stack([np.asarray(Image.open(manifest.parent / r["image"]).convert("L")
                                .resize((16, 16)), np.float32) / 255 for r in recs])
    return imgs[:, :, :8].reshape(len(imgs), -1), imgs[:, :, 8:].reshape(len(imgs), -1)


def _dcca(tmp: Path, X, Y, resume=False):
    from polymodal.objectives.cca import DeepCCA

    torch.manual_seed(0)
    model = DeepCCA(X.shape[1], Y.shape[1], out_dim=4, hidden=32)
    res = model.fit(X[:300], Y[:300], batch_size=64, val=(X[300:], Y[300:]), run_dir=tmp,
                    resume=resume, epochs=5, patience=5)
    return model, res


def _autoencoder(tmp: Path, X, Y, resume=False):
    from polymodal.nn.autoencoder import MultimodalAutoencoder

    torch.manual_seed(0)
    model = MultimodalAutoencoder({"left": X.shape[1], "right": Y.shape[1]}, latent_dim=8,
                                  hidden=32, dropout=0.2)
    res = model.fit({"left": X[:300], "right": Y[:300]}, batch_size=64,
                    val={"left": X[300:], "right": Y[300:]}, run_dir=tmp, resume=resume,
                    epochs=5, patience=5, seed=3)
    return model, res


@pytest.mark.parametrize("name, fit, loss_module, loss_name", [
    ("dcca", _dcca, "polymodal.objectives.cca", "dcca_loss"),
    ("autoencoder", _autoencoder, "polymodal.nn.autoencoder", "autoencoder_loss")])
def test_aligners_resume_bit_equal(tmp_path, pairs, monkeypatch, name, fit, loss_module,
                                   loss_name):
    X, Y = pairs
    straight, _ = fit(tmp_path / "straight", X, Y)
    assert len(straight.history_) == 5 and straight.train_result_.best_epoch >= 1
    assert straight.history_[-1] < straight.history_[0]  # it trains
    # 5 training batches (+ 2 validation chunks for the autoencoder) a loss call each:
    # stop inside the third epoch
    mod = sys.modules[loss_module]
    per_epoch = 5 if name == "dcca" else 7
    monkeypatch.setattr(mod, loss_name, _stop_at_call(2 * per_epoch + 3, getattr(mod, loss_name)))
    with pytest.raises(Stop):
        fit(tmp_path / "cut", X, Y)
    monkeypatch.undo()
    assert torch.load(tmp_path / "cut" / "checkpoint.pt",
                      weights_only=True)["state"]["epoch"] == 2
    resumed, _ = fit(tmp_path / "cut", X, Y, resume=True)
    assert _equal_weights(straight, resumed)
    assert resumed.history_ == straight.history_
    assert ((tmp_path / "cut" / "train_log.csv").read_bytes() ==
            (tmp_path / "straight" / "train_log.csv").read_bytes())


# -- `polymodal fit retrieval`, killed with SIGKILL after epoch 2 and resumed ---------------

# `python -m polymodal` whose process SIGKILLs itself right after the epoch-2 checkpoint is on
# disk. Epochs on the sample take milliseconds, so a kill from outside, polling the run folder,
# could not reliably land between epoch 2 and epoch 3; this is the same signal at that moment.
KILL_AFTER_EPOCH_2 = """
import os, runpy, signal, sys
import polymodal.train.loop as loop
save = loop.save_checkpoint
def save_then_die(path, payload):
    save(path, payload)
    if payload["state"]["epoch"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
loop.save_checkpoint = save_then_die
sys.argv = ["polymodal", *sys.argv[1:]]
runpy.run_module("polymodal", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="session")
def sample_features(tmp_path_factory) -> Path:
    """The bundled OpenClipart sample, encoded once by `polymodal encode` (cache: the session's
    POLYMODAL_CACHE from tests/conftest.py)."""
    out = tmp_path_factory.mktemp("openclipart") / "feats"
    res = subprocess.run([sys.executable, "-m", "polymodal", "encode",
                          str(sample_path("openclipart")), "--out", str(out), "-q"],
                         env=dict(os.environ), cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def _fit_retrieval(features: Path, out: Path, *extra: str, kill: bool = False):
    args = ["fit", "retrieval", "--manifest", str(sample_path("openclipart")), "--features",
            str(features), "--index", "exact", "--epochs", "5", "--patience", "10", "-q",
            "--no-report", "--out", str(out), *extra]
    cmd = [sys.executable, "-c", KILL_AFTER_EPOCH_2] if kill else [sys.executable, "-m",
                                                                    "polymodal"]
    # one torch thread: tiny heads run fastest so, also on a busy machine (same in all 3 runs)
    return subprocess.run(cmd + args, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


# heads / an aligner's own fit (the autoencoder's: slow; its in-process resume is
# test_aligners_resume_bit_equal above)
@pytest.mark.parametrize("loss", ["infonce", pytest.param("autoencoder", marks=pytest.mark.slow)])
def test_fit_retrieval_killed_after_epoch_2_and_resumed_equals_uninterrupted(
        tmp_path, sample_features, loss):
    straight = tmp_path / "straight"
    res = _fit_retrieval(sample_features, straight, "--loss", loss)
    assert res.returncode == 0, res.stderr[-2000:]

    cut = tmp_path / "cut"
    res = _fit_retrieval(sample_features, cut, "--loss", loss, kill=True)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    ck = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert ck["state"]["epoch"] == 2 and not (cut / "metrics.json").exists()
    assert {int(r.split(",")[0]) for r in (cut / "train_log.csv").read_text().split()[1:]} \
        == {1, 2}

    res = _fit_retrieval(sample_features, cut, "--loss", loss, "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["state"]["epoch"] == 5
    for f in ("model.safetensors", "metrics.json", "train_log.csv"):
        assert (cut / f).read_bytes() == (straight / f).read_bytes(), f


@pytest.mark.slow  # torch.compile takes ~20 s on 2 cores
@pytest.mark.timeout(300)
def test_compiled_bf16_run_resumed_equals_straight(tmp_path):
    """TrainConfig(compile=True, precision="bf16"): the torch.compile'd step under bf16
    autocast (fused AdamW, the default) resumes bit-equal too (killed in epoch 3's validation)."""
    x, y = _problem()
    cfg = TrainConfig(epochs=4, lr=0.02, patience=4, progress=False, compile=True,
                      precision="bf16")

    def run(out: Path, resume=False, stop_val=None):
        gen = seed_everything(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.3),
                                    torch.nn.Linear(16, 1))

        def batches(epoch):
            perm = torch.randperm(len(x), generator=gen)
            for s in range(0, len(x), 64):
                yield x[perm[s:s + 64]], y[perm[s:s + 64]]

        def step(m, batch):
            return torch.nn.functional.mse_loss(m(batch[0]).float(), batch[1])

        def validate(m):
            return -float(torch.nn.functional.mse_loss(m(x), y))

        if stop_val:
            validate = _stop_at_call(stop_val, validate)
        res = fit_loop(model, step, batches, validate, cfg, run_dir=out, resume=resume,
                       generator=gen)
        return model, res

    m1, r1 = run(tmp_path / "straight")
    with pytest.raises(Stop):
        run(tmp_path / "cut", stop_val=3)
    m2, r2 = run(tmp_path / "cut", resume=True)
    assert _equal_weights(m1, m2) and r2.history == r1.history and len(r1.history) == 4
    assert r1.history[-1]["val"] > r1.history[0]["val"]  # it trained
