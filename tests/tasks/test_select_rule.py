"""The selection rule of `fit retrieval --loss auto` on real data: the bundled av-digits sample
(300 real MNIST images + FSDD recordings), encoded here with the default encoders. Its val split
has 47 pairs, so closed-form settings are cross-validated; the one-SE rule keeps a closed-form
candidate unless a trained one is better on val by more than one paired standard error."""
from __future__ import annotations

import numpy as np
import pytest

from polymodal.data.datasets import sample_path
from polymodal.data.manifest import read_manifest
from polymodal.features.cache.features import FeatureSet
from polymodal.features.encode import encode_manifest
from polymodal.tasks.retrieval import select
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.data import load_pairs
from polymodal.tasks.retrieval.fit import baselines

pytestmark = pytest.mark.timeout(120)
MANIFEST = sample_path("av-digits")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("select-rule")
    m = read_manifest(MANIFEST)
    encode_manifest(m, d / "feat", progress=False, modalities=["audio", "image"])
    return load_pairs(FeatureSet.load(d / "feat"), m, "audio", "image", "label")


def cfg() -> RetrievalConfig:
    return RetrievalConfig(manifest=str(MANIFEST), query="audio", target="image",
                           relevance="label", train={"seed": 0, "progress": False})


@pytest.mark.slow  # ~25 s of CV fits (1,280-d image features) + the encoding
def test_small_val_cross_validates_closed_form_settings_and_keeps_one_se_choice(data, tmp_path):
    n_val = len(data.pairs("val")[0])
    assert 0 < n_val < select.CV_BELOW
    c, model, info, rec = select.select_model(cfg(), data, tmp_path, train=None,
                                              candidates=select.CLOSED)
    assert rec["closed_form_settings_by"].startswith(f"{select.CV_FOLDS}-fold CV")
    assert rec["chosen"] in select.CLOSED and c.loss in ("mse", "cca")
    by = {r["name"]: r for r in rec["candidates"]}
    grid = select.settings("ridge", cfg(), data)  # recomputed for ridge (CCA: slower)
    cv, rows = select.cv_scores("ridge", grid, data, 0)
    best = int(np.argmax([s.mean() for s in cv]))
    first = next(i for i, s in enumerate(cv)
                 if s.mean() >= cv[best].mean() - select.paired_se(cv[best], s, rows))
    assert by["ridge"]["settings"] == grid[first]
    assert by["ridge"]["cv_score"] == pytest.approx(cv[first].mean(), abs=1e-4)
    # CV scores every train+val query in both directions once, grouped by manifest row
    assert len(cv[first]) == 2 * (len(data.pairs("train")[0]) + n_val) == len(rows)
    for name in select.CLOSED:  # every setting scored; the kept one within one SE of the best
        tried, se = by[name]["settings_tried"]["tried"], by[name]["settings_tried"]["one_se"]
        assert [{k: t[k] for k in by[name]["settings"]} for t in tried] == \
            select.settings(name, cfg(), data)
        kept = next(t["score"] for t in tried if all(t[k] == v for k, v in
                                                     by[name]["settings"].items()))
        assert kept >= max(t["score"] for t in tried) - se - 1e-4
    # the closed-form winner is the better family on CV, and it is the returned model
    cv_of = {n: by[n]["cv_score"] for n in select.CLOSED}
    assert rec["chosen"] == max(select.CLOSED, key=lambda n: (cv_of[n], n == "ridge"))
    val, _ = select.val_score(model, data)
    assert val.mean() == pytest.approx(by[rec["chosen"]]["val_score"], abs=1e-4)


def test_trained_candidate_within_one_se_loses_to_closed_form(data):
    """Per-query val scores of two real fitted models give a real spread of differences; a
    'trained' candidate planted at closed-form + that spread, shifted to a mean gain of half an
    SE, must lose; shifted to two SE, it must win."""
    ridge = select.val_score(select.ridge_model(data, 1.0), data)[0]
    cca = select.val_score(select.cca_model(data, 32, 1e-3), data)[0]
    spread = (cca - ridge) - (cca - ridge).mean()
    rows = select.val_clusters(data)
    assert len(rows) == len(ridge) and len(np.unique(rows)) < len(rows)  # a row: 2 queries
    se = select.paired_se(ridge + spread, ridge, rows)
    assert se > select.paired_se(ridge + spread, ridge) > 0  # both directions move together
    for gain, want in ((0.5 * se, "ridge"), (2 * se, "infonce")):
        trained = ridge + spread + gain
        found = {"ridge": (ridge, None, None, {}, ridge),
                 "infonce": (trained, None, None, {}, None)}
        name, decision = select.decide(found, rows)
        assert name == want, decision
        assert decision["one_se"] == pytest.approx(se, abs=1e-4)
        assert decision["val_difference"] == pytest.approx(gain, abs=1e-4)


def test_baseline_settings_reproduce_the_baselines(data):
    """The ridge (alpha 1) and CCA (32 components, reg 1e-3) candidates are the baselines:
    the same test R@1 as baselines.json would report."""
    from polymodal.metrics.scores import retrieval_metrics

    base = baselines(data, ("audio", "image"))
    q, t = data.side_split(data.query, "test"), data.side_split(data.target, "test")
    for name, model in (("ridge", select.ridge_model(data, 1.0)),
                        ("cca", select.cca_model(data, 32, 1e-3))):
        sim = model.embed_numpy(q.x, "query") @ model.embed_numpy(t.x, "target").T
        got = retrieval_metrics(sim, data.relevance(q, t))
        for k in ("R@1", "mAP"):
            assert got[k] == pytest.approx(base[name]["audio->image"][k], abs=1e-6), (name, k)
    assert select.settings("ridge", cfg(), data)[0] == {"alpha": 1.0}
    assert select.settings("cca", cfg(), data)[0] == {"components": 32, "reg": 1e-3}
