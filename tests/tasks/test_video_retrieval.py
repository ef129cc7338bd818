"""Text -> video moment search and video classification on a tiny real av-digits-video set
(MNIST digits + FSDD recordings, built in tmp_path)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytestmark = pytest.mark.timeout(180)

DATA = Path("/work/shared/data")
if not (DATA / "mnist").is_dir() or not (DATA / "fsdd").is_dir():
    pytest.skip("real MNIST / FSDD data not found", allow_module_level=True)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> tuple[Path, Path, Path]:
    from polymodal.data.datasets import build_dataset
    from polymodal.features.encode import encode_manifest

    d = tmp_path_factory.mktemp("vret")
    m = build_dataset("av-digits-video", DATA, d / "set", seed=1, progress=False, limit=48,
                      size=32, fps=5, min_digits=3, max_digits=4)
    cache = d / "cache"
    encode_manifest(m, d / "feat", cache_dir=cache, progress=False)
    return m, d / "feat", cache


@pytest.fixture(scope="module")
def run(encoded, tmp_path_factory) -> Path:
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.train.config import TrainConfig

    m, feat, cache = encoded
    out = tmp_path_factory.mktemp("vrun") / "run"
    cfg = RetrievalConfig(manifest=str(m), features=str(feat), cache_dir=str(cache),
                          query="text", target="video", loss="infonce", frame_pairs="timing",
                          dim=64, hidden=128, batch_size=32,
                          train=TrainConfig(epochs=40, patience=40, keep="last", lr=3e-3,
                                            progress=False))
    fit_retrieval(cfg, out, with_baselines=False, progress=False)
    return out


def test_search_returns_the_moment(run, encoded):
    from polymodal.metrics.moments import in_spans
    from polymodal.tasks.retrieval.moments import evaluate_moments
    from polymodal.tasks.retrieval.predict import Retriever

    r = Retriever.load(run)
    hits = r.search("seven", k=5)
    assert all(h.start_s is not None and h.path.endswith(".webm") for h in hits)
    top = hits[0]
    timing = r.by_id[top.row_id].extra["timing"]
    assert "seven" in top.text
    assert in_spans(top.start_s, [(e["image_start_s"], e["image_end_s"]) for e in timing
                                  if e["word"] == "seven"])
    res = evaluate_moments(r, "timing", "test")
    assert res["queries"] > 10
    assert res["in_clip"] >= 0.6 and res["global"] >= 0.6, res


def test_cli_search_json_has_start_s(run, capsys):
    from polymodal.cli import main

    assert main(["search", str(run), "--text", "three", "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and all(isinstance(h["start_s"], float) for h in hits)


def test_frame_pairs_errors_are_one_line(encoded, tmp_path):
    from polymodal.core.errors import UsageError
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval

    m, feat, cache = encoded
    cfg = RetrievalConfig(manifest=str(m), features=str(feat), cache_dir=str(cache),
                          query="text", target="video", frame_pairs="when")
    with pytest.raises(UsageError, match="--frame-pairs when: .* has no such column"):
        fit_retrieval(cfg, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()  # refused before any work


def test_classify_with_a_video_column(encoded, tmp_path):
    from polymodal.tasks.classify.config import ClassifierConfig
    from polymodal.tasks.classify.fit import fit_classifier
    from polymodal.train.config import TrainConfig

    m, feat, cache = encoded
    cfg = ClassifierConfig(manifest=str(m), features=str(feat), cache_dir=str(cache),
                           modalities=["text", "video"], fusion="early",
                           train=TrainConfig(epochs=5, progress=False))
    res = fit_classifier(cfg, tmp_path / "c", progress=False)
    assert 0.0 <= res["metrics"]["accuracy"] <= 1.0
    doc = (tmp_path / "c" / "config.yaml").read_text()
    assert "frames:efficientnet-lite0" in doc
    assert np.isfinite(res["metrics"]["macro_f1"])
