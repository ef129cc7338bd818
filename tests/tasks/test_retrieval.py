"""Retrieval end to end on the bundled OpenClipart sample (real drawings and captions, shipped in
the package): fit, metrics vs chance, save/load, search, eval, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

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


def test_pair_batches_gather_the_pairs_and_drop_distinct_ids():
    """Training batches hold the rows of their pairs (as plain indexing would), every pair
    once per epoch; pair ids reach the loss only in a batch where some id repeats."""
    from polymodal.tasks.retrieval.fit import pair_batches

    g = torch.Generator().manual_seed(0)
    qx, tx = torch.randn(12, 3, generator=g), torch.randn(9, 4, 2, generator=g)
    qi, tj = np.arange(12)[::-1].copy(), np.arange(12) % 9
    groups = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 10])  # pairs 9 and 10 share an id
    tm = torch.rand(9, 4, generator=g) > 0.5
    seen, shared = [], 0
    for q, t, ids, qm, m in pair_batches(qx, tx, qi, tj, torch.from_numpy(groups), 6,
                                         torch.Generator().manual_seed(1), None, tm):
        k = [int(np.flatnonzero((qx == row).all(1))[0]) for row in q]  # query rows
        pairs = [int(np.flatnonzero(qi == r)[0]) for r in k]
        seen += pairs
        assert torch.equal(t, tx[tj[pairs]]) and torch.equal(m, tm[tj[pairs]]) and qm is None
        if {9, 10} <= set(pairs):
            assert torch.equal(ids, torch.from_numpy(groups[pairs]))
            shared += 1
        else:
            assert ids is None
    assert sorted(seen) == list(range(12)) and shared == 1
