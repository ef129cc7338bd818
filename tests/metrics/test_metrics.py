"""Metrics against hand-worked examples, a brute-force reference and scikit-learn."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from polymodal.core.errors import DataError
from polymodal.metrics.scores import (accuracy, auroc, chance_retrieval, confusion_matrix, macro_f1,
                                    mae, r2, relevance_from_labels, retrieval_metrics,
                                    retrieval_metrics_from_embeddings, zero_shot_accuracy)


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _reference(sim: np.ndarray, rel: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Plain-Python ranking: score descending, an irrelevant target first on ties."""
    firsts, aps = [], []
    for s, r in zip(sim.tolist(), rel.tolist()):
        order = sorted(range(len(s)), key=lambda j: (-s[j], r[j]))
        hits, precisions, first = 0, [], None
        for pos, j in enumerate(order, start=1):
            if r[j]:
                hits += 1
                precisions.append(hits / pos)
                first = first or pos
        firsts.append(first)
        aps.append(sum(precisions) / len(precisions))
    out = {f"R@{k}": float(np.mean([f <= k for f in firsts])) for k in ks}
    out.update(MedR=float(np.median(firsts)), MeanR=float(np.mean(firsts)), mAP=float(np.mean(aps)))
    return out


def test_hand_worked_retrieval():
    sim = np.array([[0.9, 0.1, 0.5],    # relevant {1, 2}: ranks 2 and 3
                    [0.2, 0.8, 0.3]])   # relevant {1}: rank 1
    m = retrieval_metrics(sim, [{1, 2}, {1}], ks=(1, 2))
    assert m["R@1"] == 0.5 and m["R@2"] == 1.0
    assert m["MedR"] == 1.5 and m["MeanR"] == 1.5
    assert m["mAP"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 2)


def test_ties_are_broken_against_the_query():
    sim = np.zeros((3, 4))  # a model that gives every target the same score
    m = retrieval_metrics(sim, np.array([0, 1, 2]), ks=(1, 3))
    assert m["R@1"] == 0 and m["R@3"] == 0 and m["MedR"] == 4
    many = retrieval_metrics(sim, [{0, 1}, {2, 3}, {0, 3}], ks=(1, 3))
    assert many["MedR"] == 3 and many["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)


@pytest.mark.parametrize("n_rel", [1, 3, 40])  # both internal paths (count / sort)
def test_matches_brute_force_reference_with_ties(n_rel):
    rng = np.random.default_rng(n_rel)
    sim = rng.integers(0, 6, size=(30, 80)).astype(float)  # many ties
    rel = np.zeros((30, 80), dtype=bool)
    for q in range(30):
        rel[q, rng.choice(80, size=rng.integers(1, n_rel + 1), replace=False)] = True
    got = retrieval_metrics(sim, rel, chunk_size=7)
    ref = _reference(sim, rel)
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-12), k
    sets = [set(np.flatnonzero(r)) for r in rel]
    assert retrieval_metrics(sim, sets) == got


def test_map_and_recall_match_sklearn():
    rng = np.random.default_rng(0)
    sim = rng.standard_normal((50, 120))
    labels_q, labels_t = rng.integers(0, 6, 50), rng.integers(0, 6, 120)
    rel = relevance_from_labels(labels_q, labels_t)
    m = retrieval_metrics(sim, rel)
    ap = np.mean([skm.average_precision_score(r, s) for r, s in zip(rel, sim)])
    assert m["mAP"] == pytest.approx(ap, abs=1e-12)
    single = rng.integers(0, 120, 50)
    m1 = retrieval_metrics(sim, single, ks=(1, 5))
    for k in (1, 5):
        top = np.argsort(-sim, axis=1)[:, :k]
        assert m1[f"R@{k}"] == np.mean([t in row for t, row in zip(single, top)])


def test_embeddings_route_equals_cosine_matrix():
    rng = np.random.default_rng(0)
    q, t = rng.standard_normal((70, 16)), rng.standard_normal((90, 16))
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (t / np.linalg.norm(t, axis=1,
                                                                             keepdims=True)).T
    rel = relevance_from_labels(rng.integers(0, 5, 70), rng.integers(0, 5, 90))
    a = retrieval_metrics_from_embeddings(q, t, rel, chunk_size=16)
    b = retrieval_metrics(cos, rel)
    assert a == pytest.approx(b, abs=1e-6)


