"""Optional TensorBoard logging in the training loop: the event file holds the same per-step
losses as the CSV log; without the package the loop still trains and says why it skipped."""
from __future__ import annotations

import csv
import sys

import pytest
import torch

from polymodal.train.config import TrainConfig

from polymodal.train.loop import fit_loop, seed_everything


def _setup():
    g = seed_everything(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.randn(4, 1, generator=g)

    def batches(epoch):
        for s in range(0, len(x), 64):
            yield x[s:s + 64], y[s:s + 64]

    def step(model, batch):
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    return torch.nn.Linear(4, 1), step, batches, lambda m: -step(m, (x, y)).item()


def test_tensorboard_events_match_the_csv_log(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, step, batches, val = _setup()
    res = fit_loop(model, step, batches, val,
                   TrainConfig(epochs=3, lr=0.05, progress=False, tensorboard=True),
                   run_dir=tmp_path)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert [e.step for e in loss] == [int(r["step"]) for r in rows] == list(range(1, 13))
    assert [e.value for e in loss] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-5)
    assert [e.value for e in acc.Scalars("val/score")] == pytest.approx(
        [h["val"] for h in res.history], rel=1e-5)


def test_without_tensorboard_the_loop_trains_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    model, step, batches, val = _setup()
    res = fit_loop(model, step, batches, val,
                   TrainConfig(epochs=2, lr=0.05, progress=False, tensorboard=True),
                   run_dir=tmp_path)
    assert res.epochs_run == 2 and (tmp_path / "train_log.csv").is_file()
    assert not (tmp_path / "tensorboard").exists()
    assert "tensorboard" in capsys.readouterr().err.lower()
