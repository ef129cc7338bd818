"""Fixtures for the serve tests: a small real retrieval run (see serve_testdata.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from serve_testdata import ensure_small_run


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """Folder of a small real text->image retrieval run on 64 OpenClipart drawings."""
    return ensure_small_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def small_classify_run(tmp_path_factory) -> Path:
    """Folder of a small real audio+image digit classification run (60 av-digits rows)."""
    from serve_testdata import ensure_small_classify_run

    return ensure_small_classify_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def small_caption_run(small_run, tmp_path_factory) -> Path:
    """A tiny real caption run (GRU, 2 epochs) on the small retrieval run's 64 drawings,
    reusing its encoded features; skips when the caption task is not installed."""
    import yaml

    caption = pytest.importorskip("polymodal.tasks.caption")
    from polymodal.train.config import TrainConfig

    doc = yaml.safe_load((small_run / "config.yaml").read_text())
    cfg = caption.CaptionConfig(
        manifest=doc["config"]["manifest"], features=str(small_run / "features"),
        embed_dim=32, hidden=64, min_count=1, max_len=8, beam=2, batch_size=32, threads=1,
        train=TrainConfig(epochs=2, patience=2, progress=False))
    out = tmp_path_factory.mktemp("caption") / "run"
    caption.fit_caption(cfg, out, progress=False)
    return out
