"""Attention pooling of a clip's frame vectors (issue 12): the pool itself, and a text -> video
retrieval run trained with ``video_pool: attention`` that saves and reloads its pool."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.timeout(120)

DATA = Path("/work/shared/data")


def _frames() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 16, generator=g)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    for i, n in enumerate((6, 3, 1, 4)):
        mask[i, :n] = True
    return x, mask


def test_pool_weights_sum_to_one_and_ignore_padding():
    from polymodal.nn.pooling import AttentionPool, masked_mean

    x, mask = _frames()
    pool = AttentionPool(16, hidden=8)
    # untrained: the last layer is zero, so the pool is the mean of the real frames
    assert torch.allclose(pool(x, mask), masked_mean(x, mask), atol=1e-6)
    torch.nn.init.normal_(pool.score[2].weight, std=2.0)  # as if trained: uneven weights
    w = pool.weights(x, mask)
    assert torch.allclose(w.sum(1), torch.ones(4), atol=1e-6)
    assert (w[~mask] == 0).all() and (w[mask] > 0).all()
    assert w[0].max() > 2 * w[0].min()  # not the mean any more
    out = pool(x, mask)
    assert not torch.allclose(out, masked_mean(x, mask), atol=1e-3)
    assert torch.allclose(out, (w[..., None] * x).sum(1), atol=1e-5)
    assert torch.allclose(out[2], x[2, 0], atol=1e-6)  # one real frame: that frame
    y = x.clone()
    y[~mask] = 1e6  # padded frames change value (huge, then NaN): the output does not
    assert torch.equal(pool(y, mask), out)
    y[~mask] = float("nan")
    assert torch.equal(pool(y, mask), out)
    out.sum().backward()  # the scoring MLP gets a gradient through the weights
    assert pool.score[0].weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    pytest.importorskip("av")
    if not (DATA / "mnist").is_dir() or not (DATA / "fsdd").is_dir():
        pytest.skip("real MNIST / FSDD data not found")
    from polymodal.data.datasets import build_dataset
    from polymodal.features.encode import encode_manifest

    d = tmp_path_factory.mktemp("apool")
    m = build_dataset("av-digits-video", DATA, d / "set", seed=2, progress=False, limit=24,
                      size=32, fps=2, min_digits=3, max_digits=5)
    encode_manifest(m, d / "feat", cache_dir=d / "cache", progress=False)
    return m, d / "feat", d / "cache"


def _cfg(encoded, **kw):
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.train.config import TrainConfig

    m, feat, cache = encoded
    base = dict(manifest=str(m), features=str(feat), cache_dir=str(cache), query="text",
                target="video", loss="infonce", video_pool="attention", dim=32, hidden=64,
                batch_size=16, train=TrainConfig(epochs=25, patience=25, keep="last", lr=3e-3,
                                                 progress=False))
    return RetrievalConfig(**{**base, **kw})


def test_attention_run_saves_and_reloads_its_pool(encoded, tmp_path):
    from polymodal.core.runfolder import RunFolder
    from polymodal.data.manifest import read_manifest
    from polymodal.features.cache.features import FeatureSet
    from polymodal.tasks.retrieval.data import load_pairs, with_frame_bags
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.tasks.retrieval.pooled import embed_side
    from polymodal.tasks.retrieval.predict import Retriever, eval_run

    out = tmp_path / "run"
    res = fit_retrieval(_cfg(encoded, frame_pairs="timing"), out, with_baselines=False,
                        progress=False)
    state = RunFolder(out).load_weights()
    pool_keys = [k for k in state if k.startswith("pools.target.")]
    assert pool_keys and not any(k.startswith("pools.query.") for k in state)
    assert float(state["pools.target.score.2.weight"].abs().sum()) > 0  # trained off the mean
    r = Retriever.load(out)
    assert r.config.video_pool == "attention" and "target" in r.run.model.pools
    # the reloaded pool + head re-embed every clip to the vectors the index was built from
    m, feat, _ = encoded
    feats = FeatureSet.load(feat)
    data = with_frame_bags(load_pairs(feats, read_manifest(m), "text", "video"), feats,
                           "attention")
    te = embed_side(r.run.model, data.target, "target")
    mean_te = r.run.model.embed_numpy(data.target.x, "target")
    assert not np.allclose(te, mean_te, atol=1e-3)  # the index is not the mean-pooled one
    words = ["zero", "three", "seven", "nine"]
    qv = r.embed(words, "text")
    for w, hits, q in zip(words, r.search(words, 5, "text"), qv):
        s = te @ q
        order = np.argsort(-s, kind="stable")[:5]
        assert [h.row_id for h in hits] == [data.ids[data.target.rows[j]] for j in order], w
        assert np.allclose([h.score for h in hits], s[order], atol=1e-4)
        assert all(h.start_s is not None for h in hits)
    # eval on the reloaded run (pooled the same way) gives the metrics the fit printed
    again = eval_run(r.run, progress=False)
    assert again["text->video"]["R@1"] == pytest.approx(res["metrics"]["text->video"]["R@1"])
    assert again["text->video"]["mAP"] == pytest.approx(res["metrics"]["text->video"]["mAP"],
                                                        abs=1e-6)
    again2 = Retriever.load(out).search(words, 5, "text")
    assert [[h.row_id for h in hs] for hs in again2] == [
        [h.row_id for h in hs] for hs in r.search(words, 5, "text")]
    assert json.loads((out / "metrics.json").read_text()) == res["metrics"]


def test_attention_pool_is_refused_in_one_line_before_work(encoded, tmp_path):
    from polymodal.core.errors import UsageError
    from polymodal.tasks.retrieval.fit import fit_retrieval

    with pytest.raises(UsageError, match="pick a contrastive --loss .*not auto"):
        fit_retrieval(_cfg(encoded, loss="auto"), tmp_path / "a", progress=False)
    with pytest.raises(UsageError, match="neither side is video"):
        fit_retrieval(_cfg(encoded, target="image"), tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
