"""The selection rule of `fit retrieval --loss auto` on real data: the bundled av-digits sample
(300 real MNIST images + FSDD recordings), encoded here with the default encoders. Its val split
has 47 pairs, so closed-form settings are cross-validated; the one-SE rule keeps a closed-form
candidate unless a trained one is better on val by more than one paired standard error."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.data.datasets import sample_path
from polymodal.data.manifest import read_manifest
from polymodal.features.cache.features import FeatureSet
from polymodal.features.encode import encode_manifest
from polymodal.tasks.retrieval import closed_form, scoring, select
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
                                              candidates=closed_form.CLOSED)
    assert rec["closed_form_settings_by"].startswith(f"{closed_form.CV_FOLDS}-fold CV")
    assert rec["chosen"] in closed_form.CLOSED and c.loss in ("mse", "cca", "auto")
    by = {r["name"]: r for r in rec["candidates"]}
    grid = closed_form.settings("ridge", cfg(), data)  # recomputed for ridge (CCA: slower)
    cv, rows = closed_form.cv_scores("ridge", grid, data, 0)
    best = int(np.argmax([s.mean() for s in cv]))
    first = next(i for i, s in enumerate(cv)
                 if s.mean() >= cv[best].mean() - scoring.paired_se(cv[best], s, rows))
    assert by["ridge"]["settings"] == grid[first]
    assert by["ridge"]["cv_score"] == pytest.approx(cv[first].mean(), abs=1e-4)
    # CV scores every train+val query in both directions once, grouped by manifest row
    assert len(cv[first]) == 2 * (len(data.pairs("train")[0]) + n_val) == len(rows)
    keep = {n: by[n]["settings"] for n in closed_form.PURE}
    for name in closed_form.CLOSED:  # every setting scored; the kept one within one SE of the best
        tried, se = by[name]["settings_tried"]["tried"], by[name]["settings_tried"]["one_se"]
        assert [{k: t[k] for k in by[name]["settings"]} for t in tried] == \
            closed_form.settings(name, cfg(), data, keep)
        kept = next(t["score"] for t in tried if all(t[k] == v for k, v in
                                                     by[name]["settings"].items()))
        assert kept >= max(t["score"] for t in tried) - se - 1e-4
    # the better pure family on CV, or the blend of its kept settings if better by > one SE;
    # the chosen one is the returned model
    assert {k: by[closed_form.BLEND]["settings"][k] for k in ("alpha", "components", "reg")} == \
        {**keep["ridge"], **keep["cca"]}
    cv_of = {n: by[n]["cv_score"] for n in closed_form.CLOSED}
    pure = max(closed_form.PURE, key=lambda n: (cv_of[n], n == "ridge"))
    d = rec["decision"]
    assert d["blend_difference"] == pytest.approx(cv_of[closed_form.BLEND] - cv_of[pure], abs=2e-4)
    assert rec["chosen"] == (closed_form.BLEND if d["blend_difference"] > d["blend_one_se"] else pure)
    val, _ = scoring.val_score(model, data)
    assert val.mean() == pytest.approx(by[rec["chosen"]]["val_score"], abs=1e-4)


def test_trained_candidate_within_one_se_loses_to_closed_form(data):
    """Per-query val scores of two real fitted models give a real spread of differences; a
    'trained' candidate planted at closed-form + that spread, shifted to a mean gain of half an
    SE, must lose; shifted to two SE, it must win."""
    ridge = scoring.val_score(closed_form.ridge_model(data, 1.0), data)[0]
    cca = scoring.val_score(closed_form.cca_model(data, 32, 1e-3), data)[0]
    spread = (cca - ridge) - (cca - ridge).mean()
    rows = scoring.val_clusters(data)
    assert len(rows) == len(ridge) and len(np.unique(rows)) < len(rows)  # a row: 2 queries
    se = scoring.paired_se(ridge + spread, ridge, rows)
    assert se > scoring.paired_se(ridge + spread, ridge) > 0  # both directions move together
    for gain, want in ((0.5 * se, "ridge"), (2 * se, "infonce")):
        trained = ridge + spread + gain
        found = {"ridge": (ridge, None, None, {}, ridge),
                 "infonce": (trained, None, None, {}, None)}
        name, decision = select.decide(found, rows)
        assert name == want, decision
        assert decision["one_se"] == pytest.approx(se, abs=1e-4)
        assert decision["val_difference"] == pytest.approx(gain, abs=1e-4)


def test_blend_scores_the_weighted_cosines_and_must_beat_its_members_by_one_se(data):
    """The ridge-cca blend's dot product is w x the ridge cosine + (1 - w) x the CCA cosine;
    `decide` takes it over the better pure family only beyond one paired SE."""
    from polymodal.nn.dual_encoder import AlignModel

    ridge, cca = closed_form.ridge_model(data, 1.0), closed_form.cca_model(data, 32, 1e-3)
    q, t = data.side_split(data.query, "test").x, data.side_split(data.target, "test").x

    def sim(m):
        return m.embed_numpy(q, "query") @ m.embed_numpy(t, "target").T
    blend = closed_form.blend_fit(ridge, cca, 0.25)
    assert np.abs(sim(blend) - (0.25 * sim(ridge) + 0.75 * sim(cca))).max() < 1e-5
    assert np.allclose(np.linalg.norm(blend.embed_numpy(q, "query"), axis=1), 1, atol=1e-5)
    again = AlignModel(blend.specs, {"query": torch.zeros(q.shape[1]),
                                     "target": torch.zeros(t.shape[1])}, {})
    again.load_state_dict(blend.state_dict())  # as `load_run` rebuilds it from the run folder
    assert np.array_equal(sim(again), sim(blend))
    r = scoring.val_score(ridge, data)[0]
    spread = (scoring.val_score(cca, data)[0] - r) - (scoring.val_score(cca, data)[0] - r).mean()
    rows = scoring.val_clusters(data)
    se = scoring.paired_se(r + spread, r, rows)
    for gain, want in ((0.5 * se, "ridge"), (2 * se, closed_form.BLEND)):
        found = {"ridge": (r, None, None, {}, r), "cca": (r - 0.1, None, None, {}, r - 0.1),
                 closed_form.BLEND: (r, None, None, {}, r + spread + gain)}
        name, decision = select.decide(found, rows)
        assert name == want, decision
        assert decision["blend_one_se"] == pytest.approx(se, abs=1e-4)


def test_cv_folds_keep_the_split_grouping_whole(data, tmp_path):
    """The sample's val split is one held-out speaker: CV folds on train + val are whole
    speakers (5 of them: one fold each), as `fit retrieval` passes them to the selection."""
    groups = closed_form.split_groups(read_manifest(MANIFEST), data)
    assert groups is not None and groups[0] == "speaker"
    qi = np.concatenate([data.pairs("train")[0], data.pairs("val")[0]])
    spk = groups[1][data.query.rows[qi]]
    fold = closed_form.cv_folds(spk, 0)
    assert fold.max() + 1 == len(set(spk)) == 5
    assert all(len(set(fold[spk == s])) == 1 for s in set(spk))
    assert len({tuple(sorted(set(spk[fold == f]))) for f in range(5)}) == 5  # one speaker each
    rows = closed_form.cv_folds(data.query.rows[qi], 0)  # without a grouping: rows, 5 folds
    assert rows.max() + 1 == closed_form.CV_FOLDS and len(set(rows[spk == spk[0]])) > 1
    _, _, _, rec = select.select_model(cfg(), data, tmp_path, train=None, candidates=("ridge",),
                                       groups=groups)
    assert rec["closed_form_settings_by"].endswith("folds by speaker (the split's grouping)")


def test_baseline_settings_reproduce_the_baselines(data):
    """The ridge (alpha 1) and CCA (32 components, reg 1e-3) candidates are the baselines:
    the same test R@1 as baselines.json would report."""
    from polymodal.metrics.scores import retrieval_metrics

    base = baselines(data, ("audio", "image"))
    q, t = data.side_split(data.query, "test"), data.side_split(data.target, "test")
    for name, model in (("ridge", closed_form.ridge_model(data, 1.0)),
                        ("cca", closed_form.cca_model(data, 32, 1e-3))):
        sim = model.embed_numpy(q.x, "query") @ model.embed_numpy(t.x, "target").T
        got = retrieval_metrics(sim, data.relevance(q, t))
        for k in ("R@1", "mAP"):
            assert got[k] == pytest.approx(base[name]["audio->image"][k], abs=1e-6), (name, k)
    assert closed_form.settings("ridge", cfg(), data)[0] == {"alpha": 1.0}
    assert closed_form.settings("cca", cfg(), data)[0] == {"components": 32, "reg": 1e-3}
