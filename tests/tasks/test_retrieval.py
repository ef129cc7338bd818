"""Retrieval end to end on the bundled OpenClipart sample (real drawings and captions, shipped in
the package): fit, metrics vs chance, save/load, search, eval, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from polymodal.cli.main import main
from polymodal.data.datasets import sample_path
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval
from polymodal.tasks.retrieval.predict import eval_run, load_run, search_run
from polymodal.train.config import TrainConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    # a named loss: the default (model selection, ~6x the time) runs in tests/tasks/test_select.py
    cfg = RetrievalConfig(manifest=str(sample_path("openclipart")), relevance="caption_group",
                          loss="infonce", batch_size=128,
                          train=TrainConfig(epochs=12, patience=4, progress=False))
    result = fit_retrieval(cfg, out, progress=False)
    return out, result


def test_fit_beats_chance_and_writes_run(run):
    out, res = run
    for f in ("model.safetensors", "config.yaml", "metrics.json", "baselines.json", "index"):
        assert (out / f).exists(), f
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == {"text->image", "image->text"}
    assert set(m["text->image"]) >= {"R@1", "R@5", "R@10", "MedR", "mAP"}
    chance = res["baselines"]["chance"]
    for d in m:
        assert m[d]["R@10"] > 3 * chance[d]["R@10"], (d, m[d], chance[d])
        assert m[d]["mAP"] > 2 * chance[d]["mAP"]


def test_load_search_and_eval_agree(run):
    out, res = run
    r = load_run(out)
    hits = search_run(r, text="a cartoon cat", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.path and h.path.endswith(".png") for h in hits)
    # an indexed drawing used as an image query finds itself first
    rec = r.manifest.records[0]
    top = search_run(r, image=str(rec.image), k=1)[0]
    assert top.row_id == rec.id and top.score > 0.99
    again = eval_run(r, progress=False)
    for d in again:
        np.testing.assert_allclose(again[d]["R@10"], res["metrics"][d]["R@10"], atol=1e-6)


def test_search_errors(run, tmp_path, capsys):
    out, _ = run
    r = load_run(out)
    with pytest.raises(UsageError, match="empty"):
        search_run(r, text="  ", k=3)
    with pytest.raises(UsageError, match="k=0"):
        search_run(r, text="cat", k=0)
    with pytest.raises(UsageError, match="index size"):
        search_run(r, text="cat", k=10**6)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(PolymodalError, match="query image .*bad.png"):
        search_run(r, image=str(bad), k=3)
    with pytest.raises(PolymodalError, match="not found"):
        load_run(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("task: retrieval\nconfig: [1, 2\n")
    with pytest.raises(PolymodalError, match="corrupt"):
        load_run(broken)
    # the CLI turns each into one line and exit code 2
    for args in (["search", str(out), "--text", ""], ["search", str(out), "--text", "x", "-k", "0"],
                 ["search", str(tmp_path / "nope"), "--text", "x"],
                 ["search", str(out), "--image", str(bad)]):
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err


def test_cca_and_unknown_loss(tmp_path):
    cfg = RetrievalConfig(manifest=str(sample_path("openclipart")), loss="cca",
                          relevance="caption_group")
    res = fit_retrieval(cfg, tmp_path / "cca", with_baselines=False, progress=False)
    assert res["metrics"]["text->image"]["R@10"] > 0.2
    with pytest.raises(UsageError, match="unknown loss"):
        fit_retrieval(cfg.model_copy(update={"loss": "nope"}), tmp_path / "x", progress=False)