def test_chance_is_exact_and_matches_random_rankings():
    # T = 4, R = 2: average over all 24 orderings
    rel = np.array([True, True, False, False])
    recs, aps = [], []
    for perm in itertools.permutations(range(4)):
        m = retrieval_metrics(np.array([perm], dtype=float), rel[None], ks=(1, 2))
        recs.append(m["R@1"])
        aps.append(m["mAP"])
    c = chance_retrieval(rel[None], ks=(1, 2))
    assert c["R@1"] == pytest.approx(np.mean(recs)) == pytest.approx(0.5)
    assert c["mAP"] == pytest.approx(np.mean(aps))
    assert chance_retrieval(np.array([0]), ks=(1,), n_targets=3)["mAP"] == pytest.approx(
        (1 + 1 / 2 + 1 / 3) / 3)
    # Monte Carlo on a labels-style relevance
    rng = np.random.default_rng(0)
    rel = relevance_from_labels(rng.integers(0, 10, 2000), rng.integers(0, 10, 300))
    mc = retrieval_metrics(rng.random((2000, 300)), rel)
    exp = chance_retrieval(rel)
    for k in ("R@1", "R@5", "R@10", "MeanR", "mAP"):  # standard errors ~0.01 (MeanR ~0.2)
        assert mc[k] == pytest.approx(exp[k], abs=1.0 if k == "MeanR" else 0.04)


def test_retrieval_errors():
    with pytest.raises(DataError, match="query 1 has no relevant target"):
        retrieval_metrics(np.eye(3), [{0}, set(), {2}])
    bad = np.eye(3)
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="query 2, target 1"):
        retrieval_metrics(bad, np.arange(3))
    with pytest.raises(DataError, match="outside"):
        retrieval_metrics(np.eye(3), [{0}, {5}, {2}])
    with pytest.raises(DataError, match="shape"):
        retrieval_metrics(np.eye(3), np.ones((3, 4), dtype=bool))


def test_zero_shot_accuracy_hand_worked():
    classes = np.array([[1.0, 0.0], [0.0, 1.0]])
    x = np.array([[2.0, 0.1], [0.1, 3.0], [5.0, 4.0]])
    assert zero_shot_accuracy(x, classes, [0, 1, 1]) == pytest.approx(2 / 3)


def test_classification_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))
    assert accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert macro_f1(y, pred) == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert np.array_equal(confusion_matrix(y, pred), skm.confusion_matrix(y, pred))
    logits = rng.standard_normal((300, 4)) + 2 * np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert auroc(y, probs) == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    yb = rng.integers(0, 2, 200)
    tied = rng.integers(0, 3, 200) + yb  # integer scores: many ties
    assert auroc(yb, tied) == pytest.approx(skm.roc_auc_score(yb, tied))


def test_classification_hand_worked():
    # labels 0,1,2: F1 = 2/3 (tp 1, fp 0, fn 1), 1/2 (tp 1, fp 2, fn 0), 0 (never right)
    assert macro_f1([0, 0, 1, 2], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert confusion_matrix([0, 0, 1], [0, 1, 1]).tolist() == [[1, 1], [0, 1]]
    assert auroc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(0.875)  # tie counts 1/2
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(DataError, match="2 classes"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])


def test_regression_against_sklearn_and_hand():
    rng = np.random.default_rng(0)
    t, p = rng.standard_normal(100), rng.standard_normal(100)
    assert mae(t, p) == pytest.approx(skm.mean_absolute_error(t, p))
    assert r2(t, p) == pytest.approx(skm.r2_score(t, p))
    T, P = rng.standard_normal((50, 3)), rng.standard_normal((50, 3))
    assert r2(T, P) == pytest.approx(skm.r2_score(T, P))
    assert r2([1, 2, 3], [1, 2, 3]) == 1.0 and r2([2, 2, 2], [2, 2, 2]) == 1.0
    assert r2([2, 2, 2], [1, 2, 3]) == 0.0
    assert r2([1, 2, 3], [2, 2, 2]) == pytest.approx(0.0)
    assert mae([1, 2], [2, 4]) == 1.5
    with pytest.raises(DataError, match="rows"):
        mae([1, 2], [1])
    assert math.isfinite(r2([1.0, 2.0], [0.0, 0.0]))
